"""The word vocabulary: words, numbers, punctuation and whitespace as tokens, characters as fallback.

    "ROMEO:\\n  But soft, what light"  ->  "ROMEO" ":" "\\n  " "But" " soft" "," " what" " light"

`split_words` cuts text with one regular expression into runs of letters (with inner
apostrophes: "don't"), runs of digits, single punctuation marks or symbols, and runs of
whitespace; "".join(split_words(x)) == x for any text. A single space before a word, number or
mark belongs to it (" soft"), as in GPT-2's pre-tokenizer: on Tiny Shakespeare that makes 37%
fewer tokens than giving every space a token of its own, so the model takes fewer steps per character.

The vocabulary holds every distinct character of the corpus (ids 0 .. C-1, sorted) and the
most frequent multi-character tokens seen at least twice (ids C.., most frequent first), up to
`max_vocab` ids in all. A token that did not make the list is *spelled out* by its characters,
not mapped to an unknown token: decode(encode(x)) == x for every text made of the corpus's
characters, a rare name in a prime is read as written, and a model can write words it has no
token for. The price: a word has more than one spelling ("the" or "t" "h" "e"); encoding picks
the one training used, so the probability reported for a text is a lower bound.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from charrnn.text.kinds import DEFAULT_MAX_VOCAB, TextAsIs, sorted_chars, texts

# letters with inner apostrophes | digits | one mark | underscore | a whitespace run; an optional
# leading space on the first four. The last `.` is never reached (the others cover every character).
WORD_RE = re.compile(r" ?[^\W\d_]+(?:'[^\W\d_]+)*| ?\d+| ?[^\w\s]| ?_|\s+|.", re.S)
MIN_COUNT = 2  # a token seen once is spelled out: the model could not learn it from one example
PRUNE_AT = 5_000_000  # distinct tokens counted before the rarest are forgotten (bounded memory)


def split_words(text: str) -> list[str]:
    """Text -> its tokens, in order; they join back to exactly the text."""
    return WORD_RE.findall(text)


def _last_cut(text: str) -> int:
    """The start of the last whitespace run that follows a non-space character (0 if none).

    No token crosses such a position: only a whitespace run or a " word" can hold whitespace,
    and both start with it. So text[:cut] tokenizes alone exactly as inside the whole text.
    """
    i = max(text.rfind(" "), text.rfind("\n"))
    while i > 0 and text[i - 1].isspace():
        i -= 1
    return max(i, 0)


def token_chunks(chunks: Iterable[str]) -> Iterator[str]:
    """Re-cut a stream of text chunks where no token straddles a cut (see `_last_cut`)."""
    carry = ""
    for chunk in chunks:
        text = carry + chunk
        cut = _last_cut(text)
        if cut:
            yield text[:cut]
        carry = text[cut:]
    if carry:
        yield carry


def count_tokens(chunks: Iterable[str]) -> Counter:
    """How often each token occurs in a stream of text chunks (memory stays bounded on huge corpora:
    past PRUNE_AT distinct tokens the ones seen once are dropped, which only the rarest feel)."""
    counts: Counter = Counter()
    for text in token_chunks(chunks):
        counts.update(WORD_RE.findall(text))
        if len(counts) > PRUNE_AT:
            counts = Counter({t: n for t, n in counts.items() if n > 1})
    return counts


@dataclass(frozen=True)
class WordVocab(TextAsIs):
    """Characters (ids 0 .. C-1) and multi-character tokens (ids C ..); see the module doc."""

    chars: str  # every character it can spell, sorted
    words: tuple[str, ...]  # the multi-character tokens, most frequent first
    kind: ClassVar[str] = "word"
    unit: ClassVar[str] = "word tokens"
    _index: dict[str, int] = field(init=False, repr=False, compare=False)
    _pieces: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _counts: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        pieces = (*self.chars, *self.words)
        if len(set(pieces)) != len(pieces) or any(len(w) < 2 for w in self.words):
            raise ValueError("a word vocabulary holds distinct characters and distinct multi-character tokens")
        known = set(self.chars)
        if any(c not in known for w in self.words for c in w):
            raise ValueError("every character of a token must be in the vocabulary's characters")
        object.__setattr__(self, "_index", {p: i for i, p in enumerate(pieces)})
        object.__setattr__(self, "_pieces", pieces)
        object.__setattr__(self, "_counts", np.array([len(p) for p in pieces], dtype=np.int64))

    @classmethod
    def build(cls, chars: Iterable[str], counts: Mapping[str, int], max_vocab: int = DEFAULT_MAX_VOCAB) -> "WordVocab":
        """Every character, then the most frequent tokens (seen at least MIN_COUNT times) up to `max_vocab` ids."""
        chars = "".join(sorted(set(chars)))
        ranked = sorted((t for t, n in counts.items() if len(t) > 1 and n >= MIN_COUNT), key=lambda t: (-counts[t], t))
        return cls(chars, tuple(ranked[: max(0, max_vocab - len(chars))]))

    @classmethod
    def from_text(cls, text: str, max_vocab: int = DEFAULT_MAX_VOCAB) -> "WordVocab":
        return cls.build(text, Counter(split_words(text)), max_vocab)

    @classmethod
    def from_files(cls, chars: str, files, encoding: str, max_vocab: int = DEFAULT_MAX_VOCAB,
                   meter=None) -> "WordVocab":
        """The vocabulary of a corpus whose distinct characters are `chars`: its tokens counted in one more pass."""
        return cls.build(chars, count_tokens(texts(files, encoding, meter)), max_vocab)

    @classmethod
    def cache_tag(cls, max_vocab: int) -> str:
        return f"\nword {max_vocab}"

    def chunks(self, chunks: Iterable[str]) -> Iterator[str]:
        return token_chunks(chunks)  # a word may run on from one file into the next

    def ids(self) -> str:
        return f"{len(self):,} ids: {len(self.words):,} tokens + {len(self.chars)} characters"

    def describe(self) -> str:
        return (f"vocabulary ({len(self):,} word tokens: {len(self.words):,} multi-character tokens, most frequent "
                f"first, and {len(self.chars)} characters to spell the rest): {list(self.words[:30])!r} ...")

    @property
    def pieces(self) -> tuple[str, ...]:
        """The text each id stands for."""
        return self._pieces

    @property
    def char_counts(self) -> np.ndarray:
        """(V,) characters of text each id stands for."""
        return self._counts

    def _ids(self, text: str) -> Iterator[tuple[int, int, int]]:
        """(id, start, end) of every token of a text whose characters are all known."""
        index = self._index
        for m in WORD_RE.finditer(text):
            i = index.get(m.group())
            if i is not None:
                yield i, m.start(), m.end()
            else:  # not in the vocabulary: spelled out
                for j, c in enumerate(m.group(), m.start()):
                    yield index[c], j, j + 1

    def encode_array(self, text: str) -> np.ndarray:
        """Text whose characters are all known -> a numpy id array of `self.dtype`."""
        return np.fromiter((i for i, _, _ in self._ids(text)), dtype=self.dtype)

    def encode_spans(self, text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, int]]:
        """Text -> (ids (K,), starts (K,), ends (K,), unknown characters with counts).

        Unknown characters are removed before the text is cut into tokens (the model reads the
        text as if they were not there); a token's span may then enclose one.
        """
        missing = set(self.unknown(text))
        oov: dict[str, int] = {}
        keep = None
        if missing:
            oov = dict(Counter(c for c in text if c in missing).most_common())
            keep = np.array([i for i, c in enumerate(text) if c not in missing], dtype=np.int64)
            text = "".join(text[i] for i in keep)
        rows = np.array(list(self._ids(text)), dtype=np.int64).reshape(-1, 3)  # (K, 3)
        ids, starts, ends = rows[:, 0].astype(self.dtype), rows[:, 1], rows[:, 2]
        if keep is not None and len(rows):
            starts, ends = keep[starts], keep[ends - 1] + 1
        return ids, starts, ends, oov

    def extended(self, other) -> tuple["WordVocab", list[int]]:
        """This vocabulary with what `other` (a new text's vocabulary) has and it lacks, and their ids: its new
        characters (sorted among the old ones, whose ids may move: map them by `pieces`) and its new
        multi-character tokens, most frequent first after the old ones. Those are the tokens a vocabulary of the
        new text alone would hold (seen at least MIN_COUNT times, up to its max_vocab), so the vocabulary may
        grow past the checkpoint's max_vocab: a token the text uses often is better learned than spelled."""
        chars = set(other.chars) - set(self.chars)
        words = [w for w in getattr(other, "words", ()) if w not in self._index]
        if not chars and not words:
            return self, []
        grown = WordVocab("".join(sorted({*self.chars, *chars})), (*self.words, *words))
        return grown, sorted(grown._index[p] for p in (*chars, *words))

    def to_dict(self) -> dict:
        return {"kind": "word", "chars": self.chars, "words": list(self.words)}

    @classmethod
    def from_dict(cls, d: dict) -> "WordVocab":
        words = d.get("words")
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise ValueError("a word vocabulary must hold a list of strings 'words'")
        return cls(sorted_chars(d.get("chars")), tuple(words))
