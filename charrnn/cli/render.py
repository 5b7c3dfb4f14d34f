"""Text with a colour behind every character, for the terminal (rich) and as a standalone HTML page.

Two colour scales:

* surprise (bits, >= 0): white at 0 bits, through yellow, to red at `SURPRISE_CAP` bits and above;
* activation (-1..1, like tanh): blue at -1, white at 0, red at +1 (as in the paper's figures).

Text on a dark background is white, elsewhere black. Characters without a value (NaN: not
scored, unknown to the model) get no background.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

import numpy as np
from rich.style import Style
from rich.text import Text

from charrnn.util.showtext import visible

SURPRISE_CAP = 8.0  # bits at which the surprise colour is fully red

RGB = tuple[int, int, int]


def surprise_rgb(bits: float) -> RGB | None:
    """0 bits -> white, SURPRISE_CAP/2 -> yellow, >= SURPRISE_CAP -> red; None for NaN."""
    if math.isnan(bits):
        return None
    x = min(max(bits / SURPRISE_CAP, 0.0), 1.0)
    if x < 0.5:  # white -> yellow: blue fades out
        return 255, 255, round(255 * (1 - 2 * x))
    return 255, round(255 * (2 - 2 * x)), 0  # yellow -> red: green fades out


NEGATIVE, POSITIVE = (40, 100, 230), (220, 40, 40)  # the activation scale's ends, -1 and +1


def activation_rgb(value: float) -> RGB | None:
    """-1 -> blue, 0 -> white, +1 -> red (clipped to -1..1); None for NaN."""
    if math.isnan(value):
        return None
    v = min(max(value, -1.0), 1.0)
    end = POSITIVE if v >= 0 else NEGATIVE
    return tuple(round(255 + abs(v) * (e - 255)) for e in end)


def ink(rgb: RGB) -> str:
    """Black or white, whichever reads better on this background."""
    r, g, b = rgb
    return "#000000" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "#ffffff"


def _hex(rgb: RGB) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _runs(text: str, colours: list[RGB | None]):
    """Consecutive characters of equal colour, as (piece, colour); newlines end a piece."""
    start = 0
    for i in range(1, len(text) + 1):
        if i == len(text) or colours[i] != colours[start] or text[i - 1] == "\n":
            yield text[start:i], colours[start]
            start = i


def rich_text(text: str, colours: list[RGB | None]) -> Text:
    """A rich Text with each character's background set to its colour (black or white text on top).

    Built from pieces with explicit styles, never markup, so "[Exit Hamlet]" or "[/]" is shown as written;
    control characters (ESC, BEL, C1, bidi overrides) are shown as escapes, never sent to the terminal raw.
    """
    out = Text()
    for piece, rgb in _runs(text, colours):
        piece = visible(piece, keep="\n\t")
        if rgb is None:
            out.append(piece)
        elif piece.endswith("\n"):  # a background on a newline would paint the rest of the line
            out.append(piece[:-1], Style(color=ink(rgb), bgcolor=_hex(rgb)))
            out.append("\n")
        else:
            out.append(piece, Style(color=ink(rgb), bgcolor=_hex(rgb)))
    return out


@dataclass
class Section:
    heading: str  # shown above the text
    text: str  # the characters
    colours: list[RGB | None]  # one background colour per character (None: none)
    tooltips: list[str] | None = None  # per-character hover text (e.g. "3.20 bits")
    note: str = ""  # a line under the heading


@dataclass
class TableSection:
    title: str  # shown above the table
    columns: list[str]  # header cells
    rows: list[list[str]]  # body cells, as text (escaped when written)
    numeric: tuple[str, ...] = ()  # the columns aligned right


def html_page(title: str, sections: list[Section], intro: str = "", tables: list[TableSection] = ()) -> str:
    """A self-contained HTML page (inline CSS, no scripts): each section's coloured text, then the tables.

    The title, intro, headings and notes name files: escapes visible, so a name whose bytes are not
    UTF-8 (byte 0xff is U+DCFF in Python) reads `\\udcff` instead of making the page unwritable as UTF-8.
    """
    title, intro = visible(title), visible(intro)
    parts = [
        "<!DOCTYPE html>\n<html lang='en'>\n<head>\n<meta charset='utf-8'>\n",
        f"<title>{html.escape(title)}</title>\n<style>\n",
        "body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}\n",
        "pre{font:14px/1.35 ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap;",
        "border:1px solid #ddd;padding:.8em;background:#fff}\n",
        "h2{font-size:1.1em;margin-top:2em}\n.note{color:#555}\n",
        "table{border-collapse:collapse}th,td{border:1px solid #ddd;padding:.2em .6em;text-align:left}\n",
        "td.n{text-align:right}td code{white-space:pre}\n",
        "</style>\n</head>\n<body>\n",
        f"<h1>{html.escape(title)}</h1>\n",
    ]
    if intro:
        parts.append(f"<p class='note'>{html.escape(intro)}</p>\n")
    for s in sections:
        parts.append(f"<h2>{html.escape(visible(s.heading))}</h2>\n")
        if s.note:
            parts.append(f"<p class='note'>{html.escape(visible(s.note))}</p>\n")
        parts.append("<pre>")
        for i, (ch, rgb) in enumerate(zip(s.text, s.colours)):
            tip = f" title='{html.escape(s.tooltips[i])}'" if s.tooltips else ""
            if rgb is None and not tip:
                parts.append(html.escape(ch))
            else:
                bg = f" style='background:{_hex(rgb)};color:{ink(rgb)}'" if rgb is not None else ""
                parts.append(f"<span{bg}{tip}>{html.escape(ch)}</span>")
        parts.append("</pre>\n")
    for t in tables:
        parts.append(f"<h2>{html.escape(t.title)}</h2>\n<table>\n<tr>")
        parts += [f"<th>{html.escape(c)}</th>" for c in t.columns]
        parts.append("</tr>\n")
        for row in t.rows:
            cells = [f"<td class='n'>{html.escape(v)}</td>" if col in t.numeric else f"<td><code>{html.escape(v)}</code></td>"
                     for col, v in zip(t.columns, row)]
            parts.append("<tr>" + "".join(cells) + "</tr>\n")
        parts.append("</table>\n")
    parts.append("</body>\n</html>\n")
    return "".join(parts)


def colours_for(values: np.ndarray, scale) -> list[RGB | None]:
    """Map an array of values to colours with `scale` (surprise_rgb or activation_rgb)."""
    return [scale(float(v)) for v in values]
