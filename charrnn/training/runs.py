"""Run folders and the checkpoints in them: describe, list, prune (export: `charrnn.export.write`).

A run folder holds best.pt (lowest validation loss), last.pt (the newest state, what
`--resume` continues from), optional snapshots step-000500.pt and metrics.jsonl. A folder
of runs (./checkpoints by default) holds one run folder per training run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from charrnn.training.checkpoint import (MODEL_SUFFIXES, SNAPSHOT_RE, is_resumable, latest_val_bpc, load_checkpoint,
                                        prune_snapshots, remove_stale_temps)
from charrnn.util.errors import CharrnnError
from charrnn.util.files import path_kind
from charrnn.training.runlock import FolderInUse, RunLock
from charrnn.text.vocab import Vocab


@dataclass
class CheckpointInfo:
    """One line of `charrnn checkpoints list`."""

    path: str  # the file
    run: str  # its run folder, relative to the listed folder
    name: str  # best.pt, last.pt, step-000500.pt ...
    step: int | None  # training steps taken when it was written
    val_bpc: float | None  # the latest validation loss it records, bits per character of text
    val_bpt: float | None  # the same in bits per token (the same number for a character model)
    tokens: str | None  # what the model reads: char, word or byte
    cell: str | None  # lstm | gru | rnn
    layers: int | None
    hidden: int | None
    params: int | None  # trainable parameters
    bytes: int  # file size
    modified: str  # local time the file was written, YYYY-MM-DD HH:MM
    resumable: bool  # holds optimizer state and data position (False for exports)
    error: str | None = None  # why it could not be read, if it could not
    token_is_char: bool = True  # a token is one character (bits per token are bits per character)

    def to_dict(self) -> dict:
        return asdict(self)


def _order(path: Path) -> tuple:
    """best.pt, last.pt, then snapshots by step, then anything else by name."""
    m = SNAPSHOT_RE.match(path.name)
    rank = {"best.pt": 0, "last.pt": 1}.get(path.name, 2 if m else 3)
    return (rank, int(m.group(1)) if m else 0, path.name)


def describe(path: str | Path, root: str | Path | None = None) -> CheckpointInfo:
    """Read a checkpoint's header facts (tensor data is memory-mapped, not read)."""
    path = Path(path)
    stat = path.stat()
    run = path.parent
    run_name = str(run.relative_to(root)) if root is not None and run != Path(root) else run.name
    base = dict(path=str(path), run=run_name or ".", name=path.name, bytes=stat.st_size,
                modified=datetime.fromtimestamp(stat.st_mtime).strftime("%Y-%m-%d %H:%M"))
    try:
        ckpt = load_checkpoint(path, mmap=True)  # checked: every field below has its type
    except (OSError, CharrnnError) as e:
        error = f"cannot read it: {e.strerror or e}" if isinstance(e, OSError) else str(e).replace(str(path), path.name)
        unknown = dict.fromkeys(("step", "val_bpc", "val_bpt", "tokens", "cell", "layers", "hidden", "params"))
        return CheckpointInfo(**base, **unknown, resumable=False, error=error)
    mc = ckpt["model_config"]
    params = sum(t.numel() for t in ckpt["model"].values() if hasattr(t, "numel"))
    vocab = Vocab.from_dict(ckpt["vocab"])
    vals = [r for r in ckpt.get("metrics") or [] if r.get("val_bpc") is not None]
    bpt = vals[-1].get("val_bpt", vals[-1]["val_bpc"] if vocab.token_is_char else None) if vals else None
    return CheckpointInfo(**base, step=ckpt.get("step"), val_bpc=latest_val_bpc(ckpt), val_bpt=bpt, tokens=vocab.kind,
                          cell=mc["cell"], layers=mc["layers"], hidden=mc["hidden"], params=params,
                          resumable=is_resumable(ckpt), token_is_char=vocab.token_is_char)


def check_folder(root: Path) -> None:
    """Refuse a `root` that is not a folder, saying which it is: missing, or there but no folder (a checkpoint)."""
    if path_kind(root) == "missing":
        raise CharrnnError(f"no such folder: {root}")
    if not root.is_dir():
        raise CharrnnError(f"{root} is not a folder: name a run folder, or a folder of runs such as ./checkpoints")


