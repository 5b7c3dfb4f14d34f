"""The catalog of named corpora (shakespeare, warpeace, latex, linux): fetch, verify, resolve.

A catalog name works wherever a corpus path does: `charrnn train shakespeare` trains on
the fetched file. Fetched files live in `corpora_dir()` ($CHARRNN_CORPORA, default
./corpora). A mirror folder ($CHARRNN_MIRROR or --mirror) holding files named
`<name>.txt` is used instead of the network. Every fetch is verified by sha256 before it
is renamed into place, so a bad or interrupted download never leaves a file behind.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import yaml

from charrnn.util.files import CHUNK, atomic_write
from charrnn.util.errors import CharrnnError


@dataclass(frozen=True)
class CorpusEntry:
    name: str
    description: str
    url: str
    sha256: str
    bytes: int
    license: str
    preset: dict = field(default_factory=dict)
    build: str | None = None


def load_catalog() -> dict[str, CorpusEntry]:
    data = yaml.safe_load(resources.files("charrnn.text").joinpath("catalog.yaml").read_text(encoding="utf-8"))
    return {name: CorpusEntry(name=name, **entry) for name, entry in data.items()}


def corpora_dir() -> Path:
    return Path(os.environ.get("CHARRNN_CORPORA") or "corpora")


def local_path(name: str) -> Path:
    return corpora_dir() / f"{name}.txt"


def is_fetched(entry: CorpusEntry) -> bool:
    p = local_path(entry.name)
    return p.is_file() and p.stat().st_size == entry.bytes


def _copy_verified(entry: CorpusEntry, open_source: Callable, dest: Path, progress: Callable[[int, int], None] | None) -> None:
    """Stream a source into a temp file beside `dest`, check size and sha256, then rename."""
    digest, done = hashlib.sha256(), 0
    with atomic_write(dest) as out, open_source() as src:
        while chunk := src.read(CHUNK):
            out.write(chunk)
            digest.update(chunk)
            done += len(chunk)
            if done > entry.bytes:  # raised inside the block: the temporary file is deleted
                raise CharrnnError(f"{entry.name}: the source holds more than the catalog's {entry.bytes:,} bytes; "
                                   "the file was not kept: check the source or mirror")
            if progress:
                progress(done, entry.bytes)
        if digest.hexdigest() != entry.sha256:  # raised inside the block: the temporary file is deleted
            raise CharrnnError(
                f"{entry.name}: sha256 mismatch (got {digest.hexdigest()[:16]}..., catalog says {entry.sha256[:16]}...); "
                f"the file was not kept: check the source or mirror"
            )


def fetch(name: str, mirror: str | Path | None = None, progress: Callable[[int, int], None] | None = None,
          force: bool = False) -> Path:
    """Make sure corpus `name` is in corpora_dir(), verified; return its path."""
    catalog = load_catalog()
    if name not in catalog:
        raise CharrnnError(f"no corpus named {name!r} in the catalog (known: {', '.join(catalog)})")
    entry = catalog[name]
    dest = local_path(name)
    if is_fetched(entry) and not force:
        return dest
    mirror = mirror or os.environ.get("CHARRNN_MIRROR") or None
    if mirror:
        src = Path(mirror) / f"{name}.txt"
        if not src.is_file():
            raise CharrnnError(f"mirror folder {mirror} has no {name}.txt")
        if src.stat().st_size != entry.bytes:  # known before copying a byte
            raise CharrnnError(f"{src} holds {src.stat().st_size:,} bytes, but {name} is {entry.bytes:,}: "
                               "it is another file or a partial copy; nothing was copied")
        _copy_verified(entry, lambda: open(src, "rb"), dest, progress)
        return dest
    if entry.build:
        raise CharrnnError(f"{name} has no single download: it is a {entry.build}")
    try:
        _copy_verified(entry, lambda: urllib.request.urlopen(entry.url, timeout=60), dest, progress)
    except OSError as e:
        raise CharrnnError(f"could not download {name} from {entry.url}: {e}; "
                           f"copy it from a folder with mirror DIR (or CHARRNN_MIRROR)", "mirror") from None
    return dest


def resolve_source(source: str) -> str:
    """A corpus argument -> a path: existing paths and '-' pass through; catalog names are fetched."""
    if source == "-" or Path(source).exists():
        return source
    catalog = load_catalog()
    if source in catalog:
        return str(fetch(source))
    return source  # let the reader report "no such file"

