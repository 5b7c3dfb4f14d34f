"""`charrnn plot`: loss curves of one or many runs, as a PNG and in the terminal."""

from __future__ import annotations

from pathlib import Path

import typer

from charrnn.cli.common import app, examples, guarded, out_console, show_path

EXAMPLES = examples(
    "charrnn plot checkpoints/shakespeare",
    "charrnn plot checkpoints/* -o compare.png",
    "charrnn plot checkpoints/small checkpoints/large --x time --no-png",
    then="""The plot is drawn on stdout; the PNG (default RUN/loss.png, or ./loss.png
for several runs) needs matplotlib: pip install 'charrnn\\[plot]'.""")


@app.command(epilog=EXAMPLES)
@guarded
def plot(
    runs: list[str] = typer.Argument(None, help="Run folders (or their metrics.jsonl). Default: the newest run under ./checkpoints.", show_default=False),
    out: Path = typer.Option(None, "--out", "-o", help="PNG to write. Default: RUN/loss.png for one run, ./loss.png for several.", show_default=False),
    x: str = typer.Option("step", "--x", help="x axis: step or time (training seconds)."),
    png: bool = typer.Option(True, "--png/--no-png", help="Write the PNG (needs matplotlib)."),
    terminal: bool = typer.Option(True, "--terminal/--no-terminal", help="Draw the plot on stdout."),
    height: int = typer.Option(16, "--height", help="Rows of the terminal plot (4 to 500)."),
) -> None:
    """Plot train and validation bits/char against steps or time, for one run or several."""
    import shutil

    from charrnn.cli.plots import MAX_HEIGHT, MISSING_MATPLOTLIB, X_AXES, load_runs, save_png, terminal_plot
    from charrnn.training.checkpoint import newest_checkpoint
    from charrnn.util.console import info, warn
    from charrnn.util.errors import CharrnnError, UsageError

    if out is not None and not png:
        raise UsageError("--out names a PNG to write and --no-png writes none: leave one of them out")
    if x not in X_AXES:
        raise UsageError(f"--x must be one of {', '.join(X_AXES)}")
    if not 4 <= height <= MAX_HEIGHT:  # a tick at the top, middle and bottom
        raise UsageError(f"--height must be between 4 and {MAX_HEIGHT} (rows of the terminal plot)")
    if not runs:
        runs = [str(newest_checkpoint().parent)]
        info(f"plotting {show_path(runs[0])} (the newest run)")
    loaded, skipped = load_runs(runs)
    for message in skipped:
        warn(f"skipped: {message}")
    if terminal:
        width = min(100, shutil.get_terminal_size((80, 24)).columns)
        out_console().print(terminal_plot(loaded, x, width, height), end="")  # coloured on a terminal only
    if not png:
        return
    target = out or (loaded[0].path.parent / "loss.png" if len(loaded) == 1 else Path("loss.png"))
    try:
        save_png(loaded, target, x)
    except CharrnnError as e:
        if str(e) == MISSING_MATPLOTLIB and out is None:
            warn(MISSING_MATPLOTLIB)  # the PNG was not asked for by name: the terminal plot is enough
            return
        raise
    info(f"wrote {target}")
