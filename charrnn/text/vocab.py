"""The character vocabulary: Unicode code points <-> integer ids.

The vocabulary is the sorted set of distinct code points in the training text. It is
stored inside every checkpoint as a plain string, so a checkpoint alone can encode a
prime and decode generated ids.

It is one of three kinds (`kinds.py`). This module is also where a kind's name becomes a class
(`vocab_class`): `Vocab.from_dict` reads any kind back from a checkpoint (a dict without a
"kind" is a character vocabulary), so every command follows the kind a model was trained with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from charrnn.text.bytevocab import ByteVocab
from charrnn.text.kinds import TextAsIs, sorted_chars, texts
from charrnn.text.wordvocab import WordVocab
from charrnn.util.fields import short


@dataclass(frozen=True)
class Vocab(TextAsIs):
    """An ordered tuple of characters; a character's id is its index."""

    chars: str
    kind: ClassVar[str] = "char"
    unit: ClassVar[str] = "characters"
    format_version: ClassVar[int] = 1
    token_is_char: ClassVar[bool] = True
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(set(self.chars)) != len(self.chars):
            raise ValueError("the vocabulary repeats characters")
        object.__setattr__(self, "_index", {c: i for i, c in enumerate(self.chars)})

    @classmethod
    def cache_tag(cls, max_vocab: int) -> str:
        return ""  # the cache keys of character corpora are as they always were

    @classmethod
    def from_files(cls, chars: str, files, encoding: str, max_vocab: int = 0, meter=None) -> "Vocab":
        """The vocabulary of a corpus whose distinct characters are `chars` (the token cache's first pass)."""
        return cls(chars)

    @classmethod
    def from_text(cls, text: str, max_vocab: int = 0) -> "Vocab":
        """Build from a text: its distinct code points, sorted."""
        return cls("".join(sorted(set(text))))

    @property
    def pieces(self) -> str:
        """The text each id stands for (`pieces[i]`): one character each."""
        return self.chars

    @property
    def char_counts(self) -> np.ndarray:
        """(V,) characters of text each id stands for: 1 each, so bits per token are bits per character."""
        return np.ones(len(self), dtype=np.int64)

    def id_table(self, size: int = 0, missing: int = 0, dtype=None) -> np.ndarray:
        """The code point -> id lookup table every fast encoder indexes: table[ord(c)] is c's id, other code
        points hold `missing`. Its length is at least `size` (a text's max code point + 1 looks all of it up)."""
        table = np.full(max(size, max(map(ord, self.chars), default=-1) + 1), missing, dtype=dtype or self.dtype)
        table[[ord(c) for c in self.chars]] = np.arange(len(self))
        return table

    def encode_array(self, text: str) -> np.ndarray:
        """Text whose characters are all known -> a numpy id array of `self.dtype`, fast."""
        points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)  # (N,)
        return self.id_table()[points]

    def encode_spans(self, text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
        """Text -> (ids (K,), starts (K,), ends (K,), unknown characters with counts).

        Token k stands for text[starts[k]:ends[k]]; characters outside the vocabulary are
        skipped (no token covers them) and counted. Vectorised: 100 MB encode in about a second.
        """
        points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)  # (N,)
        ids = self.id_table(int(points.max(initial=0)) + 1, missing=-1, dtype=np.int64)[points]  # (N,) -1 where unknown
        known = ids >= 0
        unknown, counts = np.unique(points[~known], return_counts=True)
        oov = dict(sorted(((chr(int(p)), int(k)) for p, k in zip(unknown, counts)), key=lambda kv: -kv[1]))
        starts = np.flatnonzero(known)
        return ids[known].astype(self.dtype), starts, starts + 1, oov

    def ids_of(self, other) -> np.ndarray | None:
        """(len(other),) this vocabulary's id of each of `other`'s ids (-1 where it has none), when both are
        character vocabularies; None otherwise (their texts are then re-encoded)."""
        if not isinstance(other, Vocab):
            return None
        return np.array([self._index.get(c, -1) for c in other.chars], dtype=np.int64)

    def extended(self, other) -> tuple["Vocab", list[int]]:
        """This vocabulary with the characters of `other` it lacks, and their ids. Ids are in code-point order, so
        the old characters' ids may move too (map them by `pieces`)."""
        new = set(other.chars) - set(self.chars)
        if not new:
            return self, []
        grown = Vocab("".join(sorted({*self.chars, *new})))
        return grown, sorted(grown._index[c] for c in new)

    def write_ids(self, files, encoding: str, out, meter=None) -> tuple[int, int]:
        """Write the id of every character of every file to the binary file `out`: (tokens, characters).

        ASCII text with byte-sized ids takes one `bytes.translate` per chunk (one byte in, one id out);
        the rest looks its code points up in `id_table`. A stray "é" does not push a whole megabyte off
        the fast path: chunks that are not ASCII are looked at in 64K blocks.
        """
        lut = self.id_table()  # code point -> id
        table = bytes(int(lut[i]) if i < len(lut) else 0 for i in range(256)) if self.dtype == np.uint8 else None
        n = 0
        for chunk in texts(files, encoding, meter):
            step = len(chunk) if chunk.isascii() else 1 << 16
            for i in range(0, len(chunk), step):
                text = chunk[i : i + step]
                if table is not None and text.isascii():
                    out.write(text.encode("ascii").translate(table))
                else:
                    points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)  # (n,)
                    out.write(lut.take(points).tobytes())
            n += len(chunk)
        return n, n

    def count(self, n: int, chars: int) -> str:
        return f"{n:,} characters"

    def ids(self) -> str:
        return f"{len(self)} distinct"

    def describe(self) -> str:
        return f"vocabulary ({len(self)} characters): {self.chars!r}"

    def listing(self) -> str:
        return self.chars

    def to_dict(self) -> dict:
        return {"chars": self.chars}  # no "kind": exactly what every older charrnn wrote and reads

    @classmethod
    def from_dict(cls, d: dict):
        """A vocabulary of any kind from its `to_dict` (as stored in checkpoints and the token cache), checked:
        ValueError says what is wrong with it."""
        if not isinstance(d, dict):
            raise ValueError(f"a vocabulary is a mapping, not {type(d).__name__}")
        kind = d.get("kind", "char")
        if kind != cls.kind:
            return vocab_class(kind).from_dict(d)
        return cls(sorted_chars(d.get("chars")))


def vocab_class(kind: str) -> type:
    """The vocabulary class of a kind's name: the one place a name becomes a kind."""
    classes = {"char": Vocab, "word": WordVocab, "byte": ByteVocab}
    if kind not in classes:
        raise ValueError(f"unknown vocabulary kind {short(kind)}: one of {', '.join(classes)}")
    return classes[kind]
