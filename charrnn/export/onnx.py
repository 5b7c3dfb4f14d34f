"""ONNX export: the one-step model as a graph any ONNX runtime can run, its vocabulary inside.

The graph advances B streams by one token (L layers, H hidden units, V ids in the vocabulary):

    inputs   token   (B,)       int64    each stream's current id
             h       (L, B, H)  float32  every layer's hidden state: zeros to start
             c       (L, B, H)  float32  every layer's cell state (LSTM only)
    outputs  logits  (B, V)     float32  scores for the next id: draw it from softmax(logits / T)
             h_out   (L, B, H)  float32  the new state: feed it back as h at the next step
             c_out   (L, B, H)  float32  (LSTM only) feed it back as c

Sampling is a loop over the graph, as `charrnn sample` runs it: read a line break and the prime,
then draw an id from softmax(logits / T), write its text and feed it back (docs/onnx.md has that
loop in numpy and onnxruntime). Decoding needs only the file's `metadata_props` (JSON strings):

    charrnn.pieces        the text id i stands for, pieces[i]: a character (a word for a word
                          model; for a byte model the byte i as chr(i))
    charrnn.vocab         the checkpoint's vocabulary dict, as `Vocab.from_dict` reads it
    charrnn.model_config  cell, layers, hidden, embed, vocab_size, dropout

The graph is the model's own `forward` on a block of one token, so PyTorch's LSTM and GRU layers
become ONNX's LSTM and GRU operators; `onnx_matches_torch` checks it against `CharRNN.step`.
"""

from __future__ import annotations

import importlib
import logging
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from charrnn.export.layout import model_from
from charrnn.generation.sampling import prime_ids_for
from charrnn.model.config import ModelConfig
from charrnn.model.rnn import CharRNN
from charrnn.text.vocab import Vocab
from charrnn.util.errors import CharrnnError
from charrnn.util.files import atomic_write_bytes, json_text

INSTALL = "pip install 'charrnn[onnx]'"
TRACE_BATCH = 2  # the example batch the graph is traced at (torch.export would fix a batch of 1 into the graph)


class OneStep(nn.Module):
    """`CharRNN.forward` on one token per stream, the state passed as separate tensors: what the graph computes."""

    def __init__(self, model: CharRNN):
        super().__init__()
        self.model = model

    def forward(self, token: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        logits, new_state = self.model(token.unsqueeze(1), state)  # (B, 1, V)
        return (logits[:, 0], *new_state)  # (B, V), then (L, B, H) each


def metadata(checkpoint: dict) -> dict[str, str]:
    """The `metadata_props` of the exported file (see the module doc): nothing of the training machine."""
    vocab = Vocab.from_dict(checkpoint["vocab"])
    return {
        "charrnn.pieces": json_text(list(vocab.pieces)),
        "charrnn.vocab": json_text(vocab.to_dict()),
        "charrnn.model_config": json_text(ModelConfig(**checkpoint["model_config"]).to_dict()),
    }


def export_onnx(checkpoint: dict, dest: str | Path) -> Path:
    """Write the checkpoint's one-step model to `dest` as ONNX (see the module doc), atomically; return `dest`."""
    _require("onnx", "onnxscript")
    model = model_from(checkpoint)
    names = ["h", "c"][: model.n_state]  # the state inputs; the outputs add `_out`
    batch = torch.export.Dim("batch")
    example = (torch.zeros(TRACE_BATCH, dtype=torch.long), *model.init_state(TRACE_BATCH))
    with _quiet():
        program = torch.onnx.export(
            OneStep(model), example, dynamo=True, verbose=False,
            input_names=["token", *names], output_names=["logits", *(f"{n}_out" for n in names)],
            dynamic_shapes=({0: batch}, tuple({1: batch} for _ in names)),  # token (B,), state (L, B, H)
        )
    proto = program.model_proto
    _strip_notes(proto.graph)
    for key, value in metadata(checkpoint).items():
        proto.metadata_props.add(key=key, value=value)
    dest = Path(dest)
    atomic_write_bytes(dest, proto.SerializeToString())
    return dest


@torch.no_grad()
def onnx_matches_torch(checkpoint: dict, path: str | Path, steps: int = 1000, prime: str = "") -> float:
    """The largest |logit difference| between the graph at `path` and `CharRNN.step`, both at batch 1.

    Both read the prime (after a line break, as `charrnn sample` does), then `steps` greedy tokens:
    each the argmax of torch's logits, fed to both, so a near-tie cannot send the two apart.
    onnxruntime runs on one thread.
    """
    model, session = model_from(checkpoint), _session(path)
    token_ids = prime_ids_for(Vocab.from_dict(checkpoint["vocab"]), prime)
    state = model.init_state(1)
    feeds = {name: s.numpy() for name, s in zip(("h", "c"), state)}  # (L, 1, H) each
    worst = 0.0
    for i in range(len(token_ids) + steps):
        token = token_ids[i] if i < len(token_ids) else int(logits.argmax())
        logits, state = model.step(torch.tensor([token]), state)  # (1, V)
        got, *new_state = session.run(None, {"token": np.array([token], dtype=np.int64), **feeds})  # (1, V), ...
        feeds = dict(zip(feeds, new_state))
        worst = max(worst, float(np.abs(got - logits.numpy()).max()))
    return worst


def _session(path: str | Path):
    """An onnxruntime session on the CPU, one thread."""
    _require("onnxruntime")
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _strip_notes(graph) -> None:
    """Drop the exporter's notes on the graph and its nodes: stack traces (this machine's paths), torch's names."""
    del graph.metadata_props[:]
    graph.doc_string = ""
    for node in graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
        for attr in node.attribute:
            for sub in [*attr.graphs, *([attr.g] if attr.HasField("g") else [])]:
                _strip_notes(sub)


def _require(*packages: str) -> None:
    for name in packages:
        try:
            importlib.import_module(name)
        except ImportError:
            raise CharrnnError(f"ONNX export needs the {name} package, which is not installed: {INSTALL}") from None


@contextmanager
def _quiet():
    """Keep torch's exporter from filling stderr with notes on its own internals (deprecations, skipped ops)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
