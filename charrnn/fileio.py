"""Writing files so that nothing is ever half-written, and the constants of reading them.

A foundation module (standard library only). Every writer in charrnn — checkpoints, token
caches, config.yaml, metrics.jsonl, reports, downloaded corpora — goes through `atomic_write`:

    with atomic_write(path) as f:      # a hidden temporary file in the same folder
        f.write(data)                  # ... written, flushed and fsynced
                                       # then renamed over `path` and the folder fsynced

A reader, or a crash at any moment, sees the old file or the new one, never a mix; an
exception inside the block deletes the temporary file and leaves the old one as it was.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20  # bytes read or copied at a time
BOM = "\ufeff"  # the byte-order mark, dropped from the start of UTF-8 text
TEMP_SUFFIX = ".tmp"  # every temporary file is hidden (".name.xxxx.tmp"), so nothing lists it


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def publish(tmp: str | Path, path: str | Path) -> None:
    """Give a finished temporary file normal permissions and rename it over `path` (atomic)."""
    os.chmod(tmp, 0o666 & ~_umask())
    os.replace(tmp, path)
    fsync_dir(Path(path).parent)


def fsync_dir(folder: str | Path) -> None:
    """Make a rename in `folder` durable (best effort: some file systems cannot)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def temp_path(path: str | Path) -> Path:
    """A new, empty hidden temporary file beside `path` (the caller publishes or deletes it)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    return Path(tmp)


@contextmanager
def atomic_write(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file to write; when the block ends it replaces `path` in one step (see module doc)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        with open(tmp, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        publish(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_write(path) as f:
        f.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
