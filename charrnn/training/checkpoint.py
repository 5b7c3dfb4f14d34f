"""Checkpoints: atomic saving, safe loading, finding runs.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (its fields and what
each must hold: `payload`), so it loads with `torch.load(weights_only=True)`, which refuses
anything that would need arbitrary code to unpickle. FORMAT_VERSION is 1 for character models
and 2 for word and byte ones, so an older charrnn asks to be upgraded instead of misreading them.
An inference-only checkpoint can also be a .safetensors file (`safetensors_io`): `load_checkpoint`
returns the same dict for both.

A crash can leave a hidden `.last.pt.<pid>.<random>.tmp` behind; nothing reads those (they do
not end in .pt) and the next save removes them once the process that wrote them is gone.
"""

from __future__ import annotations

import io
import pickle
import re
import shutil
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from charrnn.training import payload
from charrnn.util.errors import CharrnnError
from charrnn.util.files import CHUNK, atomic_write, atomic_write_bytes, os_advice, sweep_stale_temps
from charrnn.training.payload import CHECKSUM_KEY, checksum
from charrnn.model.config import ModelConfig
from charrnn.model.rnn import CharRNN
from charrnn.text.vocab import Vocab

FORMAT_VERSION = 2  # the newest this version reads and writes (see the module doc)
SUFFIX = ".pt"
MODEL_SUFFIXES = (SUFFIX, ".safetensors")  # files a checkpoint argument may name
SNAPSHOT_RE = re.compile(r"^step-(\d+)\.pt$")  # periodic snapshots: step-000500.pt


class SaveError(CharrnnError):
    """A checkpoint could not be written (disk full, no permission); the previous file is intact."""


def format_version(vocab: dict) -> int:
    """The format a checkpoint with this vocabulary is written in: 1 for characters, 2 for a vocabulary that
    names its kind (words, bytes: an older charrnn would misread them)."""
    return 2 if "kind" in vocab else 1


def stamped(payload: dict) -> dict:
    """`payload` (see module docstring) with the format version and a checksum of all the rest."""
    out = {"format_version": format_version(payload.get("vocab") or {}),
           **{k: v for k, v in payload.items() if k != CHECKSUM_KEY}}
    out[CHECKSUM_KEY] = {"blake2b": checksum(out)}
    return out


def checkpoint_bytes(payload: dict) -> bytes:
    """Serialise `payload`, stamped (for tests and small files: a run folder serialises into the file itself)."""
    buf = io.BytesIO()
    torch.save(stamped(payload), buf)
    return buf.getvalue()


@contextmanager
def _saving(path: str | Path):
    """Turn a failed write of the checkpoint `path` into a SaveError that says whether an older file is intact."""
    kept = "the previous one is intact" if Path(path).exists() else "nothing was written"
    try:
        yield
    except OSError as e:
        raise SaveError(f"could not save checkpoint {path}: {e.strerror or e} ({kept}); {os_advice(e)}") from None
    except RuntimeError as e:  # torch reports a failed write or allocation inside its zip writer so
        raise SaveError(f"could not save checkpoint {path}: {str(e).splitlines()[0][:160]} ({kept}); "
                        "free some memory or disk space") from None


def write_checkpoint(path: str | Path, payload: dict) -> None:
    """Serialise `payload` straight into a temporary file (no second copy of the weights in memory) and
    publish it atomically, or raise SaveError."""
    with _saving(path), atomic_write(path) as f:
        torch.save(stamped(payload), f)


def copy_checkpoint(src: str | Path, dest: str | Path) -> None:
    """Publish a copy of the checkpoint file `src` at `dest` atomically (best.pt after last.pt), or raise SaveError."""
    with _saving(dest), atomic_write(dest) as out, open(src, "rb") as f:
        shutil.copyfileobj(f, out, CHUNK)


