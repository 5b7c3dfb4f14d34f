"""Everything the user sees that is not generated text: stderr console, progress, log lines.

stdout carries only generated text (see `TextWriter`); every other output goes through
`err_console()`, created lazily so test runners that swap sys.stderr capture it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from charrnn.train import Reporter, Trainer, TrainResult

_console: Console | None = None
_console_stream = None


def err_console() -> Console:
    """The stderr console (rebuilt if sys.stderr was replaced, e.g. by a test runner)."""
    global _console, _console_stream
    if _console is None or _console_stream is not sys.stderr:
        _console = Console(file=sys.stderr, highlight=False, soft_wrap=True)
        _console_stream = sys.stderr
    return _console


def error(message: str) -> None:
    err_console().print(f"[bold red]error:[/] {escape(message)}")


def warn(message: str) -> None:
    err_console().print(f"[yellow]warning:[/] {escape(message)}")


def info(message: str) -> None:
    err_console().print(escape(message), style="dim")


def escape(text: str) -> str:
    from rich.markup import escape as _escape

    return _escape(text)


class TextWriter:
    """Writes generated text to stdout: flushed per character on a terminal, per line when piped.

    A closed pipe (`charrnn sample | head`) ends the writing quietly: `closed` becomes True
    and further writes are dropped, so the caller can stop generating.
    """

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if hasattr(self.stream, "isatty") else False
        self.closed = False

    def write(self, text: str) -> bool:
        """Write `text`; False once the reader has gone away."""
        if self.closed:
            return False
        try:
            self.stream.write(text)
            if self.tty or "\n" in text:
                self.stream.flush()
        except BrokenPipeError:
            self._close_quietly()
        return not self.closed

    def finish(self) -> None:
        try:
            if not self.closed:
                self.stream.flush()
        except BrokenPipeError:
            self._close_quietly()

    def _close_quietly(self) -> None:
        self.closed = True
        # Python would complain again when it flushes stdout at exit: point fd 1 at /dev/null.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stream.fileno())
        except (OSError, ValueError, AttributeError):
            pass


def fmt_rate(x: float) -> str:
    return f"{x / 1000:.1f}k" if x >= 1000 else f"{x:.0f}"


SAMPLE_LINES = 6  # lines of the live sample shown under the progress bar


def sample_panel(sample: str, step: int) -> Panel:
    """The live sample as a boxed block: its first lines, each cut to the terminal width."""
    lines = sample.split("\n")[:SAMPLE_LINES]
    body = Text("\n".join(lines), no_wrap=True, overflow="ellipsis")  # Text: never parsed as markup
    return Panel(body, title=f"sample at step {step}", title_align="left", border_style="dim")


class SampleProgress(Progress):
    """A rich progress display with the latest live sample below the bar."""

    sample: Panel | None = None

    def get_renderables(self):
        yield self.make_tasks_table(self.tasks)
        if self.sample is not None:
            yield self.sample


class ConsoleReporter(Reporter):
    """Training progress on stderr: a rich bar on a terminal, one dense line per record otherwise."""

    def __init__(self, console: Console | None = None, live: bool | None = None):
        self.console = console or err_console()
        self.live = self.console.is_terminal if live is None else live
        self.progress: Progress | None = None
        self.task = None
        self.last_val: float | None = None
        self.trainer: Trainer | None = None

    def on_start(self, trainer: Trainer) -> None:
        self.trainer = trainer
        m, c = trainer.mcfg, trainer.cfg
        budget = []
        if c.steps:
            budget.append(f"{c.steps} steps")
        if c.epochs:
            budget.append(f"{c.epochs:g} epochs")
        if c.time:
            budget.append(f"{c.time:g} s")
        if not budget:
            budget.append(f"{trainer.total_steps} steps (default {trainer.total_steps // max(1, trainer.batcher.steps_per_epoch)} epochs)")
        precision = {None: "fp32"}.get(trainer.amp_dtype, str(trainer.amp_dtype).replace("torch.", "") + " autocast")
        import torch

        threads = f", {torch.get_num_threads()} threads" if trainer.device.type == "cpu" else ""
        self.console.print(
            f"[bold]charrnn[/] {m.cell} {m.layers}x{m.hidden} (embed {m.embed}, {trainer.model.num_params() / 1e6:.2f}M params), "
            f"vocab {m.vocab_size}, {len(trainer.batcher.tokens):,} train / {len(trainer.val_tokens):,} val chars",
            highlight=False,
        )
        self.console.print(
            f"batch {c.batch_size} x seq {c.seq_len}, lr {c.lr:g}, clip {c.clip:g}, {trainer.device.type} {precision}{threads}; "
            f"budget: {' or '.join(budget)}; Ctrl-C stops and saves"
            + (f"; saving to {trainer.out_dir}/" if trainer.out_dir else ""),
            highlight=False,
        )
        if self.live:
            self.progress = SampleProgress(
                TextColumn("[bold]{task.fields[step]}[/]"),
                BarColumn(),
                TextColumn("loss {task.fields[bpc]} bpc · val {task.fields[val]} · {task.fields[rate]} chars/s"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
                transient=False,
            )
            self.progress.start()
            self.task = self.progress.add_task("train", total=1000, step="step 0", bpc="-", val="-", rate="-")

    def on_log(self, r: dict) -> None:
        if self.progress is not None:
            self.progress.update(
                self.task, completed=1000 * self.trainer.progress(), step=f"step {r['step']}",
                bpc=f"{r['bpc']:.3f}", rate=fmt_rate(r["chars_per_sec"]),
                val="-" if self.last_val is None else f"{self.last_val:.3f}",
            )
        else:
            self.console.print(
                f"step {r['step']:>6}  epoch {r['epoch']:.2f}  loss {r['loss']:.4f} nats = {r['bpc']:.3f} bpc  "
                f"grad {r['grad_norm']:.2f}  lr {r['lr']:.2e}  {r['chars_per_sec']:.0f} chars/s  {r['time']:.0f}s",
                highlight=False,
            )

    def on_eval(self, r: dict) -> None:
        if r["val_bpc"] is None:
            return
        self.last_val = r["val_bpc"]
        line = f"step {r['step']:>6}  val {r['val_loss']:.4f} nats = {r['val_bpc']:.3f} bits/char  ({r['eval_seconds']:.1f}s)"
        if self.progress is not None:
            self.progress.console.print(line, highlight=False)
            self.progress.update(self.task, val=f"{self.last_val:.3f}")  # shown now, not at the next log
        else:
            self.console.print(line, highlight=False)

    def on_sample(self, r: dict) -> None:
        if self.progress is not None:
            self.progress.sample = sample_panel(r["sample"], r["step"])
            self.progress.refresh()
        else:  # one line per sample, newlines escaped, so logs stay one record per line
            self.console.print(f"step {r['step']:>6}  sample {json.dumps(r['sample'], ensure_ascii=False)}",
                               markup=False, highlight=False)

    def on_warning(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/] {escape(message)}")

    def on_end(self, result: TrainResult) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=1000 * min(1.0, self.trainer.progress()))
            self.progress.stop()
        best = f"best val {result.best_val_bpc:.3f} bits/char" if result.best_val_bpc is not None else "no validation text"
        where = f"; checkpoints in {result.out_dir}/" if result.out_dir else ""
        self.console.print(
            f"done: {result.steps} steps, {result.epoch:.2f} epochs in {result.seconds:.0f}s "
            f"(stopped by {result.stopped_by}); {best}{where}",
            highlight=False,
        )


def short_path(p: Path) -> str:
    try:
        return str(p.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(p)


class Stopwatch:
    def __init__(self):
        self.t0 = time.perf_counter()

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.t0
