"""Writing files so that nothing is ever half-written, and the constants of reading them.

A foundation module (standard library only). Every writer in charrnn goes through `atomic_write`:

    with atomic_write(path) as f:      # a hidden temporary file in the same folder
        f.write(data)                  # ... written, flushed and fsynced
                                       # then renamed over `path` and the folder fsynced

A reader, or a crash at any moment, sees the old file or the new one, never a mix; an
exception inside the block deletes the temporary file. A temporary file's name holds its
writer's process id, so `sweep_stale_temps` can delete what a killed process left (SIGKILL
runs no clean-up) without touching a live writer's.
"""

from __future__ import annotations

import errno
import glob
import io
import os
import re
import select
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

CHUNK = 1 << 20  # bytes read or copied at a time
BOM = "\ufeff"  # the byte-order mark, dropped from the start of UTF-8 text
TEMP_SUFFIX = ".tmp"  # every temporary file is hidden (".name.xxxx.tmp"), so nothing lists it


def _process_start() -> float:
    """When this process began (wall clock): from /proc on Linux (its interpreter's start-up included), else now
    (this module is imported early)."""
    try:
        after_name = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - int(after_name[19]) / os.sysconf("SC_CLK_TCK")
        return time.time() - max(age, 0.0)
    except (OSError, ValueError, IndexError, AttributeError):  # no /proc, or no CLOCK_BOOTTIME (macOS)
        return time.time()


PROCESS_START = _process_start()  # a command's --time counts from here; temporaries older, writer gone, are stale


def publish(tmp: str | Path, path: str | Path) -> None:
    """Give a finished temporary file normal permissions, rename it over `path` (atomic), and make the
    rename durable (best effort: some file systems cannot fsync a folder)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o666 & ~mask)
    os.replace(tmp, path)
    try:
        fd = os.open(Path(path).parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def temp_path(path: str | Path) -> Path:
    """A new, empty hidden temporary file beside `path`, named after this process (the caller publishes
    or deletes it): `.name.<pid>.<random>.tmp`, so a later sweep can tell whose it was."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=TEMP_SUFFIX, dir=path.parent)
    os.close(fd)
    return Path(tmp)


def write_target(path: str | Path) -> tuple[Path, bool]:
    """(the file to write for `path`, whether to write it atomically); refuses what cannot be written.

    A symbolic link is never replaced: the file it points to is written instead. A device, FIFO or
    terminal, or a link into /dev or /proc (`/dev/stdout > out.html`), is written through in place:
    replacing it with a regular file would destroy it, or miss the open file it names.
    """
    path = Path(path)
    try:
        st = os.stat(path)  # follows links
    except FileNotFoundError:
        return (Path(os.path.realpath(path)) if path.is_symlink() else path), True  # a dangling link: its target
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, "it is a folder, not a file", str(path))
    if stat.S_ISSOCK(st.st_mode):
        raise OSError(errno.EINVAL, "it is a socket, which charrnn does not write to", str(path))
    if not stat.S_ISREG(st.st_mode):
        return path, False
    if path.is_symlink():
        real = Path(os.path.realpath(path))
        if str(real).startswith(("/proc/", "/dev/")) or str(os.readlink(path)).startswith(("/proc/", "/dev/")):
            return path, False  # /dev/stdout, /proc/self/fd/1 redirected to a file: that open file is the target
        return real, True
    return path, True


def path_kind(path: str | Path) -> str:
    """What a path names, for a reader: 'file', 'folder', 'stream', 'missing', or 'other' (a socket,
    a block device); links are followed. A stream (a FIFO, bash's `<(cmd)`, a character device) can be
    read only once, front to back. Other errors than a missing path (no permission) are raised.
    """
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return "missing"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "folder"
    return "stream" if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) else "other"


STDIN_NAME = "standard input"  # what messages and run records call the source '-'


def source_label(src: str) -> str:
    """A source as messages name it: the path, or 'standard input' for '-'."""
    return STDIN_NAME if src == "-" else src


@contextmanager
def open_source(src: str) -> Iterator[BinaryIO]:
    """A source opened to read bytes: a path, or '-' for standard input (which is left open)."""
    if src == "-":
        yield sys.stdin.buffer
    else:
        with open(src, "rb") as f:
            yield f


