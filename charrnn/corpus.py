"""Reading training text: files, folders, standard input; the train/validation split.

Sources are files, folders (with glob patterns) or `-` for standard input. Text is
decoded strictly (UTF-8 by default); anything that is not text gets a clear error.
The layout for truncated back-propagation through time (B parallel streams) is
`batcher.StreamBatcher`; big corpora go through the token cache in `tokens`.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np

from charrnn.errors import CharrnnError, UsageError
from charrnn.textscan import iter_text




def decode_bytes(data: bytes, name: str, encoding: str = "utf-8") -> str:
    """Bytes -> text, or a CharrnnError saying why this is not text and what to do.

    The same strict decoder as for files on disk (`textscan.iter_text`), so a file gets the
    same verdict and message whether it is read from disk, from stdin or as a prime.
    """
    text = "".join(iter_text(io.BytesIO(data), name, encoding))
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
