"""One writer per run folder: an advisory lock held for the life of a run.

    with RunLock(folder):           # or lock = RunLock(folder).acquire() ... lock.release()
        write config.yaml, train, save best.pt / last.pt, prune snapshots

The lock is `fcntl.flock` on `folder/.lock`: the kernel drops it when its holder exits, however
(kill -9 included), so there is no stale-lock clean-up to get wrong. The holder writes its pid and
command line into the file, so a second writer's error names it (`FolderInUse`). Locks are
re-entrant within one process (the CLI takes it before writing config.yaml, the trainer again for
its run). Where `fcntl` does not exist (Windows) the lock is a no-op.
"""

from __future__ import annotations

import os
import shlex
import sys
import time
from pathlib import Path

try:
    import fcntl
except ImportError:
    fcntl = None

from charrnn.util.errors import CharrnnError
from charrnn.util.showtext import visible

LOCK_NAME = ".lock"

_held: dict[str, "RunLock"] = {}  # real folder path -> the lock this process holds on it


class FolderInUse(CharrnnError):
    """Another live process holds the run folder's lock."""

    def __init__(self, folder: Path, holder: str, pid: int | None):
        stop = f" (kill {pid})" if pid else ""
        super().__init__(f"{folder} is in use by another charrnn process ({holder}): wait for it to finish "
                         f"or stop it{stop}, or choose another folder")


def _key(folder: Path) -> str:
    return os.path.realpath(folder)


def holder_of(lock_file: Path) -> tuple[str, int | None]:
    """What the lock file says about its holder: ('pid 123: charrnn train ...', 123)."""
    for _ in range(20):  # the holder writes its name just after taking the lock: give it a moment
        try:
            lines = lock_file.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            lines = []
        if lines and lines[0].isdigit():
            pid = int(lines[0])
            command = visible(lines[1])[:200] if len(lines) > 1 else "?"
            return f"pid {pid}: {command}", pid
        time.sleep(0.025)
    return "pid unknown", None


class RunLock:
    """The advisory lock on one run folder (see module doc)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None
        self._depth = 0
        self._made: list[Path] = []  # folders acquire() created, removed again on release if still empty
        self._owner: RunLock | None = None  # the lock this process already held, when re-entered

    @property
    def held(self) -> bool:
        return self._depth > 0 or self._owner is not None

    def acquire(self) -> "RunLock":
        """Take the lock (creating the folder), or raise FolderInUse naming the holder. Re-entrant."""
        key = _key(self.folder)
        mine = _held.get(key)
        if mine is not None:  # this process holds it already: count, do not lock twice
            mine._depth += 1
            self._owner = mine
            return self
        if fcntl is None:
            self._depth = 1
            _held[key] = self
            return self
        self._made = [p for p in (self.folder, *self.folder.parents) if not p.exists()]  # deepest first
        self.folder.mkdir(parents=True, exist_ok=True)
        key = _key(self.folder)  # now that it exists, resolve it for real
        for _ in range(10):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                holder, pid = holder_of(self.path)
                raise FolderInUse(self.folder, holder, pid) from None
            except OSError:
                os.close(fd)
                raise
            try:  # the file we locked must still be the one at the path (a releasing holder unlinks it)
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        else:
            raise CharrnnError(f"could not lock {self.folder}: its lock file keeps changing")
        command = " ".join(shlex.quote(a) for a in ["charrnn", *sys.argv[1:]]) if sys.argv else "python"
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n{command}\n".encode("utf-8", "replace"))
        self._fd, self._depth = fd, 1
        _held[key] = self
        return self

    def release(self) -> None:
        """Drop one hold; the last one unlocks (and tidies a folder this lock created and nothing filled)."""
        if self._owner is not None:
            owner, self._owner = self._owner, None
            owner.release()
            return
        if self._depth == 0:
            return
        self._depth -= 1
        if self._depth:
            return
        _held.pop(_key(self.folder), None)
        if self._fd is None:
            return
        try:
            os.unlink(self.path)  # before unlocking: a waiter that opened it re-checks the inode
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None
        for folder in self._made:  # only those still empty: a refused start leaves no folder behind
            try:
                folder.rmdir()
            except OSError:
                break

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