def run_folders(root: str | Path) -> list[Path]:
    """`root` itself if it holds checkpoints, else every folder under it that does (sorted)."""
    root = Path(root)
    check_folder(root)
    return sorted({f.parent for f in root.glob("**/*") if f.suffix in MODEL_SUFFIXES and f.is_file()})


def list_checkpoints(root: str | Path = "checkpoints") -> list[CheckpointInfo]:
    """Every checkpoint under `root`, run by run; in each run best, last, then snapshots by step."""
    return [describe(f, root) for run in run_folders(root) for f in sorted(run.iterdir(), key=_order)
            if f.suffix in MODEL_SUFFIXES and f.is_file()]


RUN_MARKERS = ("config.yaml", "metrics.jsonl")  # only a charrnn run writes these (the library writes no config.yaml)
PRUNE_DEPTH = 3  # folders below the one named that prune looks into for runs


def prunable_runs(root: str | Path) -> list[Path]:
    """The run folders `prune` may touch: `root` if it is one, else runs up to PRUNE_DEPTH below it (symbolic
    links not followed; the root of the file system and the home folder refused): prune deletes files."""
    root = Path(root)
    check_folder(root)
    real = root.resolve()
    if real == Path(real.anchor) or real == Path.home().resolve():
        raise CharrnnError(f"refusing to prune {root}: name a run folder, or a folder of runs such as ./checkpoints")
    found: list[Path] = []

    def walk(folder: Path, depth: int) -> None:
        if any((folder / name).is_file() for name in RUN_MARKERS):
            found.append(folder)
            return
        if depth == 0:
            return
        try:
            children = sorted(folder.iterdir())
        except OSError:
            return
        for child in children:
            if child.is_dir() and not child.is_symlink() and not child.name.startswith("."):
                walk(child, depth - 1)

    walk(root, PRUNE_DEPTH)
    return found


@dataclass
class PruneReport:
    deleted: list[Path]  # snapshots deleted (or that would be, on a dry run)
    busy: list[str]  # runs another process is writing: left alone (their lock holder's message)
    runs: int  # run folders looked at


def prune(root: str | Path, keep: int, dry_run: bool = False) -> PruneReport:
    """In each run under `root`, delete all but the `keep` newest snapshots (`checkpoint.prune_snapshots`) and
    stale temp files. A run another process is writing (its lock is held) is reported in `busy`, untouched."""
    if keep < 0:
        raise CharrnnError("keep must be >= 0", "keep")
    runs = prunable_runs(root)
    report = PruneReport([], [], len(runs))
    for run in runs:
        if dry_run:
            report.deleted += prune_snapshots(run, keep, dry_run=True)
            continue
        try:
            lock = RunLock(run).acquire()
        except FolderInUse as e:
            report.busy.append(str(e))
            continue
        try:
            report.deleted += prune_snapshots(run, keep)
            remove_stale_temps(run)
        finally:
            lock.release()
    return report


def summary(path: str | Path) -> dict:
    """Everything `checkpoints show` prints, as plain data: configs, vocabulary, metrics history."""
    ckpt = load_checkpoint(path)
    info = describe(path)
    vocab = Vocab.from_dict(ckpt["vocab"])
    return {
        "path": str(path),
        "format_version": ckpt["format_version"],
        "resumable": info.resumable,
        "bytes": info.bytes,
        "modified": info.modified,
        "step": ckpt.get("step"),
        "epoch": ckpt.get("epoch"),
        "params": info.params,
        "best_val_bpc": ckpt.get("best_val_bpc"),
        "model_config": ckpt.get("model_config"),
        "train_config": ckpt.get("train_config"),
        "meta": ckpt.get("meta") or {},
        "tokens": info.tokens,
        "vocab_size": len(vocab),
        "vocab": vocab.listing(),
        "vocab_line": vocab.describe(),
        "token_is_char": vocab.token_is_char,
        "metrics": [r for r in ckpt.get("metrics") or [] if "val_bpc" in r],  # the evaluations
    }
