"""What is in a corpus: sizes, its characters, and anything odd, found in one streaming pass.

`text_stats` reads lenient where training is strict: instead of stopping at the first
problem it counts them (invalid bytes, NUL characters, a BOM, CRLF line ends), so that
`charrnn corpus stats` can say what to fix before training refuses the file.
"""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field

import numpy as np

from charrnn.text.corpus import expand_sources, some
from charrnn.util.errors import CharrnnError
from charrnn.util.files import open_source, path_kind, source_label
from charrnn.text.scan import SNIFF, iter_text, normalize_encoding, sniff

MAX_POSITIONS = 10  # invalid-byte offsets listed (all are counted)


@dataclass
class TextStats:
    files: int = 0  # files read
    bytes: int = 0  # bytes read
    characters: int = 0  # code points after decoding (BOM and invalid bytes not counted)
    lines: int = 0  # "\n" characters
    counts: dict[str, int] = field(default_factory=dict)  # character -> occurrences
    bom: list[str] = field(default_factory=list)  # files that start with a byte-order mark
    crlf: int = 0  # "\r\n" line ends
    lone_cr: int = 0  # "\r" not followed by "\n" (old Mac line ends)
    nul: int = 0  # NUL characters
    replacement: int = 0  # U+FFFD: text that was already mis-decoded once
    invalid: int = 0  # undecodable byte sequences (skipped)
    invalid_at: list[tuple[str, int]] = field(default_factory=list)  # (file, byte offset), the first few
    binary: list[str] = field(default_factory=list)  # why a file looks binary, one line each
    outside: list[str] = field(default_factory=list)  # files in folders behind symbolic links out of them (not read)

    @property
    def vocabulary(self) -> int:
        return len(self.counts)

    def commonest(self, k: int = 10, sign: int = -1) -> list[tuple[str, int]]:
        return sorted(self.counts.items(), key=lambda kv: (sign * kv[1], kv[0]))[:k]

    def rarest(self, k: int = 10) -> list[tuple[str, int]]:
        return self.commonest(k, 1)

    def oddities(self) -> list[str]:
        """One readable line per problem found; empty when the text is clean."""
        out = list(self.binary)
        if self.outside:
            out.append(f"{len(self.outside):,} symbolic link(s) out of their folder not read ({some(self.outside)}): "
                       "name a file to read it")
        if self.bom:
            out.append(f"byte-order mark at the start of {some(self.bom)} (dropped when training)")
        if self.crlf:
            out.append(f"{self.crlf:,} CRLF line ends (\\r is learned as a character; convert with dos2unix)")
        if self.lone_cr:
            out.append(f"{self.lone_cr:,} lone CR characters")
        if self.nul:
            out.append(f"{self.nul:,} NUL characters (training refuses them)")
        if self.replacement:
            out.append(f"{self.replacement:,} U+FFFD replacement characters (text mis-decoded before)")
        if self.invalid:
            where = ", ".join(f"{f}@{o:,}" for f, o in self.invalid_at)
            out.append(f"{self.invalid:,} invalid byte sequences at {where}{' ...' if self.invalid > len(self.invalid_at) else ''}")
        return out

    def to_dict(self, k: int = 10) -> dict:
        d = asdict(self)
        d.pop("counts")
        d["invalid_at"] = [{"file": f, "offset": o} for f, o in self.invalid_at]
        d["vocabulary"] = self.vocabulary
        d["commonest"] = dict(self.commonest(k))  # character -> count, commonest first
        d["rarest"] = dict(self.rarest(k))
        d["oddities"] = self.oddities()
        return d


class _Counter:
    """Counts of code points, kept as a numpy array that grows to the largest code point seen."""

    def __init__(self) -> None:
        self.counts = np.zeros(128, dtype=np.int64)

    def add(self, text: str) -> None:
        if text.isascii():
            points = np.frombuffer(text.encode("ascii"), dtype=np.uint8)  # (n,)
        else:
            points = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)  # (n,)
        c = np.bincount(points)
        if len(c) > len(self.counts):
            self.counts = np.pad(self.counts, (0, len(c) - len(self.counts)))
        self.counts[: len(c)] += c

    def to_dict(self) -> dict[str, int]:
        return {chr(i): int(self.counts[i]) for i in np.flatnonzero(self.counts)}


class _Replay:
    """A stream whose first bytes were read to look at them: those bytes, then the rest of it."""

    def __init__(self, head: bytes, rest):
        self.head, self.rest = head, rest

    def read(self, n: int) -> bytes:
        if self.head:
            head, self.head = self.head, b""
            return head
        return self.rest.read(n)


def _count_source(f, name: str, encoding: str, stats: TextStats, counter: _Counter, endless: bool = False) -> None:
    """Add one source (`f`, a buffered binary stream) to `stats` and `counter`: its first bytes looked
    at, then its text counted. A binary file is reported, not refused; but a source that may never end
    (`endless`: standard input, a pipe, a device such as /dev/zero or /dev/urandom) is refused at its
    first bytes when they are not text, as every other command refuses it, instead of read forever."""
    head = f.read(SNIFF) if endless else f.peek(SNIFF)  # (a pipe's peek may hold a single byte)
    try:
        sniff(head, name, encoding)
    except CharrnnError as e:
        if endless:
            raise
        stats.binary.append(str(e).split(":")[0])
    if endless:
        f = _Replay(head, f)
    if head.startswith(b"\xef\xbb\xbf") and encoding == "utf-8":
        stats.bom.append(name)
    bad: list[int] = []
    previous = ""
    for text in iter_text(f, name, encoding, bad=bad, on_bytes=lambda n: setattr(stats, "bytes", stats.bytes + n)):
        counter.add(text)
        stats.characters += len(text)
        stats.crlf += text.count("\r\n") + (previous == "\r" and text[0] == "\n")
        previous = text[-1]
    stats.invalid += len(bad)
    stats.invalid_at += [(name, o) for o in bad[: MAX_POSITIONS - len(stats.invalid_at)]]
    stats.files += 1


def text_stats(sources: list[str], globs: list[str] | None = None, encoding: str = "utf-8") -> TextStats:
    """Stream every source once ('-' = stdin) and gather `TextStats`."""
    encoding = normalize_encoding(encoding)
    stats, counter = TextStats(), _Counter()
    found = expand_sources(sources, globs)
    stats.outside = found.outside
    for src in found.files:  # binary files too: stats reports them
        name = source_label(src)
        try:
            with open_source(src) as f:
                _count_source(f if hasattr(f, "peek") else io.BufferedReader(f), name, encoding, stats, counter,
                              src == "-" or path_kind(src) == "stream")
        except OSError as e:
            raise CharrnnError(f"cannot read {src}: {e.strerror}") from None
    stats.counts = counter.to_dict()
    stats.lines = stats.counts.get("\n", 0)
    stats.lone_cr = stats.counts.get("\r", 0) - stats.crlf
    stats.nul = stats.counts.get("\x00", 0)
    stats.replacement = stats.counts.get("\ufffd", 0)
    return stats


