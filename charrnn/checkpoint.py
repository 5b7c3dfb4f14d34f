"""Checkpoints: atomic saving, safe loading, finding runs.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it
loads with `torch.load(weights_only=True)`, which refuses anything that would need
arbitrary code to unpickle. Layout (FORMAT_VERSION 1):

    format_version   int
    model_config     ModelConfig as a dict
    vocab            {"chars": str}
    model            state_dict (tensors)
    train_config     TrainConfig as a dict (absent in exported, inference-only files)
    optimizer        optimizer state_dict
    step, epoch      counters
    metrics          list of dicts (the evaluation history)
    extra            anything else training needs to resume (cursor, RNG states, hidden state,
                     the full log history, the data fingerprint)

An inference-only checkpoint can also be a .safetensors file (see `safetensors_io`): the
same dict comes back from `load_checkpoint`, so every command that takes a checkpoint reads both.

A run folder holds best.pt, last.pt (always the newest state), optional snapshots
step-000500.pt, and metrics.jsonl. A crash can leave a hidden `.last.pt.<random>.tmp`
behind; nothing reads those (they do not end in .pt) and the next save removes them.
"""

from __future__ import annotations

import io
import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from charrnn.errors import CharrnnError
from charrnn.fileio import atomic_write_bytes
from charrnn.config import ModelConfig
from charrnn.model import CharRNN
from charrnn.vocab import Vocab

FORMAT_VERSION = 1
SUFFIX = ".pt"
MODEL_SUFFIXES = (SUFFIX, ".safetensors")  # files a checkpoint argument may name
SNAPSHOT_RE = re.compile(r"^step-(\d+)\.pt$")  # periodic snapshots: step-000500.pt


class SaveError(CharrnnError):
    """A checkpoint could not be written (disk full, no permission); the previous file is intact."""


def checkpoint_bytes(payload: dict) -> bytes:
    """Serialise `payload` (see module docstring), stamped with the format version."""
    buf = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, **payload}, buf)
    return buf.getvalue()


def write_checkpoint_bytes(path: str | Path, data: bytes) -> None:
    """Write serialised checkpoint bytes atomically, or raise SaveError (the old file stays as it was)."""
    try:
        atomic_write_bytes(path, data)
    except OSError as e:
        raise SaveError(f"could not save checkpoint {path}: {e.strerror or e} (the previous one is intact)") from None


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete the temporary files a killed save left behind in a run folder (`.last.pt.x1y2.tmp`)."""
    removed = []
    for pattern in (f".*{SUFFIX}.*.tmp", ".*.safetensors.*.tmp", ".metrics.jsonl.*.tmp", ".write-test.*.tmp"):
        for f in Path(folder).glob(pattern):
            try:
                f.unlink()
                removed.append(f)
            except OSError:
                pass
    return removed


def snapshots(folder: str | Path) -> list[tuple[int, Path]]:
    """The periodic snapshots in a run folder as (step, path), oldest first."""
    found = []
    for f in Path(folder).glob(f"step-*{SUFFIX}"):
        m = SNAPSHOT_RE.match(f.name)
        if m:
            found.append((int(m.group(1)), f))
    return sorted(found)


def prune_snapshots(folder: str | Path, keep: int) -> list[Path]:
    """Delete all but the `keep` newest snapshots; best.pt and last.pt are never touched."""
    found = snapshots(folder)
    old = found[: max(0, len(found) - keep)]
    for _, f in old:
        f.unlink(missing_ok=True)
    return [f for _, f in old]


def _check_container(path: Path) -> None:
    """Tell apart, before unpickling anything, the ways a file can fail to be a torch checkpoint."""
    size = path.stat().st_size
    if size == 0:
        raise CharrnnError(f"{path} is empty (0 bytes): it was never written completely; use another checkpoint")
    with open(path, "rb") as f:
        head = f.read(4)
    if head != b"PK\x03\x04":
        raise CharrnnError(f"{path} is not a charrnn checkpoint (not a torch zip archive)")
    if not zipfile.is_zipfile(path):
        raise CharrnnError(f"{path} is truncated or corrupted (its zip directory is missing): "
                           "use another checkpoint (best.pt, last.pt or a step-*.pt snapshot)")
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError) as e:
        raise CharrnnError(f"{path} is corrupted ({e}): use another checkpoint") from None
    if not any(n.endswith("/data.pkl") for n in names):
        raise CharrnnError(f"{path} is a zip archive but not a torch checkpoint")


def _refused_global(message: str) -> str:
    """The Python object an unsafe pickle asked for, from torch's weights_only error."""
    m = re.search(r"(?:unsupported GLOBAL|Unsupported global: GLOBAL) (\S+)", message)
    return m.group(1) if m else message.splitlines()[0][:160]