def write_checkpoint_bytes(path: str | Path, data: bytes) -> None:
    """Write serialised checkpoint bytes atomically, or raise SaveError (the old file stays as it was)."""
    with _saving(path):
        atomic_write_bytes(path, data)


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete the temporary files a killed save left in a run folder (`.last.pt.1234.x1y2.tmp`), only those
    whose writer is gone."""
    return sweep_stale_temps(folder, (f".*{SUFFIX}.*.tmp", ".*.safetensors.*.tmp", ".metrics.jsonl.*.tmp",
                                      ".config.yaml.*.tmp", ".write-test.*.tmp"))


def snapshots(folder: str | Path) -> list[tuple[int, Path]]:
    """The periodic snapshots in a run folder as (step, path), oldest first."""
    matches = ((SNAPSHOT_RE.match(f.name), f) for f in Path(folder).glob(f"step-*{SUFFIX}"))
    return sorted((int(m.group(1)), f) for m, f in matches if m)


def run_identity(folder: str | Path) -> dict | None:
    """What every checkpoint of the run in `folder` shares: its model_config (and vocabulary), read from last.pt
    or best.pt (headers only), else from config.yaml's model keys; None when the folder shows no run at all."""
    folder = Path(folder)
    for name in ("last.pt", "best.pt"):
        try:
            ckpt = load_checkpoint(folder / name, mmap=True)
        except (CharrnnError, OSError):
            continue
        return {"model_config": dict(ckpt["model_config"]), "vocab": ckpt["vocab"]}
    import yaml

    from charrnn.training.config import read_yaml

    try:
        cfg = read_yaml((folder / "config.yaml").read_text(encoding="utf-8"))
        keys = ("cell", "layers", "hidden", "embed")
        if isinstance(cfg, dict) and all(k in cfg for k in keys):
            return {"model_config": {k: cfg[k] for k in keys}}
    except (OSError, ValueError, yaml.YAMLError):
        pass
    return None


def belongs_to(path: str | Path, identity: dict | None) -> bool:
    """True if `path` loads as a charrnn checkpoint (headers checked) of the run described by `identity`."""
    if identity is None:
        return False
    try:
        ckpt = load_checkpoint(path, mmap=True)
    except (CharrnnError, OSError):
        return False
    mc = ckpt["model_config"]
    if any(mc.get(k) != v for k, v in identity["model_config"].items() if k != "dropout"):
        return False
    return "vocab" not in identity or ckpt["vocab"] == identity["vocab"]


def prune_snapshots(folder: str | Path, keep: int, dry_run: bool = False) -> list[Path]:
    """Delete all but the `keep` newest snapshots that load as checkpoints of this folder's run (`belongs_to`):
    anything else named step-000100.pt stays where it is, and so do best.pt and last.pt."""
    identity = run_identity(folder)
    found = [(step, f) for step, f in snapshots(folder) if belongs_to(f, identity)]
    old = [f for _, f in found[: max(0, len(found) - keep)]]
    if not dry_run:
        for f in old:
            f.unlink(missing_ok=True)
    return old


@contextmanager
def _one_version(path: Path):
    """A name for the file at `path` as it is now, that stays that file while the load lasts.

    torch.load(mmap=True) opens its file twice (the pickle, then the tensor data), and a training run
    renames a new last.pt over the old one every few steps: a save landing between the two opens would
    pair one checkpoint's fields with another's tensors. So the file is opened once, here, and later
    opens go through that descriptor's /dev/fd name (Linux, macOS; elsewhere the path itself).
    """
    with open(path, "rb") as f:
        pinned = Path(f"/dev/fd/{f.fileno()}")
        yield pinned if pinned.exists() else path


def _check_container(path: Path, source: Path) -> int:
    """Tell apart, before unpickling anything, the ways a file can fail to be a torch checkpoint; its size.
    `source` is where to read it (`_one_version`'s name for `path`); messages name `path`."""
    size = source.stat().st_size
    if size == 0:
        raise CharrnnError(f"{path} is empty (0 bytes): it was never written completely; use another checkpoint")
    with open(source, "rb") as f:
        head = f.read(4)
    if head != b"PK\x03\x04":
        raise CharrnnError(f"{path} is not a charrnn checkpoint (not a torch zip archive)")
    if not zipfile.is_zipfile(source):
        raise CharrnnError(f"{path} is truncated or corrupted (its zip directory is missing): "
                           "use another checkpoint (best.pt, last.pt or a step-*.pt snapshot)")
    try:
        with zipfile.ZipFile(source) as z:
            entries = z.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise CharrnnError(f"{path} is corrupted ({e}): use another checkpoint") from None
    if not any(e.filename.endswith("/data.pkl") for e in entries):
        raise CharrnnError(f"{path} is a zip archive but not a torch checkpoint")
    # torch stores every entry uncompressed: one that expands (a crafted "zip bomb") is refused unread
    expanded = sum(e.file_size for e in entries)
    if any(e.compress_type != zipfile.ZIP_STORED for e in entries) or expanded > size:
        raise CharrnnError(f"{path} is damaged: its entries would expand to {expanded:,} bytes from a {size:,}-byte "
                           "file (torch never compresses a checkpoint); it was not loaded")
    return size


