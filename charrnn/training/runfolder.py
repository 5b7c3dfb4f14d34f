"""A run folder on disk: best.pt, last.pt, step-NNNNNN.pt snapshots, metrics.jsonl, config.yaml.

    RunFolder(path, keep)   .lock()             one writer at a time (`runlock.RunLock`), held for the run
                            .holds_run()        a run's files are here already
                            .clear()            --overwrite: the old run's files go before the new run writes
                            .check_writable()   before training: fail now, not after an hour
                            .save(names, payload, history)   serialise once, write each name atomically

Every file is written through `util.files.atomic_write`, so a crash leaves the previous version
of each file whole; a failed write raises `SaveError` with the old files intact. Only the
holder of the folder's lock writes, prunes or sweeps temporaries in it.
"""

from __future__ import annotations

import json
from pathlib import Path

from charrnn.training.checkpoint import (
    SUFFIX, SaveError, copy_checkpoint, prune_snapshots, remove_stale_temps, snapshots, write_checkpoint,
)
from charrnn.util.errors import CharrnnError, UsageError
from charrnn.util.files import atomic_write_text, os_advice, temp_path
from charrnn.training.runlock import FolderInUse, RunLock

RUN_FILES = ("best.pt", "last.pt", "metrics.jsonl", "config.yaml")  # what a run writes, besides step-*.pt


class RunFolder:
    def __init__(self, path: str | Path, keep: int = 3):
        self.path = Path(path)
        self.keep = keep  # periodic snapshots kept (best.pt and last.pt are never pruned)

    def lock(self) -> RunLock:
        """Take the folder's lock (creating the folder), or raise `runlock.FolderInUse` naming its holder."""
        return RunLock(self.path).acquire()

    def run_files(self) -> list[str]:
        """The names of the files here a run would write (or replace): checkpoints, metrics.jsonl, config.yaml."""
        if not self.path.is_dir():
            return []
        names = sorted(f.name for f in self.path.glob(f"*{SUFFIX}") if f.is_file())
        return names + [n for n in RUN_FILES if not n.endswith(SUFFIX) and (self.path / n).is_file()]

    def holds_run(self) -> bool:
        """True if a run's files are here: a new run must not write over them (even a config.yaml or
        metrics.jsonl of the user's own, in a folder with no checkpoint) unless told to (--overwrite)."""
        return bool(self.run_files())

    def clear(self) -> None:
        """Delete a previous run's files (RUN_FILES, snapshots, its temporaries), with the lock held, before the
        new run writes anything: a new run never shares a folder with pieces of the old one."""
        for f in [self.path / n for n in RUN_FILES] + [f for _, f in snapshots(self.path)]:
            try:
                f.unlink(missing_ok=True)
            except OSError as e:
                raise CharrnnError(f"cannot clear {f} to overwrite it: {e.strerror or e}; {os_advice(e)}") from None
        remove_stale_temps(self.path)

    def check_writable(self, prune: bool = False) -> None:
        """Create the folder, prove a file can be written in it, and sweep what a killed save left."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            temp_path(self.path / "write-test").unlink()
            remove_stale_temps(self.path)
            if prune:  # a kill between saving a snapshot and pruning can leave one too many
                prune_snapshots(self.path, self.keep)
        except OSError as e:
            raise CharrnnError(f"cannot write to the run folder {self.path}: {e.strerror or e}; {os_advice(e)}") from None
        for name in RUN_FILES:  # a folder (or a socket) by the name of a file the run writes
            f = self.path / name
            if f.exists() and not f.is_file():
                raise CharrnnError(f"{f} is not a file, and a run writes a file there: move it, or choose another "
                                   "folder with -o")

    def save(self, names: tuple[str, ...], payload: dict, history: list[dict]) -> list[Path]:
        """Write `payload` under each name (serialised once, then copied), then `history` as metrics.jsonl."""
        remove_stale_temps(self.path)  # left by a process killed in the middle of a save
        paths = [self.path / name for name in names]
        write_checkpoint(paths[0], payload)  # serialised once, into the file itself
        for path in paths[1:]:
            copy_checkpoint(paths[0], path)
        metrics = self.path / "metrics.jsonl"
        try:
            atomic_write_text(metrics, "".join(json.dumps(r) + "\n" for r in history))
        except OSError as e:
            raise SaveError(f"could not write {metrics}: {e.strerror or e}; {os_advice(e)}") from None
        if any(n.startswith("step-") for n in names):
            prune_snapshots(self.path, self.keep)
        return paths


# ---- which folder a new run writes to ------------------------------------------------------------------


def default_out_dir(name: str, root: Path = Path("checkpoints"), lock: bool = True) -> tuple[Path, RunLock | None]:
    """(checkpoints/<name>, its lock), or <name>-2, -3 ... if that folder holds a run or another run is using it.
    Taking the lock claims it: two runs started at once get two folders. `lock=False` only names the folder."""
    n = 1
    while True:
        folder = RunFolder(root / (name if n == 1 else f"{name}-{n}"))
        n += 1
        if folder.holds_run():
            continue
        if not lock:
            return folder.path, None
        try:
            held = folder.lock()
        except FolderInUse:
            continue
        if not folder.holds_run():  # nobody finished a run there between the look and the lock
            return folder.path, held
        held.release()


def check_out(out: str | None) -> Path | None:
    """The output folder as given, refusing an empty name and the root of the file system."""
    if out is None:
        return None
    if not out.strip():
        raise UsageError("out is empty: name a folder for the run", "out")
    path = Path(out)
    if path.resolve() == Path(path.resolve().anchor):
        raise UsageError(f"out {out} is the root of the file system: name a folder for the run", "out")
    if path.exists() and not path.is_dir():
        raise CharrnnError(f"out {out} is a file, not a folder: name a folder for the run", "out")
    return path


def claim_out_dir(out: Path | None, name: str, resume: Path | None, overwrite: bool,
                  main: bool = True) -> tuple[Path, RunLock | None, bool]:
    """(the run folder, its lock, whether an old run there must be cleared first), locked before anything is
    written. `main`: False for the torchrun processes that write nothing (they only name the folder)."""
    if not main:
        return out or (resume.parent if resume is not None else default_out_dir(name, lock=False)[0]), None, False
    if out is None and resume is None:
        return *default_out_dir(name), False
    folder = RunFolder(out if out is not None else resume.parent)
    lock = folder.lock()  # a second writer stops here, with the holder's pid
    same = resume is not None and folder.path.resolve() == resume.parent.resolve()
    if not same and folder.holds_run() and not overwrite:
        lock.release()
        files = folder.run_files()
        raise CharrnnError(f"{folder.path} already holds a run's files ({', '.join(files[:4])}{', ...' if len(files) > 4 else ''}): "
                           f"choose another out, or set overwrite to replace them", "out", "overwrite")
    return folder.path, lock, overwrite and not same
