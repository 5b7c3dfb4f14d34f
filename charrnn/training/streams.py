"""The corpus as B parallel streams, the layout truncated back-propagation through time needs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from charrnn.util.errors import CharrnnError


def check_ids(tokens: np.ndarray, vocab_size: int, what: str) -> None:
    """Refuse ids beyond the vocabulary (a damaged token file) instead of indexing with them."""
    top = int(np.max(tokens)) if len(tokens) else -1
    if top >= vocab_size:
        raise CharrnnError(f"the {what} token ids hold {top}, beyond the {vocab_size}-id vocabulary: "
                           "the token cache is damaged; delete it ($CHARRNN_CACHE/tokens) and run again")


@dataclass
class StreamBatcher:
    """The corpus as B parallel contiguous streams, read T characters at a time.

    With B = 4 the text "abcdefghijklmnopqrstuvwx" (N = 24) becomes 4 rows of 6:

        ┌ a b c d e f ┐  stream 0
        │ g h i j k l │  stream 1      step 0 reads columns 0..T-1 as input and
        │ m n o p q r │  stream 2      1..T as targets; step 1 starts at column T,
        └ s t u v w x ┘  stream 3      right where step 0 stopped.

    Because row b of one batch continues exactly where row b of the previous batch
    ended, the recurrent state at the end of a batch is the right starting state for
    the next one: training carries it over (detached), never resets it, until the
    epoch wraps around. `cursor` is the column the next batch starts at.
    """

    tokens: np.ndarray  # (N,) ids, possibly a memory map
    batch_size: int  # B
    seq_len: int  # T
    cursor: int = 0
    vocab_size: int | None = None  # ids must be below this (a damaged token file is refused, not indexed)

    def __post_init__(self) -> None:
        self.stream_len = len(self.tokens) // self.batch_size
        if self.stream_len < self.seq_len + 1:
            need = self.batch_size * (self.seq_len + 1)
            raise CharrnnError(
                f"the training text has {len(self.tokens):,} characters, too short for "
                f"batch_size {self.batch_size} x seq_len {self.seq_len} (needs at least {need:,}): "
                f"lower batch_size or seq_len, or give more text", "batch_size", "seq_len"
            )
        self.streams = self.tokens[: self.stream_len * self.batch_size].reshape(self.batch_size, self.stream_len)

    @property
    def steps_per_epoch(self) -> int:
        return (self.stream_len - 1) // self.seq_len

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """(inputs (B, T), targets (B, T), wrapped): wrapped is True when a new epoch begins here."""
        wrapped = False
        if self.cursor + self.seq_len + 1 > self.stream_len:
            self.cursor, wrapped = 0, True
        block = np.asarray(self.streams[:, self.cursor : self.cursor + self.seq_len + 1], dtype=np.int64)
        if self.vocab_size is not None:
            check_ids(block, self.vocab_size, "training")
        self.cursor += self.seq_len
        block = torch.from_numpy(block)  # (B, T+1)
        return block[:, :-1], block[:, 1:], wrapped
