"""A small line plotter for the terminal, drawn with braille characters.

Each character cell is a 2 x 4 grid of dots (Unicode braille, U+2800 + a bit per dot),
so a plot 70 characters wide and 16 rows high has 140 x 64 dots of resolution:

    dot (x, y) in a cell   bit          ⠁ = (0, 0)   ⠈ = (1, 0)
        (0,0) (1,0)        0x01 0x08    ⡀ = (0, 3)   ⢀ = (1, 3)
        (0,1) (1,1)        0x02 0x10
        (0,2) (1,2)        0x04 0x20
        (0,3) (1,3)        0x40 0x80

Lines between consecutive points are drawn dot by dot. A series can also put a marker
character on each of its points, or on a point every few columns along a dense line
(`marker_every`), so that curves can be told apart without colour (piped to a file).
The result is a `rich.text.Text`: coloured on a terminal, plain text anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text

from charrnn.util.showtext import visible

BRAILLE = 0x2800
DOT_BITS = ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))  # [x][y] within a cell


@dataclass
class Series:
    label: str  # shown in the legend
    xs: list[float]  # x values, ascending
    ys: list[float]  # y values, same length
    style: str = ""  # a rich style for its dots, e.g. "cyan" or "bold magenta"
    marker: str | None = None  # a character put on every point, or None for a bare line
    marker_every: int = 0  # > 0: put the marker only on a point at least this many columns after the last one

    def legend(self) -> str:
        if not self.marker:
            return "⠤⠤"
        return f"⠤{self.marker}⠤" if self.marker_every else self.marker


def fmt_tick(v: float, span: float) -> str:
    """A tick label: whole numbers when the axis spans 10 or more, else two decimals."""
    if abs(v) >= 100_000:
        return f"{v / 1000:.0f}k"
    return f"{v:.0f}" if span >= 10 else f"{v:.2f}"


def _line(x0: int, y0: int, x1: int, y1: int):
    """The dots of a straight line from (x0, y0) to (x1, y1), ends included (Bresenham)."""
    dx, dy = abs(x1 - x0), -abs(y1 - y0)
    sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
    err = dx + dy
    while True:
        yield x0, y0
        if x0 == x1 and y0 == y1:
            return
        e2 = 2 * err
        if e2 >= dy:
            err += dy
            x0 += sx
        if e2 <= dx:
            err += dx
            y0 += sy


def _rasterize(series: list[Series], to_dot, rows: int, cols: int) -> tuple[list, list, dict]:
    """Each series' line as braille dots: (dot bits per cell, the style of the series drawn last
    in each cell, markers by cell). Sparse markers along dense lines go under point markers."""
    bits = [[0] * cols for _ in range(rows)]
    owner: list[list[str]] = [[""] * cols for _ in range(rows)]
    marks: dict[tuple[int, int], tuple[str, str]] = {}
    sparse: dict[tuple[int, int], tuple[str, str]] = {}
    for s in series:
        dots = [to_dot(x, y) for x, y in zip(s.xs, s.ys)]
        path = [d for a, b in zip(dots, dots[1:]) for d in _line(*a, *b)] if len(dots) > 1 else dots
        for px, py in path:
            r, c = py // 4, px // 2
            bits[r][c] |= DOT_BITS[px % 2][py % 4]
            owner[r][c] = s.style
        last = None
        for px, py in dots if s.marker else ():
            if s.marker_every and last is not None and px // 2 - last < s.marker_every:
                continue
            (sparse if s.marker_every else marks)[(py // 4, px // 2)] = (s.marker, s.style)
            last = px // 2
    return bits, owner, {**sparse, **marks}


def render(series: list[Series], width: int = 72, height: int = 16, x_label: str = "", y_label: str = "") -> Text:
    """Draw `series` on shared axes into a Text `width` characters wide (plot area `height` rows)."""
    points = [(x, y) for s in series for x, y in zip(s.xs, s.ys)]
    if not points:
        return Text("(nothing to plot)\n")
    x_min, x_max = min(p[0] for p in points), max(p[0] for p in points)
    y_min, y_max = min(p[1] for p in points), max(p[1] for p in points)
    pad = (y_max - y_min) * 0.05 or 0.5
    y_min, y_max = y_min - pad, y_max + pad
    x_span = (x_max - x_min) or 1.0
    margin = max(len(fmt_tick(v, y_max - y_min)) for v in (y_min, y_max)) + 1
    cols, rows = max(10, width - margin - 2), max(4, height)
    dots_w, dots_h = cols * 2, rows * 4

    def to_dot(x: float, y: float) -> tuple[int, int]:
        px = round((x - x_min) / x_span * (dots_w - 1))
        py = round((y_max - y) / (y_max - y_min) * (dots_h - 1))
        return px, py

    bits, owner, marks = _rasterize(series, to_dot, rows, cols)
    out = Text()
    if y_label:
        out.append(" " * (margin - 1) + y_label + "\n", style="dim")
    tick_rows = {0: y_max, rows // 2: (y_max + y_min) / 2, rows - 1: y_min}
    for r in range(rows):
        label = fmt_tick(tick_rows[r], y_max - y_min) if r in tick_rows else ""
        out.append(label.rjust(margin - 1) + (" ┤" if r in tick_rows else " │"), style="dim")
        for c in range(cols):
            if (r, c) in marks:
                ch, style = marks[(r, c)]
                out.append(ch, style=style)
            elif bits[r][c]:
                out.append(chr(BRAILLE + bits[r][c]), style=owner[r][c])
            else:
                out.append(" ")
        out.append("\n")
    out.append(" " * margin + "└" + "─" * cols + "\n", style="dim")
    left, mid, right = (fmt_tick(v, x_span) for v in (x_min, (x_min + x_max) / 2, x_max))
    axis = [" "] * (cols + 1)
    for pos, label in ((0, left), ((cols - len(mid)) // 2, mid), (cols + 1 - len(right), right)):
        axis[max(0, pos) : max(0, pos) + len(label)] = label
    out.append(" " * (margin + 1) + "".join(axis)[: cols + 1].rstrip() + "\n", style="dim")
    if x_label:
        out.append(" " * (margin + 1 + max(0, (cols - len(x_label)) // 2)) + x_label + "\n", style="dim")
    for s in series:
        out.append("  ")
        out.append(s.legend(), style=s.style)
        out.append(f" {visible(s.label)}\n")  # a run folder's name: shown, never run
    return out
