"""A run folder on disk: best.pt, last.pt, step-NNNNNN.pt snapshots and metrics.jsonl.

    RunFolder(path, keep)   .check_writable()   before training: fail now, not after an hour
                            .save(names, payload, history)   serialise once, write each name atomically

Every file is written through `fileio.atomic_write`, so a crash leaves the previous version
of each file whole; a failed write raises `SaveError` with the old files intact.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from charrnn.checkpoint import SaveError, checkpoint_bytes, prune_snapshots, remove_stale_temps, write_checkpoint_bytes
from charrnn.errors import CharrnnError
from charrnn.fileio import atomic_write_text


class RunFolder:
    def __init__(self, path: str | Path, keep: int = 3):
        self.path = Path(path)
        self.keep = keep  # periodic snapshots kept (best.pt and last.pt are never pruned)

    def __str__(self) -> str:
        return str(self.path)

    def check_writable(self, prune: bool = False) -> None:
        """Create the folder, prove a file can be written in it, and sweep what a killed save left."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".write-test.", suffix=".tmp", dir=self.path)
            os.close(fd)
            os.unlink(probe)
            remove_stale_temps(self.path)
            if prune:  # a kill between saving a snapshot and pruning can leave one too many
                prune_snapshots(self.path, self.keep)
        except OSError as e:
            raise CharrnnError(f"cannot write to the run folder {self.path}: {e.strerror or e}") from None

    def save(self, names: tuple[str, ...], payload: dict, history: list[dict]) -> list[Path]:
        """Write `payload` under each name (serialised once), then `history` as metrics.jsonl."""
        remove_stale_temps(self.path)  # left by a process killed in the middle of a save
        data = checkpoint_bytes(payload)
        paths = [self.path / name for name in names]
        for path in paths:
            write_checkpoint_bytes(path, data)
        metrics = self.path / "metrics.jsonl"
        try:
            atomic_write_text(metrics, "".join(json.dumps(r) + "\n" for r in history))
        except OSError as e:
            raise SaveError(f"could not write {metrics}: {e.strerror or e}") from None
        if any(n.startswith("step-") for n in names):
            prune_snapshots(self.path, self.keep)
        return paths
