"""Reading text files of any size as a stream of decoded chunks, with errors a user can act on.

A file is read a megabyte at a time and decoded incrementally: a character cut in two by a
chunk boundary is completed from the next chunk, and an invalid byte is reported with its
exact byte offset in the file (and its line, for 8-bit encodings). Before decoding, the first
bytes are sniffed: a PNG, a gzip file or UTF-16 text read as UTF-8 would otherwise fail with a
confusing decode error.
"""

from __future__ import annotations

import codecs
from collections.abc import Iterable, Iterator
from contextlib import nullcontext
from typing import BinaryIO
from pathlib import Path

from charrnn.util.errors import CharrnnError, UsageError
from charrnn.util.files import BOM, CHUNK
from charrnn.util.showtext import lone_surrogate

SNIFF = 8000  # bytes looked at to tell binary from text (as git does)


# Leading bytes of common binary formats -> what to call the file, and what to do.
MAGIC = {
    b"\x89PNG\r\n\x1a\n": ("a PNG image", "pass a text file"),
    b"\x7fELF": ("an ELF executable", "pass a text file"),
    b"\x1f\x8b": ("gzip-compressed", "decompress it first, e.g. zcat {name} | charrnn train -"),
    b"PK\x03\x04": ("a zip archive", "unzip it and pass the text files (a folder works, with --glob)"),
    b"%PDF-": ("a PDF document", "extract its text first (e.g. pdftotext)"),
    b"\xff\xd8\xff": ("a JPEG image", "pass a text file"),
    b"GIF8": ("a GIF image", "pass a text file"),
}


def normalize_encoding(encoding: str) -> str:
    """'UTF8', 'latin1' ... -> Python's canonical codec name, or a UsageError. Only text encodings: Python
    also registers codecs such as hex, zlib or rot13 (`_is_text_encoding = False`), which would fail deep
    inside decoding."""
    try:
        info = codecs.lookup(encoding)
    except LookupError:
        raise UsageError(f"unknown encoding {encoding!r}: pass a codec name such as utf-8, latin-1 or utf-16") from None
    if not getattr(info, "_is_text_encoding", True):
        raise UsageError(f"{encoding!r} is not a text encoding (it does not turn bytes into text): "
                         f"pass a codec name such as utf-8, latin-1 or utf-16")
    return info.name


def is_byte_oriented(encoding: str) -> bool:
    """True for encodings where a NUL byte is a NUL character and b'\\n' is a line end (not UTF-16/32)."""
    return not normalize_encoding(encoding).startswith(("utf-16", "utf-32"))


def not_text(head: bytes, name: str, encoding: str) -> str | None:
    """Why a file whose first bytes are `head` is not text in `encoding`, and what to do; None if it may be."""
    for magic, (what, todo) in MAGIC.items():
        if head.startswith(magic):
            return f"{name} is {what}, not text: {todo.format(name=name)}"
    if not is_byte_oriented(encoding):
        return None
    head = head[:SNIFF]
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return (f"{name} looks like UTF-16 text (it starts with a UTF-16 byte-order mark): "
                f"pass --encoding utf-16, or convert it to UTF-8")
    nul = head.find(b"\x00")
    if nul < 0:
        return None
    even, odd = head[0::2], head[1::2]
    for zeros, other, order in ((odd, even, "le"), (even, odd, "be")):
        if len(head) >= 4 and zeros.count(0) >= 0.9 * len(zeros) and other.count(0) == 0:
            return (f"{name} looks like UTF-16 text without a byte-order mark: "
                    f"pass --encoding utf-16-{order}, or convert it to UTF-8")
    return (f"{name} has NUL bytes (the first at byte offset {nul}) and looks binary, not text: "
            f"pass a text file, or strip them with tr -d '\\000'")


def sniff(head: bytes, name: str, encoding: str) -> None:
    """Refuse a file whose first bytes show it is not text in `encoding`, saying what it is instead."""
    reason = not_text(head, name, encoding)
    if reason:
        raise CharrnnError(reason)


def sniffed(chunks: Iterable[bytes], name: str, encoding: str) -> Iterator[bytes]:
    """`chunks` of a stream, passed on once its first SNIFF bytes are seen to be text (`sniff`): a stream that
    is not is refused before the rest is read (it may never end)."""
    head, it = b"", iter(chunks)
    for chunk in it:
        head += chunk
        if len(head) >= SNIFF:
            break
    sniff(head, name, encoding)
    if head:
        yield head
    yield from it