def load_checkpoint(path: str | Path, mmap: bool = False) -> dict:
    """Load a checkpoint dict onto the CPU with torch's safe loader, or raise a clear CharrnnError.

    `weights_only=True` builds only tensors and plain containers: a pickle that names any other
    Python callable is refused before it can run. `map_location="cpu"` lets a checkpoint written
    on a GPU (cuda or mps) load anywhere. `mmap=True` reads tensor data lazily (for listing).
    A .safetensors file is read by `safetensors_io.read` (JSON and raw bytes: nothing to refuse).
    """
    path = Path(path)
    if not path.is_file():
        raise CharrnnError(f"no checkpoint at {path}")
    if path.suffix == ".safetensors":
        from charrnn.safetensors_io import read

        return _check_format(read(path), path)
    _check_container(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        raise CharrnnError(
            f"refused to load {path}: it asks to run Python code ({_refused_global(str(e))}), which a checkpoint "
            f"never needs; it may be malicious. Nothing from it was run."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        msg = str(e)
        if "zip archive" in msg or "central directory" in msg or isinstance(e, (EOFError, zipfile.BadZipFile)):
            if zipfile.is_zipfile(path):
                raise CharrnnError(f"{path} is truncated or corrupted: use another checkpoint (e.g. best.pt or last.pt)") from None
            raise CharrnnError(f"{path} is not a charrnn checkpoint (not a torch zip file), or it is truncated") from None
        raise CharrnnError(f"{path} is truncated or corrupted ({msg.splitlines()[0][:160]})") from None
    if not isinstance(ckpt, dict) or "format_version" not in ckpt or "model" not in ckpt:
        raise CharrnnError(f"{path} is a torch file but not a charrnn checkpoint")
    return _check_format(ckpt, path)


def _check_format(ckpt: dict, path: Path) -> dict:
    """Refuse a checkpoint written by a newer charrnn; return it otherwise."""
    if ckpt["format_version"] > FORMAT_VERSION:
        raise CharrnnError(
            f"{path} was written by a newer charrnn (checkpoint format {ckpt['format_version']}, "
            f"this version reads up to {FORMAT_VERSION}): upgrade charrnn"
        )
    return ckpt


def latest_val_bpc(ckpt: dict) -> float | None:
    """The newest validation loss a checkpoint records (bits/char), or None if it was never validated."""
    vals = [r["val_bpc"] for r in ckpt.get("metrics") or [] if r.get("val_bpc") is not None]
    return vals[-1] if vals else None


@dataclass
class Loaded:
    model: CharRNN
    vocab: Vocab
    checkpoint: dict
    path: Path
    chosen: bool = False  # True when no path was given and the newest run under ./checkpoints was taken

    def facts(self) -> str:
        """What a person needs to recognise this model: `step 1890, val 2.160 bits/char`."""
        val = latest_val_bpc(self.checkpoint)
        return f"step {self.checkpoint.get('step', '?')}, " + ("not validated" if val is None else f"val {val:.3f} bits/char")


def load_model(path: str | Path, device: str | torch.device = "cpu") -> Loaded:
    """A checkpoint file or run folder (None: the newest run) -> the model in eval mode on `device`, with its vocabulary."""
    chosen = path is None
    path = resolve_checkpoint(path)
    ckpt = load_checkpoint(path)
    try:
        model = CharRNN(ModelConfig(**ckpt["model_config"]))
        model.load_state_dict(ckpt["model"])
        vocab = Vocab.from_dict(ckpt["vocab"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CharrnnError(f"{path} is damaged: its model does not match its config ({str(e).splitlines()[0][:160]})") from None
    model.to(device).eval()
    return Loaded(model, vocab, ckpt, path, chosen)


def resolve_checkpoint(path: str | Path | None, root: str | Path = "checkpoints") -> Path:
    """A checkpoint file, a run folder (its best.pt, else last.pt) or None (the newest run under `root`)."""
    if path is None:
        return newest_checkpoint(root)
    p = Path(path)
    if p.is_dir():
        for name in ("best.pt", "last.pt"):
            if (p / name).is_file():
                return p / name
        found = sorted((f for f in p.iterdir() if f.suffix in MODEL_SUFFIXES), key=lambda f: f.stat().st_mtime)
        if found:
            return found[-1]
        raise CharrnnError(f"no checkpoint in folder {p}: train one with `charrnn train`")
    if not p.exists():
        raise CharrnnError(f"no checkpoint at {p}")
    return p


def newest_checkpoint(root: str | Path = "checkpoints") -> Path:
    """The best.pt (or last.pt) of the most recently written run under `root`."""
    root = Path(root)
    candidates = [f for f in root.glob(f"**/*{SUFFIX}") if f.name in ("best.pt", "last.pt")] if root.is_dir() else []
    if not candidates:
        raise CharrnnError(f"no trained model found under ./{root}: train one with `charrnn train FILE`, or pass a checkpoint")
    newest_run = max(candidates, key=lambda f: f.stat().st_mtime).parent
    return resolve_checkpoint(newest_run)


def is_resumable(ckpt: dict) -> bool:
    """Whether a checkpoint holds what resuming needs: its training settings, optimizer state and data position."""
    return "train_config" in ckpt and "optimizer" in ckpt and "cursor" in (ckpt.get("extra") or {})


def resolve_resume(path: str | Path) -> Path:
    """What `--resume` continues from: a checkpoint file, or a run folder's last.pt (its newest state).

    A file that cannot be resumed (an inference-only export) is refused here, before any corpus is read.
    """
    p = Path(path)
    if p.is_dir():
        if (p / "last.pt").is_file():
            p = p / "last.pt"
        elif found := snapshots(p):
            p = found[-1][1]
        else:
            raise CharrnnError(f"nothing to resume in {p}: it holds no last.pt (the run never saved); start it again")
    elif not p.exists():
        raise CharrnnError(f"no run folder or checkpoint at {p}")
    if not is_resumable(load_checkpoint(p, mmap=True)):  # tensors memory-mapped: only the header is read
        raise CharrnnError(f"{p} is inference-only (exported): it has no optimizer state or data position to resume "
                           "from; start a new run from its weights with --init-from")
    return p
