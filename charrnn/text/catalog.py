"""The catalog of named corpora (shakespeare, warpeace, latex, linux): fetch, verify, resolve.

A catalog name works wherever a corpus path does, from any folder: `charrnn train shakespeare`
trains on the fetched file. Fetched files live in one place per user, `corpora_dir()`:

    folder       given to a call (`charrnn corpus get --corpora DIR`)
    else         $CHARRNN_CORPORA
    else         $XDG_DATA_HOME/charrnn/corpora, by default ~/.local/share/charrnn/corpora

Unless a folder is named (the first two), a copy in ./corpora/ of the working folder is found too:
where charrnn fetched before, and where a checkout may keep the demo's corpus. A mirror folder
($CHARRNN_MIRROR or --mirror) holding files named `<name>.txt` is used instead of the network.
Every fetch is verified by sha256 before it is renamed into place, and a fetch that fails removes
the folders it made: a bad or interrupted download leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


CORPORA_VARIABLE = "CHARRNN_CORPORA"
WORKING_COPY = Path("corpora")  # ./corpora/: found when no folder is named (module doc)


def corpora_dir(folder: str | Path | None = None) -> Path:
    """Where corpora are fetched to: `folder`, else $CHARRNN_CORPORA, else the user's data folder (module doc)."""
    if folder:
        return Path(folder)
    if os.environ.get(CORPORA_VARIABLE):
        return Path(os.environ[CORPORA_VARIABLE])
    data = os.environ.get("XDG_DATA_HOME", "")
    base = Path(data) if os.path.isabs(data) else Path.home() / ".local" / "share"  # a relative one is ignored (XDG)
    return base / "charrnn" / "corpora"


def local_path(name: str, folder: str | Path | None = None) -> Path:
    """Where corpus `name` is fetched to."""
    return corpora_dir(folder) / f"{name}.txt"


def found_path(entry: CorpusEntry, folder: str | Path | None = None) -> Path | None:
    """Where a fetched copy of `entry` (its catalog size) is: the corpora folder, else ./corpora/ when no folder is
    named; None if neither has it."""
    places = [local_path(entry.name, folder)]
    if not folder and not os.environ.get(CORPORA_VARIABLE):
        places.append(WORKING_COPY / f"{entry.name}.txt")
    return next((p for p in places if p.is_file() and p.stat().st_size == entry.bytes), None)


@contextmanager
def _folders_kept_on_success(folder: Path) -> Iterator[None]:
    """Inside the block `folder` may be made (with its parents); if the block fails, the folders that were not
    there before it are removed again, deepest first, as long as they are empty."""
    missing, p = [], folder
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    try:
        yield
    except BaseException:
        for made in missing:
            try:
                made.rmdir()
            except OSError:  # not empty (someone else's file) or already gone: leave the rest
                break
        raise


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
          force: bool = False, folder: str | Path | None = None) -> Path:
    """Make sure corpus `name` is fetched (`found_path`), verified, else fetch it into `corpora_dir(folder)`;
    return its path. A fetch that fails leaves no file and no folder it made."""
    catalog = load_catalog()
    if name not in catalog:
        raise CharrnnError(f"no corpus named {name!r} in the catalog (known: {', '.join(catalog)})")
    entry = catalog[name]
    found = found_path(entry, folder)
    if found is not None and not force:
        return found
    dest = local_path(name, folder)
    with _folders_kept_on_success(dest.parent):
        _fetch_to(entry, dest, mirror, progress)
    return dest


def _fetch_to(entry: CorpusEntry, dest: Path, mirror: str | Path | None, progress: Callable | None) -> None:
    """Copy `entry` from the mirror, or download it, into `dest` (verified)."""
    name = entry.name
    mirror = mirror or os.environ.get("CHARRNN_MIRROR") or None
    if mirror:
        src = Path(mirror) / f"{name}.txt"
        if not src.is_file():
            raise CharrnnError(f"mirror folder {mirror} has no {name}.txt")
        if src.stat().st_size != entry.bytes:  # known before copying a byte
            raise CharrnnError(f"{src} holds {src.stat().st_size:,} bytes, but {name} is {entry.bytes:,}: "
                               "it is another file or a partial copy; nothing was copied")
        _copy_verified(entry, lambda: open(src, "rb"), dest, progress)
        return
    if entry.build:
        raise CharrnnError(f"{name} has no single download: it is a {entry.build}")
    try:
        _copy_verified(entry, lambda: urllib.request.urlopen(entry.url, timeout=60), dest, progress)
    except OSError as e:
        raise CharrnnError(f"could not download {name} from {entry.url}: {e}; "
                           f"copy it from a folder with mirror DIR (or CHARRNN_MIRROR)", "mirror") from None


def resolve_source(source: str) -> str:
    """A corpus argument -> a path: existing paths and '-' pass through; catalog names are fetched."""
    if source == "-" or Path(source).exists():
        return source
    catalog = load_catalog()
    if source in catalog:
        return str(fetch(source))
    return source  # let the reader report "no such file"