def looks_binary(path: str | Path, encoding: str = "utf-8") -> bool:
    """True when the first bytes of a file show it is not text in `encoding` (`not_text`)."""
    try:
        with open(path, "rb") as f:
            head = f.read(SNIFF)
    except OSError as e:
        raise CharrnnError(f"cannot read {path}: {e.strerror}") from None
    return not_text(head, str(path), encoding) is not None


def _label(encoding: str) -> str:
    return encoding.upper() if encoding.startswith("utf") else encoding


def _bad_bytes_message(name: str, encoding: str, offset: int, line: int | None, bad: bytes, at_end: bool) -> str:
    where = f"byte offset {offset:,}" + (f", line {line:,}" if line is not None else "")
    shown = " ".join(f"0x{b:02x}" for b in bad[:4])
    label = _label(encoding)
    if at_end:
        return (f"{name} ends in the middle of a {label} character ({shown} at {where}): the file looks "
                f"cut short; copy it again, or remove the incomplete last bytes")
    hint = "if it is Latin-1 text pass --encoding latin-1, or convert it to UTF-8" if encoding == "utf-8" \
        else "check --encoding, or convert the file to UTF-8"
    return f"{name} is not valid {label}: {shown} at {where} does not decode; {hint}"


def _check_no_surrogates(text: str, name: str, encoding: str, before: int) -> None:
    """Refuse decoded text holding a lone surrogate, which is not a character (unicode_escape and utf-7 can
    decode to one). `before`: characters of the file before `text` (for the position in the message)."""
    at = lone_surrogate(text)
    if at is not None:
        raise CharrnnError(f"{name} is not valid {_label(encoding)}: it decodes to U+{ord(text[at]):04X} "
                           f"(character {before + at:,}), a lone surrogate that is not a character; "
                           f"check the encoding, or convert the file to UTF-8", "encoding")


def iter_text(path: str | Path | BinaryIO, name: str | None = None, encoding: str = "utf-8",
              bad: list[int] | None = None, on_bytes=None) -> Iterator[str]:
    """Yield the text of a file (or an open binary stream) in decoded chunks, a leading BOM dropped.

    Strict by default: the first undecodable byte raises a CharrnnError naming its offset. With a list
    as `bad` the byte offset of every undecodable sequence is appended to it and the bytes are skipped
    (`corpus stats`). `on_bytes(n)` is called with the number of bytes read after each chunk.
    """
    name = name or str(path)
    encoding = normalize_encoding(encoding)
    count_lines = is_byte_oriented(encoding)
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    offset, lines, chars, started = 0, 0, 0, False  # bytes read, b"\n" read, characters yielded, text yielded
    try:
        opened = nullcontext(path) if hasattr(path, "read") else open(path, "rb")
    except OSError as e:
        raise CharrnnError(f"cannot read {name}: {e.strerror}") from None
    with opened as f:
        while True:
            chunk = f.read(CHUNK)
            final = not chunk
            if offset == 0 and bad is None:
                sniff(chunk, name, encoding)
            raw, base, parts = chunk, offset, []  # base: the byte offset of raw[0]
            while True:
                pending, flag = decoder.getstate()
                try:
                    parts.append(decoder.decode(raw, final))
                    break
                except UnicodeDecodeError as e:
                    data = pending + raw  # e.start and e.end index into this
                    at = base - len(pending) + e.start
                    if bad is None:
                        line = lines + data[: e.start].count(b"\n") + 1 if count_lines else None
                        raise CharrnnError(_bad_bytes_message(name, encoding, at, line, data[e.start : e.end], final)) from None
                    bad.append(at)
                    decoder.setstate((b"", flag))
                    parts.append(decoder.decode(data[: e.start]))  # everything before the bad bytes is valid
                    raw, base = data[e.end :], at + (e.end - e.start)
                except UnicodeError as e:  # a codec that cannot say where (punycode, a UTF-16 stream with no BOM)
                    raise CharrnnError(f"{name} is not valid {_label(encoding)}: {e}; "
                                       f"check the encoding, or convert the file to UTF-8", "encoding") from None
            text = "".join(parts)
            _check_no_surrogates(text, name, encoding, chars)
            if not started and text:
                started = True
                if encoding == "utf-8" and text.startswith(BOM):
                    text = text[1:]  # (the utf-16 and utf-32 decoders drop their BOM themselves)
            offset += len(chunk)
            if count_lines:
                lines += chunk.count(b"\n")
            if on_bytes and chunk:
                on_bytes(len(chunk))
            if text:
                chars += len(text)
                yield text
            if final:
                return