def _refused_global(message: str) -> str:
    """The Python object an unsafe pickle asked for, from torch's weights_only error."""
    m = re.search(r"(?:unsupported GLOBAL|Unsupported global: GLOBAL) (\S+)", message)
    return m.group(1) if m else message.splitlines()[0][:160]


def _torch_load(path: Path, source: Path, mmap: bool) -> dict:
    """torch's safe loader reading `source` (see `_check_container`), its failures turned into one clear CharrnnError each."""
    try:
        return torch.load(source, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        raise CharrnnError(
            f"refused to load {path}: it asks to run Python code ({_refused_global(str(e))}), which a checkpoint "
            f"never needs; it may be malicious. Nothing from it was run."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, TypeError, KeyError,
            IndexError, AttributeError, OverflowError, MemoryError) as e:  # (a zip `_check_container` passed)
        first = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise CharrnnError(f"{path} is truncated or corrupted ({first}): use another checkpoint") from None


def _check_header(ckpt, path: Path, size: int) -> None:
    """A charrnn checkpoint of a format this version reads, its contents bounded (`payload.check_bounds`)."""
    if not isinstance(ckpt, dict) or "format_version" not in ckpt or "model" not in ckpt:
        raise CharrnnError(f"{path} is a torch file but not a charrnn checkpoint")
    payload.check_bounds(ckpt, size)  # before anything walks it (or shows a field) recursively
    version = ckpt["format_version"]
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise CharrnnError(f"{path} is damaged: its format_version is {type(version).__name__} {version!r}"[:200]
                           + ", not a format number")
    if version > FORMAT_VERSION:
        raise CharrnnError(
            f"{path} was written by a newer charrnn (checkpoint format {version}, "
            f"this version reads up to {FORMAT_VERSION}): upgrade charrnn"
        )


def latest_val_bpc(ckpt: dict) -> float | None:
    """The newest validation loss a checkpoint records (bits/char), or None if it was never validated."""
    vals = [r["val_bpc"] for r in ckpt.get("metrics") or [] if r.get("val_bpc") is not None]
    return vals[-1] if vals else None


def load_checkpoint(path: str | Path, mmap: bool = False) -> dict:
    """Load a checkpoint dict onto the CPU with torch's safe loader, checked, or raise a clear CharrnnError.

    Every field is checked (`payload.check`) on a memory-mapped load first, which reads no tensor
    data, so a file whose config claims more than it holds costs nothing; only then are the weights
    read (through that mapping, copy-on-write) and checked against the checksum. `mmap=True` stops
    after the first look (for listing). A .safetensors file (`safetensors_io.read`) is checked the same way.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise CharrnnError(f"no checkpoint at {path}")
    if not path.is_file():
        what = "a folder" if path.is_dir() else "not a regular file (a device, FIFO or broken link)"
        raise CharrnnError(f"{path} is {what}: pass a checkpoint file (.pt) or a run folder")
    try:
        if path.suffix == ".safetensors":
            from charrnn.training.safetensors_io import read

            ckpt, size = read(path)
            _check_header(ckpt, path, size)
            payload.check(ckpt, size)
            return ckpt
        with _one_version(path) as source:  # a run saving over `path` meanwhile cannot mix two saves
            size = _check_container(path, source)
            ckpt = _torch_load(path, source, mmap=True)
            _check_header(ckpt, path, size)
            payload.check(ckpt, size, full=False)
        if not mmap:
            payload.check_contents(ckpt)
    except payload.Damaged as e:
        raise CharrnnError(f"{path} is damaged: {e}") from None
    return ckpt


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
    ckpt = load_checkpoint(path)  # checked: the config, vocabulary and weights agree, and fit the file
    model = CharRNN(ModelConfig(**ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    return Loaded(model.to(device).eval(), Vocab.from_dict(ckpt["vocab"]), ckpt, path, chosen)


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
    if not p.exists() and not p.is_symlink():
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


def check_resumable(ckpt: dict, name: str | Path = "this checkpoint") -> None:
    """Refuse an inference-only (exported) checkpoint before anything else is read or hashed."""
    if not is_resumable(ckpt):
        raise CharrnnError(f"{name} is inference-only (exported): it has no optimizer state or data position to resume "
                           "from; start a new run from its weights with init_from", "init_from")


def resolve_resume(path: str | Path) -> Path:
    """What a resumed run continues from: a checkpoint file, or a run folder's last.pt (its newest state).
    An inference-only export is refused here, before any corpus is read."""
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
    check_resumable(load_checkpoint(p, mmap=True), p)  # tensors memory-mapped: only the header is read
    return p
