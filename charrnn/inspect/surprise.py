"""How well a model predicts a given text: the whole-text figure and the surprise of each character.

Characters outside the model's vocabulary are *skipped and counted*: removed before the
model reads them (the text around them is read as if they were not there) and reported by
character and count, so a figure over a text full of unknown characters never passes unnoticed.

The first known character has nothing before it to be predicted from (there is no
start-of-text symbol): it is shown but not scored, as in `evaluate` (N characters give N - 1
predictions), so the surprisals of `score_text` add up to the total of `evaluate(batch_size=1)`.

Word and byte models predict tokens: a token's surprisal is *spread evenly over the characters
it stands for* (a word's bits divided by its length; a character of several bytes gets the sum of
its bytes' bits, its surprisal by the chain rule), so every kind is on one bits-per-character
scale and the figures still add up to the total.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from charrnn.inspect.evaluation import LN2, EvalResult, char_nll, evaluate
from charrnn.model.rnn import CharRNN
from charrnn.text.vocab import Vocab


@dataclass
class Encoded:
    tokens: np.ndarray  # (K,) ids of the tokens the model reads, in order
    known: np.ndarray  # (N,) bool over the text: True where the character can be encoded
    oov: dict[str, int]  # unknown character -> how many times it occurs (skipped)
    starts: np.ndarray  # (K,) token k stands for text[starts[k]:ends[k]]
    ends: np.ndarray  # (K,)

    @property
    def oov_count(self) -> int:
        return sum(self.oov.values())

    def coverage(self) -> tuple[np.ndarray, np.ndarray]:
        """(positions (M,), owners (M,)): every (character, token) pair where the token's span holds the character."""
        lengths = self.ends - self.starts  # (K,)
        first = np.repeat(self.starts - (np.cumsum(lengths) - lengths), lengths)
        positions = np.arange(int(lengths.sum())) + first  # (M,)
        owners = np.repeat(np.arange(len(self.tokens)), lengths)  # (M,)
        keep = self.known[positions]
        return positions[keep], owners[keep]

    def token_of_char(self) -> np.ndarray:
        """(number of known characters,) for each known character, the last token covering it:
        the model has read the whole character once it has read that token."""
        last = np.full(len(self.known), -1, dtype=np.int64)
        positions, owners = self.coverage()
        np.maximum.at(last, positions, owners)
        return last[self.known]


def encode_known(vocab: Vocab, text: str) -> Encoded:
    """Text -> ids of its known characters' tokens, plus which characters were unknown and how often.

    Vectorised over code points for characters, so a 100 MB text encodes in about a second.
    """
    ids, starts, ends, oov = vocab.encode_spans(text)
    known = np.ones(len(text), dtype=bool)
    if oov:
        points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)  # (N,)
        known = ~np.isin(points, [ord(c) for c in oov])
    return Encoded(ids, known, oov, starts, ends)


@dataclass
class TextEval:
    result: EvalResult  # the figure over the known characters
    chars_read: int  # characters in the text, unknown ones included
    oov: dict[str, int]  # unknown characters skipped, with counts
    batch_size: int  # the stream layout the figure was computed with
    seq_len: int

    def to_dict(self) -> dict:
        return {**self.result.to_dict(), "chars_read": self.chars_read, "oov_chars": sum(self.oov.values()),
                "oov": self.oov, "batch_size": self.batch_size, "seq_len": self.seq_len}


def eval_text(model: CharRNN, vocab: Vocab, text: str, batch_size: int = 64, seq_len: int = 256,
              device: torch.device | str = "cpu", autocast_dtype: torch.dtype | None = None,
              progress=None) -> TextEval:
    """Bits/char of `text` under `model` (unknown characters skipped and counted; see the module doc);
    `progress(done, total)` as it goes.

    The defaults (64 streams of 256) are the layout training validates with, so evaluating a
    run's held-out text reproduces its validation figure.
    """
    enc = encode_known(vocab, text)
    result = evaluate(model, enc.tokens, batch_size, seq_len, device, autocast_dtype, char_counts=vocab.char_counts,
                      progress=progress)
    return TextEval(result, len(text), enc.oov, batch_size, seq_len)


