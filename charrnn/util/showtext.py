"""Showing text from files to a person: every character visible, nothing executed.

Text from a corpus, a checkpoint or a file name is data: shown on a terminal it must never move
the cursor, set the window title or write the clipboard. `visible` turns such characters into
escapes a reader can see (`\\x1b`); `show_char` names one character for a message. Generated text
on stdout is the product and is written raw; it never passes through here.
"""

from __future__ import annotations

import unicodedata

NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r", " ": "space"}


def show_char(ch: str) -> str:
    """One character as a reader can see it in a message: 'a', \\n, space, U+00A0 ..."""
    if ch in NAMED:
        return NAMED[ch]
    return repr(ch) if ch.isprintable() else f"U+{ord(ch):04X}"


def show_chars(chars, limit: int = 20) -> str:
    """Several characters for a message: 'é' U+00A0 \\n ... (cut after `limit`)."""
    chars = list(chars)
    return " ".join(show_char(c) for c in chars[:limit]) + (" ..." if len(chars) > limit else "")


def counter_text(counts: dict[str, int], limit: int = 8) -> str:
    """'é' x3, U+2014 x1 ... for messages about characters and how often they occur."""
    shown = [f"{show_char(c)} x{k}" for c, k in list(counts.items())[:limit]]
    return ", ".join(shown) + (", ..." if len(counts) > limit else "")


def lone_surrogate(text: str) -> int | None:
    """The index of the first lone surrogate (U+D800-U+DFFF) in `text`, or None: no character, with no UTF-8
    form (undecodable bytes in a file name or a command line become one)."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")  # a scan for surrogates: ~3x faster than a regular expression
    except UnicodeEncodeError as e:
        return e.start
    return None


def _escape(ch: str) -> str:
    o = ord(ch)
    return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}"


def visible(text: str, keep: str = "") -> str:
    """`text` with every control or format character (ESC, BEL, DEL, C1, bidi overrides ...) escaped, but
    those in `keep` (e.g. "\\n" for a multi-line panel); letters of any script pass through untouched."""
    if text.isprintable():
        return text
    return "".join(c if c in keep or (c.isprintable() and unicodedata.category(c) not in ("Cc", "Cf"))
                   else _escape(c) for c in text)
