"""Models as .safetensors files: weights, vocabulary and config in a format that cannot run code.

A .safetensors file is an 8-byte little-endian header length, a JSON header (each tensor's
dtype, shape and byte range, plus a `__metadata__` map of strings), then the raw tensor bytes.
Reading one parses JSON and copies bytes: nothing in the file is ever executed, whoever made
it (a pickle can name any Python callable), and other ecosystems (Rust, JAX, Hugging Face)
read it as it is.

charrnn writes what an inference-only export holds (`export.write.EXPORT_KEYS`): the weights as
tensors, everything else as JSON strings in the metadata, so the file alone rebuilds the
model and its vocabulary:

    __metadata__   format          "charrnn"
                   format_version  "1"
                   model_config    {"vocab_size": 65, "cell": "lstm", "layers": 2, ...}   JSON
                   vocab           {"chars": "\\n !$&',-.3:;?AB..."}                      JSON
                   step, epoch, best_val_bpc, metrics, meta                                JSON
    tensors        embedding.weight, rnn.weight_ih_l0, ..., head.weight, head.bias         (the state_dict)

`read` returns the same dict `checkpoint.load_checkpoint` returns for a .pt file. The metadata's JSON
is parsed only once its nesting is seen to stay within `payload.MAX_DEPTH` (`json_nesting`): Python's
parser recurses, and 100,000 nested lists would raise RecursionError inside it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from charrnn.util.errors import CharrnnError
from charrnn.util.files import json_text

FORMAT = "charrnn"
JSON_KEYS = ("model_config", "vocab", "step", "epoch", "best_val_bpc", "metrics", "meta")  # metadata as JSON
REQUIRED = ("format_version", "model_config", "vocab")
STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')  # a JSON string, escapes included
BRACKET = re.compile(r"[\[\]{}]")


def json_nesting(text: str, limit: int) -> int:
    """How deep the arrays and objects of JSON `text` nest, counted without recursion; stops past `limit`."""
    depth = deepest = 0
    for m in BRACKET.finditer(STRING.sub("", text)):
        depth += 1 if m.group() in "[{" else -1
        deepest = max(deepest, depth)
        if deepest > limit:
            break
    return deepest


def encode(payload: dict, format_version: int) -> bytes:
    """An inference-only checkpoint dict (weights in payload["model"]) -> the bytes of a .safetensors file."""
    from safetensors.torch import save

    metadata = {"format": FORMAT, "format_version": str(format_version)}
    metadata.update({k: json_text(payload[k]) for k in JSON_KEYS if k in payload})  # a corpus name that is not UTF-8: see json_text
    tensors = {name: t.detach().cpu().contiguous() for name, t in payload["model"].items()}
    return save(tensors, metadata)


def read(path: str | Path) -> tuple[dict, int]:
    """A charrnn .safetensors file -> (the checkpoint dict, the file's size in bytes), or a one-line
    CharrnnError saying what is wrong. The file is read once: the size is that of the bytes parsed."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(path)
    data = path.read_bytes()
    if not data:
        raise CharrnnError(f"{path} is empty (0 bytes): it was never written completely")
    try:
        tensors = load(data)
        metadata = _header(data).get("__metadata__") or {}
    except (SafetensorError, ValueError, OverflowError) as e:
        reason = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
        raise CharrnnError(f"{path} is not a valid safetensors file ({reason}): it is truncated or was altered") from None
    if metadata.get("format") != FORMAT or not all(k in metadata for k in REQUIRED):
        raise CharrnnError(f"{path} is a safetensors file but not a charrnn model "
                           "(its metadata holds no charrnn vocabulary and config)")
    ckpt: dict = {"model": tensors}
    try:
        ckpt["format_version"] = int(metadata["format_version"])
        for key in JSON_KEYS:
            if key in metadata:
                ckpt[key] = _parsed(metadata[key], key, path)
    except ValueError:
        raise CharrnnError(f"{path} has a damaged header: its charrnn metadata is not valid JSON") from None
    if not isinstance(ckpt["model_config"], dict) or not isinstance(ckpt["vocab"], dict):
        raise CharrnnError(f"{path} has a damaged header: model_config and vocab must be JSON objects")
    return ckpt, len(data)


def _parsed(text, key: str, path: Path):
    """One metadata entry's JSON, parsed once its nesting is known to be bounded."""
    from charrnn.training.payload import MAX_DEPTH

    if not isinstance(text, str):
        raise ValueError(key)
    if json_nesting(text, MAX_DEPTH) > MAX_DEPTH:
        raise CharrnnError(f"{path} is damaged: its metadata {key} is nested more than {MAX_DEPTH} levels deep")
    return json.loads(text)


def _header(data: bytes) -> dict:
    """The JSON header of a .safetensors file's bytes (its tensors were already checked by `load`)."""
    size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + size])
    if not isinstance(header, dict):
        raise ValueError("the header is not a JSON object")
    return header
