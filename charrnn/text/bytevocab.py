"""The byte vocabulary: the 256 values of a byte, reading the text as UTF-8.

Any text is a sequence of bytes, so a byte model has 256 ids whatever the corpus: a
corpus with thousands of distinct characters (CJK, emoji, a big code dump) gets no bigger
an output layer. One character is 1 to 4 bytes:

    U+0000 .. U+007F     0xxxxxxx                              (ASCII: one byte, one character)
    U+0080 .. U+07FF     110xxxxx 10xxxxxx
    U+0800 .. U+FFFF     1110xxxx 10xxxxxx 10xxxxxx             (no surrogates D800 .. DFFF)
    U+10000 .. U+10FFFF  11110xxx 10xxxxxx 10xxxxxx 10xxxxxx

Every character has exactly one byte that is not a continuation byte (10xxxxxx), so
counting those counts characters: `char_counts` is 1 for every other byte and 0 for
continuation bytes, which turns a total in bits into bits per character.

A model can write any byte, and most byte sequences are not UTF-8. `Utf8Guard` keeps each
stream's place in the current character and allows only the bytes that continue it validly
(RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF); sampling and beam search
mask every other byte, so what they write always decodes, and a character still incomplete
when generation stops is held back, never printed.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from charrnn.text.kinds import Tokens

# ---- the UTF-8 automaton --------------------------------------------------------------------------
# States: 0 between characters; 1, 2, 3 expecting that many more bytes 80..BF; 4 after E0 (next
# A0..BF), 5 after ED (next 80..9F: no surrogates), 6 after F0 (next 90..BF), 7 after F4 (next 80..8F).


def _transitions() -> np.ndarray:
    """(8, 256) next state after each byte in each state; -1 where the byte is not allowed."""
    t = np.full((8, 256), -1, dtype=np.int8)
    t[0, 0x00:0x80] = 0
    t[0, 0xC2:0xE0] = 1
    t[0, 0xE0] = 4
    t[0, 0xE1:0xF0] = 2
    t[0, 0xED] = 5
    t[0, 0xF0] = 6
    t[0, 0xF1:0xF4] = 3
    t[0, 0xF4] = 7
    t[1, 0x80:0xC0] = 0
    t[2, 0x80:0xC0] = 1
    t[3, 0x80:0xC0] = 2
    t[4, 0xA0:0xC0] = 1
    t[5, 0x80:0xA0] = 1
    t[6, 0x90:0xC0] = 2
    t[7, 0x80:0x90] = 2
    return t


NEXT = _transitions()
ALLOWED = NEXT >= 0  # (8, 256)


class Utf8Guard:
    """Where each of `n` streams is inside a UTF-8 character, and which bytes may come next."""

    def __init__(self, n: int):
        self.state = np.zeros(n, dtype=np.int8)  # (n,) every stream starts between characters

    def allowed(self) -> np.ndarray:
        """(n, 256) True where the byte may come next."""
        return ALLOWED[self.state]

    def advance(self, ids: Iterable[int]) -> None:
        """Move every stream past its next byte (which `allowed` must have allowed)."""
        nxt = NEXT[self.state, np.asarray(list(ids), dtype=np.int64)]
        if (nxt < 0).any():
            raise ValueError("a byte that cannot continue valid UTF-8 was chosen")
        self.state = nxt

    def reorder(self, index: Iterable[int]) -> None:
        """Keep streams `index` (beam search: the beams each new beam extends)."""
        self.state = self.state[np.asarray(list(index), dtype=np.int64)]


_LATIN1 = "".join(map(chr, range(256)))  # byte b as the character chr(b): a string of pieces


def utf8_lengths(text: str) -> np.ndarray:
    """(N,) bytes each character of `text` takes in UTF-8."""
    points = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    return 1 + (points >= 0x80) + (points >= 0x800) + (points >= 0x10000)


@dataclass(frozen=True)
class ByteVocab(Tokens):
    """The 256 byte values; a byte's id is its value. It holds nothing, so all are equal."""

    kind: ClassVar[str] = "byte"
    unit: ClassVar[str] = "bytes"
    fixed_ids: ClassVar[bool] = True
    chars: ClassVar[str] = ""  # no characters of its own: it spells every one with bytes

    def __len__(self) -> int:
        return 256

    def __contains__(self, ch: str) -> bool:
        return len(ch) == 1 and not 0xD800 <= ord(ch) < 0xE000  # any character but a lone surrogate

    @property
    def pieces(self) -> str:
        """Byte b as the character chr(b): beam search builds its texts from these (`from_surface` reads them)."""
        return _LATIN1

    @property
    def char_counts(self) -> np.ndarray:
        """(256,) 1 for a byte that starts a character, 0 for a continuation byte (10xxxxxx)."""
        counts = np.ones(256, dtype=np.int64)
        counts[0x80:0xC0] = 0
        return counts

    def encode_array(self, text: str) -> np.ndarray:
        return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)

    def encode_spans(self, text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
        """Text -> (bytes (K,), starts (K,), ends (K,), {}): every byte spans the character it belongs to."""
        lengths = utf8_lengths(text)  # (N,)
        starts = np.repeat(np.arange(len(text)), lengths)  # (K,)
        ids = np.frombuffer(text.encode("utf-8", "surrogatepass"), dtype=np.uint8)
        missing = self.unknown(text)
        if missing:  # drop the surrogates' bytes and count them
            keep = np.repeat([c not in missing for c in text], lengths)
            ids, starts = ids[keep], starts[keep]
        oov = {c: text.count(c) for c in missing}
        return ids, starts, starts + 1, oov

    def decode(self, ids: Iterable[int]) -> str:
        """Bytes -> text; an incomplete character at the end is left out (invalid bytes would show as U+FFFD)."""
        return codecs.getincrementaldecoder("utf-8")("replace").decode(bytes(list(ids)))

    def decoder(self):
        """A streaming decoder: each byte gives the character it completes, or '' until one is complete."""
        dec = codecs.getincrementaldecoder("utf-8")("replace")
        return lambda i: dec.decode(bytes((i,)))

    def surface(self, text: str) -> str:
        """Text as a string of pieces: its UTF-8 bytes, each as chr(byte)."""
        return text.encode("utf-8").decode("latin-1")

    def from_surface(self, surface: str) -> str:
        """The text a string of byte pieces spells, an incomplete last character left out."""
        return self.decode(surface.encode("latin-1"))

    def surface_decoder(self):
        """`from_surface` for a string of byte pieces arriving piece by piece (incomplete characters held back)."""
        dec = codecs.getincrementaldecoder("utf-8")("replace")
        return lambda surface: dec.decode(surface.encode("latin-1"))

    def guard(self, n: int) -> Utf8Guard:
        return Utf8Guard(n)

    @classmethod
    def from_files(cls, chars: str, files, encoding: str, max_vocab: int = 0, meter=None) -> "ByteVocab":
        return cls()

    @classmethod
    def from_text(cls, text: str, max_vocab: int = 0) -> "ByteVocab":
        return cls()

    def ids(self) -> str:
        return "256 byte ids"

    def describe(self) -> str:
        return "vocabulary: the 256 byte values (the text as UTF-8)"

    def listing(self) -> str:
        return "UTF-8 bytes"

    def to_dict(self) -> dict:
        return {"kind": "byte"}

    @classmethod
    def from_dict(cls, d: dict) -> "ByteVocab":
        return cls()
