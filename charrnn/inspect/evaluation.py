"""Exact negative log-likelihood of a text under a model, in nats and bits per character.

Bits per character are total bits / characters of text, for every kind of token: the
characters a predicted token stands for are `char_counts[id]` (one for a character; the
token's length for a word; 1 for a byte that starts a character and 0 for a continuation
byte). So a word model, a byte model and a character model of one text are on one scale;
bits per token are reported beside them.

The text is cut into B contiguous streams run in parallel, the state carried through each
from its first character to its last: every character after the first is predicted exactly
once. The only dependence on B is at the B-1 boundaries, where a stream's first prediction
starts from a zero state (streams overlap by one character, so none is lost). With B = 1 the
figure is the true sequential likelihood; with more it differs only by those "cold starts".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from charrnn.model.kernels import make_kernel
from charrnn.model.rnn import CharRNN
from charrnn.runtime.memory import logits_block

LN2 = math.log(2.0)


@dataclass
class EvalResult:
    nll_nats: float  # total negative log-likelihood, nats
    chars: int  # characters of text the predicted tokens stand for
    tokens: int = 0  # tokens predicted

    @property
    def nats_per_char(self) -> float:
        return self.nll_nats / max(self.chars, 1)

    @property
    def bits_per_char(self) -> float:
        return self.nats_per_char / LN2

    @property
    def bits_per_token(self) -> float:
        return self.nll_nats / max(self.tokens, 1) / LN2

    @property
    def perplexity(self) -> float:
        """Per character (for every kind of token, like bits per character)."""
        return math.exp(self.nats_per_char)

    def to_dict(self) -> dict:
        keys = ("bits_per_char", "nats_per_char", "perplexity", "chars", "nll_nats", "bits_per_token", "tokens")
        return {k: getattr(self, k) for k in keys}


def _layout_grid(tokens: np.ndarray, streams: int, shard: tuple[int, int] = (0, 1)):
    """tokens (N,) -> ids (B, per + 1), mask (B, per) of real predictions, and stream lengths (B,).

    The N - 1 predictions are cut into `streams` contiguous streams of `per` (no empty one);
    `shard=(rank, world)` keeps only streams rank, rank + world, ... (B may then be 0).
    """
    targets = len(tokens) - 1
    per = math.ceil(targets / max(1, min(streams, targets)))
    starts = np.arange(math.ceil(targets / per)) * per
    starts = starts[shard[0] :: shard[1]]
    lengths = np.clip(targets - starts, 0, per)
    if len(starts) == 0:
        return np.zeros((0, 1), dtype=np.int64), np.zeros((0, 0), dtype=bool), lengths
    B, per = len(starts), int(lengths.max())
    grid = np.zeros((B, per + 1), dtype=np.int64)  # past a stream's end: padding, masked out of the sum
    mask = np.zeros((B, per), dtype=bool)
    for b, (s, length) in enumerate(zip(starts, lengths)):
        grid[b, : length + 1] = tokens[s : s + length + 1]
        mask[b, :length] = True
    return grid, mask, lengths


def _stream_nll(model: CharRNN, grid: np.ndarray, seq_len: int, device, autocast_dtype=None, progress=None):
    """Yield (t0, nll (B, T)) for consecutive column blocks of `grid`, the state carried from block to block,
    the model in eval mode meanwhile; `progress(done, total)` after each block, in columns.

    Blocks are shortened so that a block's logits (B, T, V) fit `runtime.memory.LOGITS_BUDGET`
    (`logits_block`). The result does not depend on the block length, since the state is carried.
    """
    grid_t, per = torch.from_numpy(grid).to(device), grid.shape[1] - 1
    seq_len = logits_block(model.config.vocab_size, grid.shape[0], seq_len)
    state = model.init_state(grid.shape[0], device)
    was_training = model.training
    model.eval()
    for t0 in range(0, per, seq_len):
        t1 = min(t0 + seq_len, per)
        with torch.autocast(device_type=torch.device(device).type, dtype=autocast_dtype or torch.float32,
                            enabled=autocast_dtype is not None):
            logits, state = model(grid_t[:, t0:t1], state)  # (B, T, V)
        y = grid_t[:, t0 + 1 : t1 + 1]  # (B, T)
        yield t0, F.cross_entropy(logits.float().transpose(1, 2), y, reduction="none")  # (B, T)
        if progress is not None:
            progress(t1, per)
    model.train(was_training)


@torch.no_grad()
def evaluate(model: CharRNN, tokens: np.ndarray, batch_size: int = 64, seq_len: int = 256,
             device: torch.device | str = "cpu", autocast_dtype: torch.dtype | None = None,
             shard: tuple[int, int] = (0, 1), char_counts: np.ndarray | None = None, progress=None) -> EvalResult:
    """Total NLL of `tokens` (N,) under `model`, with the state carried through each stream;
    `progress(done, total)` as it goes (`_stream_nll`).

    `shard=(rank, world)` evaluates only streams rank, rank + world, ... (for distributed
    training: summing the shards' results over ranks gives the whole figure).
    `char_counts` (V,): characters each id stands for (None: one each), see the module doc.
    """
    if len(tokens) < 2:
        return EvalResult(0.0, 0)
    grid, mask, lengths = _layout_grid(tokens, batch_size, shard)
    if len(lengths) == 0:
        return EvalResult(0.0, 0)
    mask_t = torch.from_numpy(mask).to(device)
    total = torch.zeros((), dtype=torch.float64, device=device)
    for t0, nll in _stream_nll(model, grid, seq_len, device, autocast_dtype, progress):
        total += (nll * mask_t[:, t0 : t0 + nll.shape[1]]).sum(dtype=torch.float64)
    predicted = int(lengths.sum())
    chars = predicted if char_counts is None else int(np.asarray(char_counts)[grid[:, 1:]][mask].sum())
    return EvalResult(float(total), chars, predicted)


@torch.no_grad()
def char_nll(model: CharRNN, tokens: np.ndarray, seq_len: int = 256, device: torch.device | str = "cpu",
             progress=None) -> np.ndarray:
    """Per-character NLL in nats, (N - 1,): entry i is -ln p(tokens[i + 1] | tokens[: i + 1]); `progress(done,
    total)` as it goes.

    One stream (B = 1), the state carried through the whole text: the same computation,
    block by block, as `evaluate(..., batch_size=1)`, so the sum equals that total.
    """
    if len(tokens) < 2:
        return np.zeros(0)
    grid, _, _ = _layout_grid(tokens, 1)
    return np.concatenate([nll[0].double().cpu().numpy()
                           for _, nll in _stream_nll(model, grid, seq_len, device, progress=progress)])


# ---- what a kernel costs in quality --------------------------------------------------------------------


@torch.inference_mode()
def kernel_bits_per_char(model: CharRNN, tokens, kernel: str = "fp32", streams: int = 1) -> float:
    """Bits/char of `tokens` (N,) under `model` stepped through `kernel` a character at a time, in
    `streams` streams as `evaluate` lays them out: on the same held-out text, the difference between
    two kernels is what a kernel's storage costs."""
    grid, mask, lengths = _layout_grid(np.asarray(tokens), streams)
    grid_t, mask_t = torch.from_numpy(grid), torch.from_numpy(mask)
    k = make_kernel(model, kernel, grid.shape[0])
    total = torch.zeros((), dtype=torch.float64)
    for t in range(grid.shape[1] - 1):
        logits = k.step(grid_t[:, t])  # (B, V)
        nll = F.cross_entropy(logits, grid_t[:, t + 1], reduction="none")  # (B,)
        total += (nll * mask_t[:, t]).sum(dtype=torch.float64)
    return float(total) / max(int(lengths.sum()), 1) / LN2
