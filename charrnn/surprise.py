"""How well a model predicts a given text: the whole-text figure and the surprise of each character.

Characters outside the model's vocabulary cannot be predicted or fed to it. They are
*skipped and counted*: removed from the character stream before the model reads it (so
the text around them is read as if they were not there), and reported by character and
count, so a figure over a text full of unknown characters never passes unnoticed.

The first known character has nothing before it to be predicted from: the model's only
input is the previous character, and there is no start-of-text symbol. It is shown but
not scored, exactly as in `evaluate` (N characters give N - 1 predictions), so the
per-character surprisals of `score_text` add up to the total of
`evaluate(batch_size=1)` over the same characters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from charrnn.evaluation import LN2, EvalResult, char_nll, evaluate
from charrnn.model import CharRNN
from charrnn.vocab import Vocab


@dataclass
class Encoded:
    tokens: np.ndarray  # (K,) ids of the characters the model knows, in order
    known: np.ndarray  # (N,) bool over the text: True where the character is in the vocabulary
    oov: dict[str, int]  # unknown character -> how many times it occurs (skipped)

    @property
    def oov_count(self) -> int:
        return sum(self.oov.values())


def encode_known(vocab: Vocab, text: str) -> Encoded:
    """Text -> ids of its known characters, plus which characters were unknown and how often.

    Vectorised over code points, so a 100 MB text encodes in about a second.
    """
    points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)  # (N,)
    ids = vocab.id_table(int(points.max(initial=0)) + 1, missing=-1, dtype=np.int64)[points]  # (N,) -1 where unknown
    known = ids >= 0
    unknown, counts = np.unique(points[~known], return_counts=True)
    oov = {chr(int(p)): int(k) for p, k in zip(unknown, counts)}
    oov = dict(sorted(oov.items(), key=lambda kv: -kv[1]))
    return Encoded(ids[known].astype(vocab.dtype), known, oov)


@dataclass
class TextEval:
    result: EvalResult  # the figure over the known characters
    chars_read: int  # characters in the text, unknown ones included
    oov: dict[str, int]  # unknown characters skipped, with counts
    batch_size: int  # the stream layout the figure was computed with
    seq_len: int

    def to_dict(self) -> dict:
        return {
            **self.result.to_dict(),
            "chars_read": self.chars_read,
            "oov_chars": sum(self.oov.values()),
            "oov": self.oov,
            "batch_size": self.batch_size,
            "seq_len": self.seq_len,
        }


def eval_text(
    model: CharRNN,
    vocab: Vocab,
    text: str,
    batch_size: int = 64,
    seq_len: int = 256,
    device: torch.device | str = "cpu",
    autocast_dtype: torch.dtype | None = None,
) -> TextEval:
    """Bits/char of `text` under `model` (unknown characters skipped and counted; see the module doc).

    The defaults (64 streams of 256) are the layout training validates with, so evaluating a
    run's held-out text reproduces its validation figure.
    """
    enc = encode_known(vocab, text)
    result = evaluate(model, enc.tokens, batch_size, seq_len, device, autocast_dtype)
    return TextEval(result, len(text), enc.oov, batch_size, seq_len)


@dataclass
class Span:
    start: int  # index in the text of the first character
    text: str  # the characters
    bits: float  # their total surprisal
    line: int  # 1-based line and column of the first character
    column: int

    def to_dict(self) -> dict:
        return {"start": self.start, "text": self.text, "bits": self.bits, "line": self.line, "column": self.column}


@dataclass
class Surprisal:
    text: str  # the whole text, unknown characters included
    bits: np.ndarray  # (N,) surprisal of each character in bits; NaN where not scored
    oov: dict[str, int] = field(default_factory=dict)  # unknown characters (not scored), with counts

    @property
    def scored(self) -> int:
        return int(np.isfinite(self.bits).sum())

    @property
    def total_bits(self) -> float:
        return float(np.nansum(self.bits))

    @property
    def bits_per_char(self) -> float:
        return self.total_bits / max(self.scored, 1)

    def spans(self, top: int = 10, threshold: float | None = None) -> list[Span]:
        return surprising_spans(self.text, self.bits, top, threshold)

    def to_dict(self, top: int = 10) -> dict:
        return {
            "bits_per_char": self.bits_per_char,
            "total_bits": self.total_bits,
            "chars": self.scored,
            "chars_read": len(self.text),
            "oov_chars": sum(self.oov.values()),
            "oov": self.oov,
            "text": self.text,
            "bits": [None if math.isnan(b) else float(b) for b in self.bits],
            "spans": [s.to_dict() for s in self.spans(top)],
        }


def score_text(
    model: CharRNN,
    vocab: Vocab,
    text: str,
    seq_len: int = 256,
    device: torch.device | str = "cpu",
) -> Surprisal:
    """Surprisal of every character, -log2 p(char | everything before it), one stream from the start.

    Unknown characters and the first known character get NaN (see the module doc).
    """
    enc = encode_known(vocab, text)
    bits = np.full(len(text), np.nan)
    nll = char_nll(model, enc.tokens, seq_len, device)  # (K - 1,) nats
    positions = np.flatnonzero(enc.known)  # (K,) where each known character sits in the text
    bits[positions[1:]] = nll / LN2
    return Surprisal(text, bits, enc.oov)


def surprising_spans(text: str, bits: np.ndarray, top: int = 10, threshold: float | None = None) -> list[Span]:
    """The `top` runs of consecutive characters each at least `threshold` bits, by total bits.

    The default threshold is the 90th percentile of the scored characters, at least 1 bit,
    so the list adapts to how good the model is. Unscored characters (NaN) end a run.
    """
    finite = bits[np.isfinite(bits)]
    if finite.size == 0 or top <= 0:
        return []
    if threshold is None:
        threshold = max(1.0, float(np.percentile(finite, 90)))
    high = np.nan_to_num(bits, nan=-1.0) >= threshold  # (N,)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], high.astype(np.int8), [0]])))
    runs = list(zip(edges[::2], edges[1::2]))  # [start, end) of each run
    runs.sort(key=lambda r: -float(bits[r[0] : r[1]].sum()))
    line_starts = np.flatnonzero(np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32) == 10) + 1
    spans = []
    for start, end in runs[:top]:
        line = int(np.searchsorted(line_starts, start, side="right"))  # newlines before `start`
        column = start - (int(line_starts[line - 1]) if line else 0)
        spans.append(Span(int(start), text[start:end], float(bits[start:end].sum()), line + 1, int(column) + 1))
    return spans



