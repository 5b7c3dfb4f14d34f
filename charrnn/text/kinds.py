"""What the three kinds of vocabulary share: their names, the unknown-text policy, the id type.

A model reads token ids. What a token is depends on the vocabulary's kind:

    char   one Unicode code point                            vocab.py      (the default)
    word   a word, number, punctuation mark or whitespace    wordvocab.py  (characters as fallback)
    byte   one byte of the text's UTF-8 encoding (256)        bytevocab.py

Every vocabulary offers the same interface (`Tokens` below), so the rest of the package never
asks which kind it holds. `pieces` is what each id adds to the "surface" text beam search builds
(the text itself except for bytes); `char_counts` how many characters each id stands for (what
turns bits per token into bits per character); `guard(n)` a constraint on the next token, or None.
`vocab.vocab_class(kind)` is the one place a kind's name is looked up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import ClassVar

import numpy as np

from charrnn.util.errors import CharrnnError, UsageError
from charrnn.util.showtext import lone_surrogate, show_chars

KINDS = ("char", "word", "byte")
UNK_POLICIES = ("error", "skip")
DEFAULT_MAX_VOCAB = 10_000  # a word vocabulary's size, its fallback characters included


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise UsageError(f"tokens must be one of {', '.join(KINDS)}, not {kind!r}", "tokens")
    return kind


def texts(files, encoding: str, meter: Callable[[int], None] | None = None) -> Iterator[str]:
    """The decoded text of (path, name) files, chunk by chunk: one text, as if they were concatenated."""
    from charrnn.text.scan import iter_text

    for path, name in files:
        yield from iter_text(path, name, encoding, on_bytes=meter)


def sorted_chars(chars) -> str:
    """`chars` as a vocabulary stores its characters: a string, distinct and in code-point order (ids would
    mean other characters otherwise), each one that UTF-8 can write; or a ValueError saying which is not so."""
    if not isinstance(chars, str):
        raise ValueError("a vocabulary must hold its characters as a string 'chars'")
    if len(set(chars)) != len(chars):
        raise ValueError("the vocabulary repeats characters")
    if any(a >= b for a, b in zip(chars, chars[1:])):
        raise ValueError("the vocabulary is not in code-point order (charrnn always stores it sorted): "
                         "ids would mean other characters")
    at = lone_surrogate(chars)
    if at is not None:  # never in decoded text: it would pass every other check, then fail the first time printed
        raise ValueError(f"the vocabulary holds a lone surrogate U+{ord(chars[at]):04X}, which is not a character")
    return chars


class Tokens:
    """What every kind of vocabulary shares, and the defaults its class may override."""

    kind: ClassVar[str]  # its name in a checkpoint (absent for characters, as in every older file)
    unit: ClassVar[str]  # what its tokens are, for a person: "characters", "word tokens", "bytes"
    format_version: ClassVar[int] = 2  # the checkpoint format that holds it (characters: 1)
    token_is_char: ClassVar[bool] = False  # each token is one character: bits per token are bits per character
    fixed_ids: ClassVar[bool] = False  # its ids are there whatever the text (bytes: all 256), not the text's own

    @classmethod
    def cache_tag(cls, max_vocab: int) -> str:
        """What the token cache's key adds for this kind (how a corpus is cut into its tokens)."""
        return f"\n{cls.kind}"

    @property
    def dtype(self) -> np.dtype:
        """The smallest unsigned integer type that holds every id."""
        n = len(self)
        return np.dtype(np.uint8 if n <= 256 else np.uint16 if n <= 65536 else np.uint32)

    def unknown(self, text: str) -> list[str]:
        """The distinct characters of `text` it cannot encode, in order of appearance."""
        return [c for c in dict.fromkeys(text) if c not in self]

    def encode(self, text: str, unk: str = "error") -> list[int]:
        """Text -> ids. Characters it cannot encode: `unk='error'` raises naming them; `'skip'` drops them."""
        if unk not in UNK_POLICIES:
            raise ValueError(f"unk policy must be one of {UNK_POLICIES}")
        missing = self.unknown(text)
        if missing and unk == "error":
            raise CharrnnError(f"{len(missing)} character(s) not in the model's vocabulary: {show_chars(missing)} "
                               "(remove them, or drop them with unk=skip)", "unk")
        if missing:
            drop = set(missing)
            text = "".join(c for c in text if c not in drop)
        return self.encode_array(text).tolist()

    def chunks(self, chunks: Iterable[str]) -> Iterable[str]:
        """A stream of text re-cut where no token straddles a cut (any cut will do for most kinds)."""
        return chunks

    def write_ids(self, files, encoding: str, out, meter: Callable[[int], None] | None = None) -> tuple[int, int]:
        """Write the ids of every file's text, as one text, to the binary file `out`: (tokens, characters)."""
        tokens = chars = 0
        for text in self.chunks(texts(files, encoding, meter)):
            ids = self.encode_array(text)
            out.write(ids.tobytes())
            tokens, chars = tokens + len(ids), chars + len(text)
        return tokens, chars

    def ids_of(self, other) -> None:
        """Another vocabulary's ids as this one's: None, its text is re-encoded (`Vocab.ids_of` maps characters)."""
        return None

    def extended(self, other) -> tuple["Tokens", list[int]]:
        """This vocabulary grown by what `other` (the vocabulary of a new text, of this kind) has and it lacks, and
        the ids added: what fine-tuning on that text needs (`training.start.init_from_checkpoint`). By default
        nothing is ever new (bytes: every text is made of the same 256)."""
        return self, []

    def count(self, n: int, chars: int) -> str:
        """'1,003,854 word tokens for 3,400,000 characters': a corpus of `n` of its tokens, for a person."""
        return f"{n:,} {self.unit} for {chars:,} characters"

    def ids(self) -> str:
        """What its ids are, in a few words: '8,000 ids: 7,920 tokens + 80 characters'."""
        return f"{len(self):,} ids"

    def describe(self) -> str:
        """The vocabulary in a line, for `checkpoints show`."""
        return f"vocabulary: {len(self):,} {self.unit}"

    def listing(self):
        """The vocabulary as plain data (for --json)."""
        return list(self.pieces)


class TextAsIs(Tokens):
    """What a vocabulary whose pieces spell the text directly (characters, words) shares: the text
    is its own surface, any id may follow any other (a byte vocabulary has neither), and `_index`
    maps each piece to its id."""

    def __len__(self) -> int:
        return len(self.pieces)

    def __contains__(self, ch: str) -> bool:
        """Whether the character `ch` can be encoded."""
        return len(ch) == 1 and ch in self._index

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.pieces[i] for i in ids)

    def decoder(self):
        """A streaming decoder: call it with each id as it comes, get its text."""
        return self.pieces.__getitem__

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