@dataclass
class Span:
    start: int  # index in the text of the first character
    text: str  # the characters
    bits: float  # their total surprisal
    line: int  # 1-based line and column of the first character
    column: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Surprisal:
    text: str  # the whole text, unknown characters included
    bits: np.ndarray  # (N,) surprisal of each character in bits; NaN where not scored
    oov: dict[str, int]  # unknown characters (not scored), with counts
    scored: int  # characters the predicted tokens stand for: what bits per character divide by (as `evaluate`)
    tokens: int  # tokens predicted

    @property
    def total_bits(self) -> float:
        return float(np.nansum(self.bits))

    @property
    def bits_per_char(self) -> float:
        return self.total_bits / max(self.scored, 1)

    def spans(self, top: int = 10, threshold: float | None = None) -> list[Span]:
        """The `top` runs of consecutive characters each at least `threshold` bits, by total bits.

        The default threshold is the 90th percentile of the scored characters, at least 1 bit,
        so the list adapts to how good the model is. Unscored characters (NaN) end a run.
        """
        text, bits = self.text, self.bits
        finite = bits[np.isfinite(bits)]
        if finite.size == 0 or top <= 0:
            return []
        if threshold is None:
            threshold = max(1.0, float(np.percentile(finite, 90)))
        high = np.nan_to_num(bits, nan=-1.0) >= threshold  # (N,)
        edges = np.flatnonzero(np.diff(np.concatenate([[0], high.astype(np.int8), [0]])))
        runs = sorted(zip(edges[::2], edges[1::2]), key=lambda r: -float(bits[r[0] : r[1]].sum()))  # [start, end)
        line_starts = np.flatnonzero(np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32) == 10) + 1
        spans = []
        for start, end in runs[:top]:
            line = int(np.searchsorted(line_starts, start, side="right"))  # newlines before `start`
            column = start - (int(line_starts[line - 1]) if line else 0)
            spans.append(Span(int(start), text[start:end], float(bits[start:end].sum()), line + 1, int(column) + 1))
        return spans

    def to_dict(self, top: int = 10) -> dict:
        return {
            "bits_per_char": self.bits_per_char,
            "total_bits": self.total_bits,
            "chars": self.scored,
            "tokens": self.tokens,
            "chars_read": len(self.text),
            "oov_chars": sum(self.oov.values()),
            "oov": self.oov,
            "text": self.text,
            "bits": [None if math.isnan(b) else float(b) for b in self.bits],
            "spans": [s.to_dict() for s in self.spans(top)],
        }


def score_text(model: CharRNN, vocab: Vocab, text: str, seq_len: int = 256,
               device: torch.device | str = "cpu", progress=None) -> Surprisal:
    """Surprisal of every character, -log2 p(char | everything before it), one stream from the start;
    `progress(done, total)` as it goes.

    Unknown characters and the first token's characters get NaN; a token's bits are spread
    over its characters (see the module doc).
    """
    enc = encode_known(vocab, text)
    bits = np.full(len(text), np.nan)
    nll = char_nll(model, enc.tokens, seq_len, device, progress)  # (K - 1,) nats, for tokens 1 .. K-1
    positions, owners = enc.coverage()  # (M,) every known character with each token covering it
    scored = owners > 0
    positions, owners = positions[scored], owners[scored]
    if len(owners):
        share = (nll / LN2)[owners - 1] / np.bincount(owners, minlength=len(enc.tokens))[owners]  # (M,)
        bits[np.unique(positions)] = 0.0
        np.add.at(bits, positions, share)
    chars = int(vocab.char_counts[np.asarray(enc.tokens[1:], dtype=np.int64)].sum())
    return Surprisal(text, bits, enc.oov, chars, max(len(enc.tokens) - 1, 0))
