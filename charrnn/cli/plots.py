"""Loss curves of one or many runs, from their `metrics.jsonl`: a PNG (needs matplotlib) and a terminal plot.

Training records (`bpc`) and evaluation records (`val_bpc`) are plotted in bits per character
against `step` or training seconds (`time`). Only plottable points are drawn: a step skipped as
non-finite is logged with `"bpc": NaN`, and a line that is not a metrics record (hand-edited, cut
short, another program's) is passed over, so one bad line never hides the rest of a run.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

from charrnn.util.files import atomic_write_bytes
from charrnn.util.errors import CharrnnError
from charrnn.cli.termplot import Series, render

X_AXES = {"step": "step", "time": "training time (s)"}
COLORS = ["cyan", "magenta", "yellow", "green", "blue", "red"]  # rich names, one per run
MARKERS = ["●", "■", "▲", "◆", "✚", "✖"]  # each run's validation points, readable without colour
TRAIN_MARKERS = ["○", "□", "△", "◇", "+", "×"]  # every few columns along its train line, the same shape hollow
TRAIN_MARKER_EVERY = 8  # columns between markers on a train line

MAX_HEIGHT = 500  # rows of the terminal plot: taller than any screen, small enough to draw at once
MAX_VALUE = 1e15  # beyond any step, training second or bits/char a run logs; keeps the plot's arithmetic finite

MISSING_MATPLOTLIB = "matplotlib is not installed, so no PNG was written: pip install 'charrnn[plot]'"


@dataclass
class RunMetrics:
    name: str  # shown in legends
    path: Path  # the metrics.jsonl
    train: list[dict] = field(default_factory=list)  # records with a training loss
    val: list[dict] = field(default_factory=list)  # records with a validation loss

    def curve(self, which: str, x: str) -> tuple[list[float], list[float]]:
        """(xs, bits/char) of the 'train' or 'val' curve against 'step' or 'time'."""
        records, key = (self.train, "bpc") if which == "train" else (self.val, "val_bpc")
        xs = [plottable(r.get(x)) for r in records]  # None where a record has no usable `time`
        return [v for v in xs if v is not None], [r[key] for v, r in zip(xs, records) if v is not None]


def plottable(value) -> float | None:
    """A metrics value as a float, or None when it cannot be drawn: not a number (a string, true,
    null), NaN or infinite (a skipped non-finite step), or so big that no run could have logged it."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if abs(value) < MAX_VALUE else None  # NaN and infinities fail the comparison too


def metrics_path(run: str | Path) -> Path:
    """A run folder, its metrics.jsonl, or a checkpoint in it -> the metrics.jsonl."""
    p = Path(run)
    if p.is_dir():
        p = p / "metrics.jsonl"
    elif p.suffix == ".pt":
        p = p.parent / "metrics.jsonl"
    if p.exists() and not p.is_file():
        raise CharrnnError(f"{p} is not a file: pass a run folder written by `charrnn train`")
    if not p.is_file():
        raise CharrnnError(f"no metrics.jsonl for {run}: pass a run folder written by `charrnn train`")
    return p


def load_metrics(run: str | Path, name: str | None = None) -> RunMetrics:
    path = metrics_path(run)
    out = RunMetrics(name or path.parent.name, path)
    for line in path.read_bytes().splitlines():
        try:
            record = json.loads(line)
        except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested past Python's limit
            continue  # a hand-edited or foreign line: skip it, keep the rest
        if not isinstance(record, dict) or plottable(record.get("step")) is None:
            continue
        if plottable(record.get("bpc")) is not None:
            out.train.append(record)
        if plottable(record.get("val_bpc")) is not None:
            out.val.append(record)
    if not out.train and not out.val:
        raise CharrnnError(f"{path} holds no loss records yet")
    return out


def looks_like_a_run(path: str | Path) -> bool:
    """A run folder (it holds metrics.jsonl or a checkpoint), its metrics.jsonl, or a checkpoint."""
    p = Path(path)
    if p.is_dir():
        return (p / "metrics.jsonl").is_file() or any(p.glob("*.pt"))
    return p.name == "metrics.jsonl" or p.suffix == ".pt"


def load_runs(runs: list[str]) -> tuple[list[RunMetrics], list[str]]:
    """Load every run that has metrics; return them and a warning for each run skipped.

    With one argument a missing metrics file is an error. With several (`checkpoints/*`),
    what is not a run at all (checkpoints/README.md, an empty folder) is passed over
    silently, and a run without usable metrics is skipped with a warning.
    """
    if len(runs) == 1:
        return [load_metrics(runs[0])], []
    runs = [r for r in runs if looks_like_a_run(r)]
    names = [Path(r).name if Path(r).is_dir() else Path(r).parent.name for r in runs]
    loaded, skipped = [], []
    for run, name in zip(runs, names):
        try:
            loaded.append(load_metrics(run, name if names.count(name) == 1 else str(run)))
        except CharrnnError as e:
            skipped.append(str(e))
    if not loaded:
        raise CharrnnError(f"none of the {len(runs)} paths is a run with metrics.jsonl")
    return loaded, skipped


def terminal_plot(runs: list[RunMetrics], x: str, width: int, height: int):
    """The runs' train (dim line, a hollow marker every few columns) and validation (bright line, every point
    marked) curves as a rich Text; each run has its own marker shape, so the curves read without colour."""
    series = []
    for i, run in enumerate(runs):
        color = COLORS[i % len(COLORS)]
        series.append(Series(f"{run.name} train", *run.curve("train", x), style=f"dim {color}",
                             marker=TRAIN_MARKERS[i % len(TRAIN_MARKERS)], marker_every=TRAIN_MARKER_EVERY))
        series.append(Series(f"{run.name} val", *run.curve("val", x), style=f"bold {color}", marker=MARKERS[i % len(MARKERS)]))
    return render(series, width=width, height=height, x_label=X_AXES[x], y_label="bits/char")


def save_png(runs: list[RunMetrics], path: str | Path, x: str) -> None:
    """Write the curves as a PNG (atomically). Raises CharrnnError when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CharrnnError(MISSING_MATPLOTLIB) from None
    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=120)
    for i, run in enumerate(runs):
        color = f"C{i % 10}"  # matplotlib's default colour cycle
        ax.plot(*run.curve("train", x), color=color, alpha=0.45, linewidth=1, label=f"{run.name} train")
        ax.plot(*run.curve("val", x), color=color, marker="o", markersize=3, linewidth=2, label=f"{run.name} val")
    ax.set_xlabel(X_AXES[x])
    ax.set_ylabel("bits per character")
    ax.set_title("charrnn: " + ", ".join(r.name for r in runs))
    ax.grid(alpha=0.3)
    ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
