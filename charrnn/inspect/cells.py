"""Interpretable cells: record every unit while the model reads a text, and find the ones
that track a feature of the text (Karpathy, Johnson & Fei-Fei 2015, "Visualizing and
Understanding Recurrent Networks"). After each character we keep every layer's hidden state h
(and, for an LSTM, its cell state c):

    position t:      0    1    2   ...          the text, one character per step
    h[t, l, j]      h after reading character t, layer l (0-based here), unit j
    c[t, l, j]      the LSTM cell state at the same moment

A unit "tracks" a feature (`features.py`) when its activation rises and falls with it: units are
ranked by |Pearson r| over every position (0, not NaN, where either never changes; a feature that
never changes in the text gets no units at all). Units are named `LAYER:INDEX` with layers counted
from 1, plus the kind: `2:117 c` is unit 117 of the second layer's cell state.

A word or byte model's recording is made per token and laid over the characters (`Recording.at`):
each character shows the state after the token that completes it (a whole word, a last byte).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch

from charrnn.util.errors import UsageError
from charrnn.inspect.features import DESCRIPTIONS, guess_syntax, scan
from charrnn.model.rnn import CharRNN


@dataclass
class Recording:
    h: np.ndarray  # (N, L, H) hidden state after each character
    c: np.ndarray | None  # (N, L, H) LSTM cell state after each character (None for GRU/RNN)

    @property
    def kinds(self) -> list[str]:
        return ["h", "c"] if self.c is not None else ["h"]

    def get(self, kind: str) -> np.ndarray:
        if kind not in self.kinds:
            raise UsageError(f"this model has no {kind!r} state: use kind {' or '.join(self.kinds)}", "kind")
        return self.h if kind == "h" else self.c

    def unit(self, unit: "Unit") -> np.ndarray:
        """(N,) activations of one unit (see `check_unit`)."""
        return self.get(unit.kind)[:, unit.layer - 1, unit.index]

    def at(self, index: np.ndarray) -> "Recording":
        """The recording at positions `index` (M,): per character, from a recording per token."""
        return Recording(self.h[index], None if self.c is None else self.c[index])


RECORD_BLOCK = 4096  # tokens a layer reads per call (the state carried over): how often progress is told


@torch.no_grad()
def record(model: CharRNN, tokens: np.ndarray, progress=None) -> Recording:
    """Run `tokens` (N,) through the model from the zero state; keep every layer's h (and c);
    `progress(done, total)` as it goes, in tokens over every layer.

    The fused `nn.LSTM` returns only the top layer's outputs, so each layer runs on its own (a
    one-layer copy fed the layer below's h). Nor does it return c: with h known at every step, the
    gates are one product over all steps, and c_t = f_t * c_{t-1} + i_t * g_t an elementwise loop.
    Many times faster than stepping the model (`record_by_steps`, the tests' reference).
    """
    cfg, n = model.config, len(tokens)
    device = model.head.weight.device
    x = model.embedding(torch.as_tensor(np.asarray(tokens, dtype=np.int64), device=device))[None]  # (1, N, E)
    hs, cs = [], []
    for k in range(cfg.layers):
        w_ih, w_hh, b_ih, b_hh = weights = model.layer_weights(k)
        layer = type(model.rnn)(x.shape[-1], cfg.hidden, batch_first=True).to(device)
        for w, own in zip(weights, layer.parameters()):  # weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0
            own.data.copy_(w)
        told = (lambda done, k=k: progress(k * n + done, cfg.layers * n)) if progress else (lambda done: None)
        out = _read_in_blocks(layer, x, told)  # (1, N, H)
        h = out[0]  # (N, H)
        hs.append(h.float().cpu().numpy())
        if cfg.cell == "lstm":
            h_prev = torch.cat([torch.zeros_like(h[:1]), h[:-1]])  # (N, H)
            gates = x[0] @ w_ih.t() + b_ih + h_prev @ w_hh.t() + b_hh  # (N, 4H)
            i, f, g, _ = gates.chunk(4, dim=1)
            ig = (torch.sigmoid(i) * torch.tanh(g)).double().cpu().numpy()  # (N, H)
            f = torch.sigmoid(f).double().cpu().numpy()  # (N, H)
            c = np.empty_like(ig)
            prev = np.zeros(cfg.hidden)
            for t in range(len(c)):
                prev = c[t] = f[t] * prev + ig[t]
            cs.append(c.astype(np.float32))
        x = out
    return Recording(np.stack(hs, axis=1), np.stack(cs, axis=1) if cs else None)  # (N, L, H) each


def _read_in_blocks(layer, x: torch.Tensor, told) -> torch.Tensor:
    """A one-layer recurrent module's outputs (1, N, H) over `x` (1, N, E), read RECORD_BLOCK tokens at a time
    with the state carried (the same outputs as one call); `told(tokens done)` after each block."""
    outs, state = [], None
    for a in range(0, max(x.shape[1], 1), RECORD_BLOCK):  # (an empty text: one call, as before)
        out, state = layer(x[:, a : a + RECORD_BLOCK], state)
        outs.append(out)
        told(a + out.shape[1])
    return torch.cat(outs, dim=1)


@torch.no_grad()
def record_by_steps(model: CharRNN, tokens: np.ndarray) -> Recording:
    """The same recording through `CharRNN.step`, one character at a time (slow; a reference)."""
    n, L, H = len(tokens), model.config.layers, model.config.hidden
    device = model.head.weight.device
    h = np.zeros((n, L, H), dtype=np.float32)
    c = np.zeros((n, L, H), dtype=np.float32) if model.n_state == 2 else None
    ids = torch.as_tensor(np.asarray(tokens, dtype=np.int64), device=device)  # (N,)
    state = model.init_state(1, device)
    for t in range(n):
        _, state = model.step(ids[t : t + 1], state)  # state: tuple of (L, 1, H)
        h[t] = state[0][:, 0].cpu().numpy()
        if c is not None:
            c[t] = state[1][:, 0].cpu().numpy()
    return Recording(h, c)


def correlations(acts: np.ndarray, feature: np.ndarray) -> np.ndarray:
    """Pearson r of every column of `acts` (N, U) with `feature` (N,) -> (U,); 0 where either is constant."""
    a = acts.astype(np.float64) - acts.mean(axis=0, dtype=np.float64)  # (N, U)
    f = feature.astype(np.float64) - feature.mean()  # (N,)
    norm = np.sqrt((a * a).sum(axis=0)) * np.sqrt((f * f).sum())  # (U,)
    cov = f @ a  # (U,)
    out = np.zeros(acts.shape[1])
    ok = norm > 1e-12 * max(1.0, float(np.abs(cov).max(initial=0.0)))
    out[ok] = cov[ok] / norm[ok]
    return out


def varies(feature: np.ndarray) -> bool:
    """True when a feature takes more than one value: only then can a unit track it."""
    return len(feature) > 0 and bool(feature.min() != feature.max())


@dataclass(frozen=True)
class Unit:
    layer: int  # 1-based layer
    index: int  # 0-based unit within the layer
    kind: str  # "h" or "c"

    def __str__(self) -> str:
        return f"{self.layer}:{self.index} {self.kind}"


@dataclass
class UnitScore:
    unit: Unit
    r: float  # Pearson correlation with the feature

    def to_dict(self) -> dict:
        return {"layer": self.unit.layer, "index": self.unit.index, "kind": self.unit.kind, "r": self.r}


def rank_units(rec: Recording, feature: np.ndarray, top: int = 5, kinds: list[str] | None = None) -> list[UnitScore]:
    """The `top` units (over every layer and kind) with the largest |r| with `feature`."""
    scores = []
    for kind in kinds or rec.kinds:
        acts = rec.get(kind)  # (N, L, H)
        n, L, H = acts.shape
        r = correlations(acts.reshape(n, L * H), feature)  # (L*H,)
        best = np.argsort(-np.abs(r), kind="stable")[:top]
        scores += [UnitScore(Unit(int(j) // H + 1, int(j) % H, kind), float(r[j])) for j in best]
    scores.sort(key=lambda s: -abs(s.r))
    return scores[:top]


def parse_unit(spec: str, kind: str) -> Unit:
    """'2:117' (layer 2 counted from 1, unit 117 counted from 0) and a kind -> a Unit."""
    m = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", spec)
    if not m:
        raise UsageError(f"unit must look like LAYER:INDEX, e.g. 2:117 (layers from 1, units from 0), not {spec!r}", "unit")
    return Unit(int(m.group(1)), int(m.group(2)), kind)


def check_kind(kind: str | None, model: CharRNN) -> None:
    """A clear UsageError if `kind` is not a state this model has (before any time is spent recording)."""
    if kind not in (None, "h", "c"):
        raise UsageError("kind must be h or c", "kind")
    if kind == "c" and model.n_state != 2:
        raise UsageError(f"a {model.config.cell.upper()} has no cell state c: use kind h", "kind")


def check_unit(unit: Unit, model: CharRNN) -> None:
    """A clear UsageError if `unit` does not exist in `model`."""
    cfg = model.config
    check_kind(unit.kind, model)
    if not (1 <= unit.layer <= cfg.layers and 0 <= unit.index < cfg.hidden):
        raise UsageError(f"no unit {unit.layer}:{unit.index}: this model has layers 1..{cfg.layers} "
                         f"and units 0..{cfg.hidden - 1} per layer")


def best_window(feature: np.ndarray, width: int, text: str) -> tuple[int, int]:
    """[start, end) of the `width`-character window of `text` where `feature` varies the most (where a
    unit's feature actually changes), moved back to a line's start when one is less than 80 before it."""
    n = len(feature)
    if n <= width:
        return 0, n
    f = feature.astype(np.float64)
    s1 = np.concatenate([[0.0], np.cumsum(f)])
    s2 = np.concatenate([[0.0], np.cumsum(f * f)])
    sums, sq = s1[width:] - s1[:-width], s2[width:] - s2[:-width]  # (n - width + 1,)
    start = int(np.argmax(sq / width - (sums / width) ** 2))  # the first window of largest variance
    newline = text.rfind("\n", max(0, start - 80), start)
    if newline >= 0:
        start = newline + 1
    return start, min(n, start + width)


# ---- the whole analysis ------------------------------------------------------------------------


@dataclass
class CellReport:
    text: str  # the characters the model read (unknown characters removed)
    rec: Recording  # every unit at every position
    features: dict[str, np.ndarray]  # feature name -> (N,) values
    ranking: dict[str, list[UnitScore]]  # feature name -> its best units, strongest first ([] if it never changes)
    syntax: str  # the comment syntax the features used: c, hash or latex

    def values(self, unit: Unit) -> np.ndarray:
        """(N,) a unit's activations mapped to -1..1 for colouring: h as it is, c as tanh(c) (as in the paper)."""
        acts = self.rec.unit(unit)
        return np.tanh(acts) if unit.kind == "c" else np.clip(acts, -1.0, 1.0)

    def changes(self, name: str) -> bool:
        """Whether a feature takes more than one value in the text (a correlation with it means something)."""
        return varies(self.features[name])

    def correlations_of(self, unit: Unit) -> dict[str, float | None]:
        """A unit's Pearson r with every feature (None for a feature that never changes in the text)."""
        acts = self.rec.unit(unit)[:, None]  # (N, 1)
        return {name: float(correlations(acts, f)[0]) if varies(f) else None for name, f in self.features.items()}

    def to_dict(self) -> dict:
        return {
            "chars": len(self.text),
            "syntax": self.syntax,
            "layers": self.rec.h.shape[1],
            "hidden": self.rec.h.shape[2],
            "kinds": self.rec.kinds,
            "features": {name: {"description": DESCRIPTIONS[name], "never_changes": not self.changes(name),
                                "units": [s.to_dict() for s in scores]}
                         for name, scores in self.ranking.items()},
        }


def analyse(model: CharRNN, tokens: np.ndarray, text: str, syntax: str = "auto", top: int = 5,
            kinds: list[str] | None = None, token_of_char: np.ndarray | None = None, progress=None) -> CellReport:
    """Record the model reading `text` (whose ids are `tokens`) and rank its units for every feature;
    `progress(done, total)` while recording.

    `token_of_char` (len(text),): the token that completes each character, when a token is not
    one character (`surprise.Encoded.token_of_char`).
    """
    syntax = guess_syntax(text) if syntax == "auto" else syntax
    rec = record(model, tokens, progress)
    if token_of_char is not None:
        rec = rec.at(token_of_char)
    feats = scan(text, syntax).as_dict()
    ranking = {name: rank_units(rec, f, top, kinds) if varies(f) else [] for name, f in feats.items()}
    return CellReport(text, rec, feats, ranking, syntax)
