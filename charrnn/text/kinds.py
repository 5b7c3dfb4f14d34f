"""What the three kinds of vocabulary share: their names, the unknown-text policy, the id type.

A model reads token ids. What a token is depends on the vocabulary's kind:

    char   one Unicode code point                            vocab.py      (the default)
    word   a word, number, punctuation mark or whitespace    wordvocab.py  (characters as fallback)
    byte   one byte of the text's UTF-8 encoding (256)        bytevocab.py

Every vocabulary offers the same interface, so the rest of the package never asks which
kind it holds: `len`, `dtype`, `kind`, `in` (can this character be encoded), `encode`,
`encode_array`, `encode_spans`, `decode`, `decoder()` (a streaming decoder), `pieces` (what
each id adds to the "surface" text beam search builds; the text itself except for bytes),
`surface`/`from_surface`, `char_counts` (how many characters of the text each id stands for:
what turns bits per token into bits per character), `guard(n)` (a constraint on the next
token, or None) and `to_dict`. `Vocab.from_dict` reads any kind back from a checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from charrnn.util.errors import CharrnnError, UsageError
from charrnn.util.showtext import show_chars

KINDS = ("char", "word", "byte")
UNK_POLICIES = ("error", "skip")
DEFAULT_MAX_VOCAB = 10_000  # a word vocabulary's size, its fallback characters included


def id_dtype(size: int) -> np.dtype:
    """The smallest unsigned integer type that holds ids 0 .. size - 1."""
    return np.dtype(np.uint8 if size <= 256 else np.uint16 if size <= 65536 else np.uint32)


def check_unk(unk: str) -> None:
    if unk not in UNK_POLICIES:
        raise ValueError(f"unk policy must be one of {UNK_POLICIES}")


def unknown_error(missing: Iterable[str]) -> CharrnnError:
    """The error for characters no token of the vocabulary can spell."""
    missing = list(missing)
    return CharrnnError(
        f"{len(missing)} character(s) not in the model's vocabulary: {show_chars(missing)} "
        "(remove them, or pass --unk skip to drop them)"
    )


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise UsageError(f"--tokens must be one of {', '.join(KINDS)}, not {kind!r}")
    return kind


class TextAsIs:
    """What a vocabulary whose pieces spell the text directly (characters, words) shares: the text
    is its own surface, and any id may follow any other. (A byte vocabulary has neither.)"""

    def surface(self, text: str) -> str:
        """Text as the string of `pieces` that spells it: the text itself."""
        return text

    def from_surface(self, surface: str) -> str:
        """The text a string of `pieces` spells (the inverse of `surface`)."""
        return surface

    def surface_decoder(self):
        """`from_surface` for a string that arrives in pieces: call it with each piece, get its text."""
        return str

    def guard(self, n: int) -> None:
        """Constraints on the next id of `n` streams: none."""
        return None

    def ids_of(self, other) -> None:
        """Another vocabulary's ids as this one's: None, its text is re-encoded (`Vocab.ids_of` maps characters)."""
        return None
