"""The character vocabulary: Unicode code points <-> integer ids.

The vocabulary is the sorted set of distinct code points in the training text. It is
stored inside every checkpoint as a plain string, so a checkpoint alone can encode a
prime and decode generated ids.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from charrnn.errors import CharrnnError
from charrnn.showtext import show_chars

UNK_POLICIES = ("error", "skip")


@dataclass(frozen=True)
class Vocab:
    """An ordered tuple of characters; a character's id is its index."""

    chars: str
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(set(self.chars)) != len(self.chars):
            raise ValueError("vocabulary characters must be distinct")
        object.__setattr__(self, "_index", {c: i for i, c in enumerate(self.chars)})

    @classmethod
    def from_text(cls, text: str | Iterable[str]) -> "Vocab":
        """Build from a text (or an iterable of text chunks): its distinct code points, sorted."""
        if isinstance(text, str):
            return cls("".join(sorted(set(text))))
        seen: set[str] = set()
        for chunk in text:
            seen.update(chunk)
        return cls("".join(sorted(seen)))

    def __len__(self) -> int:
        return len(self.chars)

    def __contains__(self, ch: str) -> bool:
        return ch in self._index

    @property
    def dtype(self) -> np.dtype:
        """The smallest unsigned integer type that holds every id."""
        return np.dtype(np.uint8 if len(self) <= 256 else np.uint16 if len(self) <= 65536 else np.uint32)

    def unknown(self, text: str) -> list[str]:
        """The distinct characters of `text` that are not in the vocabulary, in order of appearance."""
        return list(dict.fromkeys(c for c in text if c not in self._index))

    def encode(self, text: str, unk: str = "error") -> list[int]:
        """Text -> ids. `unk='error'` raises naming the unknown characters; `'skip'` drops them."""
        if unk not in UNK_POLICIES:
            raise ValueError(f"unk policy must be one of {UNK_POLICIES}")
        missing = self.unknown(text)
        if missing and unk == "error":
            raise CharrnnError(
                f"{len(missing)} character(s) not in the model's vocabulary: {show_chars(missing)} "
                "(remove them, or pass --unk skip to drop them)"
            )
        return [self._index[c] for c in text if c in self._index]

    def id_table(self, size: int = 0, missing: int = 0, dtype=None) -> np.ndarray:
        """The code point -> id lookup table: table[ord(c)] is c's id, other code points hold `missing`.

        Its length is at least `size` (pass max code point + 1 of a text to look all of it up).
        Every fast encoder (this class, the corpus cache, `score`) indexes one of these.
        """
        table = np.full(max(size, max(map(ord, self.chars)) + 1), missing, dtype=dtype or self.dtype)
        table[[ord(c) for c in self.chars]] = np.arange(len(self))
        return table

    def encode_array(self, text: str) -> np.ndarray:
        """Text whose characters are all known -> a numpy id array of `self.dtype`, fast."""
        points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)  # (N,)
        return self.id_table()[points]

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def to_dict(self) -> dict:
        return {"chars": self.chars}

    @classmethod
    def from_dict(cls, d: dict) -> "Vocab":
        return cls(d["chars"])
