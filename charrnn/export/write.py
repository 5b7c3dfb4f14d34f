"""`charrnn checkpoints export RUN -o FILE`: a model in another form; the suffix of FILE picks which.

    .pt            an inference-only checkpoint: weights, vocabulary, config, metrics; no optimizer
    .safetensors   the same as raw tensors + JSON metadata: a format that cannot run code, read by other tools
    .html          one self-contained web page that writes text on its own (`html.py`)
    .onnx          the one-step network for onnxruntime and friends (`onnx.py`)

Every form carries the vocabulary, so the file alone rebuilds the model, and none carries a path of
the machine that trained it: files are named, folders left out (`portable_meta`).
"""

from __future__ import annotations

from pathlib import Path

from charrnn.training.checkpoint import checkpoint_bytes, format_version, load_checkpoint, write_checkpoint_bytes
from charrnn.util.errors import CharrnnError

FORMATS = (".pt", ".safetensors", ".html", ".onnx")
# What an inference-only checkpoint keeps: enough to rebuild the model and its vocabulary, and describe it.
EXPORT_KEYS = ("model_config", "vocab", "model", "step", "epoch", "metrics", "best_val_bpc", "meta")


def export(source: str | Path, dest: str | Path, overwrite: bool = False) -> Path:
    """Write the checkpoint `source` to `dest` in the form its suffix names (see the module doc); returns `dest`.

    The .pt and .safetensors copies load with `load_model` and sample exactly like the original;
    none can be resumed (start a new run from one with --init-from).
    """
    dest = Path(dest)
    if dest.suffix not in FORMATS:
        raise CharrnnError(f"name the export *{', *'.join(FORMATS)} (got {dest.name})")
    if dest.exists() and not overwrite:
        raise CharrnnError(f"{dest} already exists: choose another output, or set force to replace it", "output", "force")
    ckpt = load_checkpoint(source)
    payload = {k: ckpt[k] for k in EXPORT_KEYS if k in ckpt}
    payload["meta"] = {**portable_meta(ckpt.get("meta") or {}), "exported_from": Path(source).name}
    if dest.suffix == ".html":
        from charrnn.export.html import export_html

        return export_html(payload, dest)
    if dest.suffix == ".onnx":
        from charrnn.export.onnx import export_onnx

        return export_onnx(payload, dest)
    if dest.suffix == ".pt":
        data = checkpoint_bytes(payload)
    else:
        from charrnn.training.safetensors_io import encode

        data = encode(payload, format_version(payload["vocab"]))
    write_checkpoint_bytes(dest, data)
    return dest


def portable_meta(meta: dict) -> dict:
    """A checkpoint's `meta` with every path cut to its file name: what training read stays known, not where."""
    name = lambda s: s if s == "-" else Path(s).name  # noqa: E731
    out = dict(meta)
    if out.get("sources"):
        out["sources"] = [name(s) for s in out["sources"]]
    if out.get("init_from"):
        out["init_from"] = name(out["init_from"])
    if isinstance(out.get("config"), dict) and out["config"].get("corpus"):
        out["config"] = {**out["config"], "corpus": [name(s) for s in out["config"]["corpus"]]}
    return out
