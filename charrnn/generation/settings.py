"""Sampling settings: the bounds every way of generating text shares."""

from __future__ import annotations

MAX_SEED = 2**64 - 1  # torch's generators take 64-bit seeds
MAX_LENGTH_PENALTY = 10.0  # beam ranking logprob / len**alpha: beyond +-10, len**alpha overflows or underflows
MAX_TEMP = 100.0  # sampling temperature: at 100 every character is already near-uniform; above, logits/T underflows
