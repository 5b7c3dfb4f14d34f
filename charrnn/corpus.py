"""Reading training text and laying it out for truncated back-propagation through time.

Sources are files, folders (with glob patterns) or `-` for standard input. Text is
decoded strictly (UTF-8 by default); anything that is not text gets a clear error.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from charrnn.errors import CharrnnError, UsageError

BOM = "\ufeff"


def decode_bytes(data: bytes, name: str, encoding: str = "utf-8") -> str:
    """Bytes -> text, or a CharrnnError saying why this is not text and what to do."""
    if encoding.lower().replace("_", "-") in ("utf-8", "utf8") and b"\x00" in data[:65536]:
        if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
            raise CharrnnError(f"{name} looks like UTF-16 text: convert it to UTF-8 or pass --encoding utf-16")
        raise CharrnnError(f"{name} contains NUL bytes and looks binary, not text: pass a text file")
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        raise CharrnnError(
            f"{name} is not valid {encoding} (bad byte 0x{data[e.start]:02x} at offset {e.start}): "
            f"convert it to UTF-8, or pass --encoding (e.g. latin-1)"
        ) from None
    except LookupError:
        raise UsageError(f"unknown encoding {encoding!r}") from None
    if text.startswith(BOM):
        text = text[1:]
    if "\x00" in text:
        raise CharrnnError(f"{name} contains NUL characters and looks binary, not text: pass a text file")
    return text


def expand_sources(sources: list[str], globs: list[str] | None = None) -> list[str]:
    """Files, folders (searched with `globs`, sorted) and '-' -> a list of files and '-'."""
    out: list[str] = []
    for src in sources:
        if src == "-":
            out.append(src)
            continue
        p = Path(src)
        if p.is_dir():
            patterns = globs or ["**/*"]
            found = sorted({f for g in patterns for f in p.glob(g) if f.is_file()})
            if not found:
                raise CharrnnError(f"no files in folder {src} match {' '.join(patterns)}: pass --glob '*.txt'")
            out.extend(str(f) for f in found)
        elif p.is_file():
            out.append(src)
        else:
            raise CharrnnError(f"no such file or folder: {src}")
    if not out:
        raise UsageError("no corpus given: pass a file, a folder, or - for stdin")
    return out


def read_text(sources: list[str], globs: list[str] | None = None, encoding: str = "utf-8") -> str:
    """Read and concatenate every source as text (a folder contributes its matching files, sorted)."""
    parts = []
    for src in expand_sources(sources, globs):
        if src == "-":
            parts.append(decode_bytes(sys.stdin.buffer.read(), "standard input", encoding))
        else:
            try:
                data = Path(src).read_bytes()
            except OSError as e:
                raise CharrnnError(f"cannot read {src}: {e.strerror}") from None
            parts.append(decode_bytes(data, src, encoding))
    text = "".join(parts)
    if not text:
        raise CharrnnError("the corpus is empty: give it some text to learn from")
    if not text.strip():
        raise CharrnnError("the corpus holds only whitespace: give it some text to learn from")
    return text


def split_train_val(tokens: np.ndarray, val_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """The last `val_fraction` of the corpus is held out for validation (as nanoGPT does)."""
    if not 0.0 <= val_fraction < 1.0:
        raise UsageError("--val-fraction must be in [0, 1)")
    n_val = int(len(tokens) * val_fraction)
    return tokens[: len(tokens) - n_val], tokens[len(tokens) - n_val :]


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

    def __post_init__(self) -> None:
        self.stream_len = len(self.tokens) // self.batch_size
        if self.stream_len < self.seq_len + 1:
            need = self.batch_size * (self.seq_len + 1)
            raise CharrnnError(
                f"the training text has {len(self.tokens):,} characters, too short for "
                f"--batch-size {self.batch_size} x --seq-len {self.seq_len} (needs at least {need:,}): "
                f"lower --batch-size or --seq-len, or give more text"
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
        self.cursor += self.seq_len
        block = torch.from_numpy(block)  # (B, T+1)
        return block[:, :-1], block[:, 1:], wrapped