def stream_chunks(stream: BinaryIO) -> Iterator[bytes]:
    """Standard input or a pipe, a chunk at a time, waking up every 0.25 s while it waits for more.

    Why: a signal delivered to another thread (a progress bar's) runs its handler only when the main
    thread next runs bytecode; a plain read of an idle pipe would block the clean-up until the writer writes.
    """
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        fd = None
    if fd is None or os.name == "nt":
        while chunk := stream.read(CHUNK):
            yield chunk
        return
    while True:
        ready, _, _ = select.select([fd], [], [], 0.25)
        if ready:
            chunk = os.read(fd, CHUNK)
            if not chunk:
                return
            yield chunk


@contextmanager
def atomic_write(path: str | Path) -> Iterator[BinaryIO]:
    """A binary file to write; when the block ends it replaces `path` in one step (see module doc and
    `write_target`)."""
    fd = _open_descriptor(Path(path))  # /dev/stdout, /proc/self/fd/N, or a link to one: this process's own output
    path, atomic = (path, False) if fd is not None else write_target(path)
    if not atomic:
        with os.fdopen(fd, "wb") if fd is not None else open(path, "wb") as f:  # written in place
            yield f
            f.flush()
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temps(path.parent, (f".{glob.escape(path.name)}.*{TEMP_SUFFIX}",))  # what a killed write of it left
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


_FD_LINK = re.compile(r"^/(?:proc/self|dev)/fd/(\d+)$")


def _open_descriptor(path: Path) -> int | None:
    """For /dev/stdout, /proc/self/fd/N or a link to one: a duplicate of this process's descriptor N, which
    continues where the process's own output is (opening the file afresh would write over it from offset 0)."""
    name = str(path)
    for _ in range(2):  # /dev/stdout -> /proc/self/fd/1; a link of the user's -> either
        m = _FD_LINK.match(name)
        if m:
            n = int(m.group(1))
            for stream in (sys.stdout, sys.stderr):
                try:
                    if stream is not None and stream.fileno() == n:
                        stream.flush()  # what Python still buffers for it comes first
                except (OSError, ValueError, AttributeError):
                    pass
            try:
                return os.dup(n)
            except OSError:
                return None
        try:
            name = os.readlink(name)
        except OSError:
            return None
    return None


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_write(path) as f:
        f.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def json_text(data, indent: int | None = None) -> str:
    """`data` as JSON text that is always valid UTF-8 and safe on a terminal; letters of any script as they are.

    json.dumps escapes only the characters below U+0020; here every character that is not printable is
    a JSON escape too: lone surrogates (from file names that are not UTF-8), DEL, C1 controls, bidi overrides.
    """
    import json

    text = json.dumps(data, ensure_ascii=False, indent=indent)
    if text.replace("\n", "").isprintable():  # (raw line breaks are indent's: those in strings are escaped)
        return text
    return "".join(c if c.isprintable() or c == "\n" else f"\\u{ord(c):04x}" if ord(c) < 0x10000
                   else json.dumps(c)[1:-1] for c in text)


def pid_alive(pid: int) -> bool:
    """True if a process with this id exists (on this machine)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except PermissionError:  # someone else's process: alive
        return True
    except OSError:  # no such process
        return False
    return True


def is_stale_temp(path: Path) -> bool:
    """A temporary nobody is still writing: its writer's process (the last number in its name,
    `.last.pt.1234.x1y2.tmp`) is gone, or, without one, it is older than this process."""
    pids = [int(part) for part in path.name.split(".")[:-2] if part.isdigit()]
    if pids:
        return pids[-1] != os.getpid() and not pid_alive(pids[-1])
    try:
        return path.stat().st_mtime < PROCESS_START
    except OSError:
        return False


def sweep_stale_temps(folder: str | Path, patterns: tuple[str, ...] = (f".*{TEMP_SUFFIX}",)) -> list[Path]:
    """Delete the temporaries in `folder` (matching `patterns`) that a killed process left behind."""
    removed = []
    for pattern in patterns:
        for f in Path(folder).glob(pattern):
            if f.is_file() and not f.is_symlink() and is_stale_temp(f):
                try:
                    f.unlink()
                    removed.append(f)
                except OSError:
                    pass
    return removed


def os_advice(e: OSError) -> str:
    """What a person can do about a failed file operation, by its cause (not always "free some space")."""
    code = e.errno
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return "free some space"
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "fix the folder's permissions (or choose another folder)"
    if code in (errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
        return "a file or folder is in the way: move it, or choose another path"
    if code == errno.ENOENT:
        return "the folder disappeared while writing: check the path"
    return "check the path, its permissions and free space"


def cache_dir() -> Path:
    """Where token arrays and file hashes are kept: $CHARRNN_CACHE, default ~/.cache/charrnn."""
    return Path(os.environ.get("CHARRNN_CACHE") or Path.home() / ".cache" / "charrnn")
