"""Training progress on stderr (the `Reporter` that `charrnn train` uses): on a terminal a rich progress
bar with the live sample under it, refreshed by time (every `REFRESH_SECONDS`, so slow steps never look
frozen); otherwise one dense log line per record. Every line is printed as plain text, never markup."""

from __future__ import annotations

import json
import time

from rich.console import Console
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from charrnn.training.budget import describe
from charrnn.util.console import err_console, info, warn
from charrnn.runtime.threads import default_threads
from charrnn.util.showtext import visible
from charrnn.training.trainer import Reporter, Trainer, TrainResult

SAMPLE_LINES = 6  # lines of the live sample shown under the progress bar
REFRESH_SECONDS = 0.25  # the bar's step count and rate are refreshed this often, however slow a step is


def fmt_rate(x: float) -> str:
    return f"{x / 1000:.1f}k" if x >= 1000 else f"{x:.0f}"


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}" if n == 1 else f"{n:,} {word}s"


def sample_panel(sample: str, step: int) -> Panel:
    """The live sample's first lines, each cut to the terminal width, in a box; control characters (the
    model learned them from a corpus) shown as escapes, not run."""
    body = Text("\n".join(visible(line) for line in sample.split("\n")[:SAMPLE_LINES]), no_wrap=True,
                overflow="ellipsis")
    return Panel(body, title=f"sample at step {step}", title_align="left", border_style="dim")


class SampleProgress(Progress):
    """A rich progress display with the latest live sample below the bar."""

    sample: Panel | None = None

    def get_renderables(self):
        yield self.make_tasks_table(self.tasks)
        if self.sample is not None:
            yield self.sample


def describe_budget(trainer: Trainer) -> str:
    c = trainer.cfg
    budget = describe(c.steps, c.epochs, c.time, " (final validation included)")
    if not budget:
        per_epoch = max(1, trainer.batcher.steps_per_epoch)
        budget = f"{trainer.total_steps} steps (default {trainer.total_steps // per_epoch} epochs)"
    return budget


def describe_speed(trainer: Trainer) -> str:
    """`cpu fp32, 2 threads`, or what the first steps will time (`cpu fp32/bf16 (timing the first steps) ...`)."""
    speed = trainer.speed
    precision = "fp32" if speed.amp_dtype is None else str(speed.amp_dtype).replace("torch.", "") + " autocast"
    threads = trainer.cfg.threads or default_threads() if trainer.device.type == "cpu" else 0
    if speed.tuner is not None:  # chosen by timing the first steps: say what is tried
        tried = speed.tuner.candidates
        precisions = sorted({p for ps in tried.values() for p in ps})
        precision = "/".join(precisions) + (" (timing the first steps)" if len(precisions) > 1 else "")
        if len(tried) > 1:
            precision += f", {' or '.join(map(str, tried))} threads (timed)"
            threads = 0
    return f"{trainer.device.type} {precision}" + (f", {plural(threads, 'thread')}" if threads else "")


class ConsoleReporter(Reporter):
    """The bar shows the step, the latest training loss, the latest validation and this session's
    average training rate."""

    def __init__(self, console: Console | None = None, live: bool | None = None, now=time.monotonic):
        self.now = now  # the clock the bar's refreshes are spaced by (a test gives it a fake one)
        self.console = console or err_console()
        self.live = self.console.is_terminal if live is None else live
        self.progress: Progress | None = None
        self.task = None
        self.trainer: Trainer | None = None
        self.fields = {"step": "step 0", "bpc": "-", "val": "-", "rate": "-"}
        self._shown_at = 0.0
        self.reading: Progress | None = None  # the corpus being read: a bar per phase (a terminal only)
        self.status = None  # a spinner and what it is doing (sizing: timing 2×256 ...)
        self.phases: dict[str, int] = {}

    def say(self, line: str, style: str | None = None) -> None:
        self.console.print(line, style=style, markup=False, highlight=False)  # above the bar while it is shown

    def on_prepare(self, phase: str, done: int, total: int) -> None:
        from rich.progress import DownloadColumn, TransferSpeedColumn

        if not self.live:  # a log gets the "corpus:" line, not a bar
            return
        if self.reading is None:
            self.reading = Progress("{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                                    console=self.console, transient=True)
            self.reading.start()
        if phase not in self.phases:
            self.phases[phase] = self.reading.add_task(f"corpus: {phase}", total=total)
        self.reading.update(self.phases[phase], completed=done)

    def on_info(self, message: str) -> None:
        self._done_reading()
        info(message)

    def on_status(self, message: str | None) -> None:
        """What the run is busy with before it starts ('timing 2×256'), on a terminal only: a line that goes away."""
        if self.status is not None and message is None:
            self.status.stop()
            self.status = None
        elif message is not None and self.live:
            self._done_reading()
            if self.status is None:
                self.status = self.console.status(message)
                self.status.start()
            self.status.update(message)

    def _done_reading(self) -> None:
        if self.reading is not None:
            self.reading.stop()
            self.reading = None

    def on_start(self, trainer: Trainer) -> None:
        self._done_reading()
        self.trainer = trainer
        m, c, unit = trainer.mcfg, trainer.cfg, trainer.vocab.unit
        self.say(f"charrnn {m.cell} {m.layers}x{m.hidden} (embed {m.embed}, {trainer.model.num_params() / 1e6:.2f}M "
                 f"params), vocab {m.vocab_size:,} {unit}, {len(trainer.batcher.tokens):,} train / "
                 f"{len(trainer.val_tokens):,} val {unit}")
        self.say(f"batch {c.batch_size} x seq {c.seq_len}, lr {c.lr:g}, clip {c.clip:g}, {describe_speed(trainer)}; "
                 f"budget: {describe_budget(trainer)}; Ctrl-C stops and saves"
                 + (f"; saving to {visible(str(trainer.out_dir))}/" if trainer.out_dir else ""))
        if trainer.best_val_bpc is not None:
            self.fields["val"] = f"{trainer.best_val_bpc:.3f}"
        self.fields["step"] = f"step {trainer.step}"  # a resumed run starts where it stopped
        if self.live:
            self.progress = SampleProgress(
                TextColumn("[bold]{task.fields[step]}[/]"),
                BarColumn(),
                TextColumn("loss {task.fields[bpc]} bpc · val {task.fields[val]} · {task.fields[rate]} chars/s"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=self.console,
            )
            self.progress.start()
            self.task = self.progress.add_task("train", total=1000, **self.fields)
            self._show()

    def _show(self, **fields) -> None:
        self.fields.update(fields)
        if self.progress is not None:
            self.progress.update(self.task, completed=1000 * min(1.0, self.trainer.progress()), **self.fields)

    def _nats(self, bits_per_token: float) -> str:
        """The unit of a loss: nats per character, or per token (then bits per token beside it)."""
        chars = self.trainer is None or self.trainer.char_counts is None  # a token is a character
        return "nats" if chars else f"nats/token ({bits_per_token:.3f} bits/token)"

    def on_step(self, trainer: Trainer) -> None:
        now = self.now()
        if self.progress is None or now - self._shown_at < REFRESH_SECONDS:
            return
        self._shown_at = now
        self._show(step=f"step {trainer.step}", rate=fmt_rate(trainer.chars_per_second()))

    def on_log(self, r: dict) -> None:
        self.fields["bpc"] = f"{r['bpc']:.3f}"
        if self.progress is not None:
            self._show(step=f"step {r['step']}", rate=fmt_rate(self.trainer.chars_per_second()))
        else:
            self.say(f"step {r['step']:>6}  epoch {r['epoch']:.2f}  loss {r['loss']:.4f} {self._nats(r.get('bpt'))} = "
                     f"{r['bpc']:.3f} bpc  grad {r['grad_norm']:.2f}  lr {r['lr']:.2e}  {r['chars_per_sec']:.0f} chars/s  "
                     f"{r['time']:.0f}s")

    def on_eval(self, r: dict) -> None:
        if r["val_bpc"] is None:
            return
        self.say(f"step {r['step']:>6}  val {r['val_loss']:.4f} {self._nats(r.get('val_bpt'))} = {r['val_bpc']:.3f} "
                 f"bits/char  ({r['eval_seconds']:.1f}s)")
        self._show(val=f"{r['val_bpc']:.3f}")  # shown now, not at the next log

    def on_sample(self, r: dict) -> None:
        if self.progress is not None:
            self.progress.sample = sample_panel(r["sample"], r["step"])
            self.progress.refresh()
        else:  # one line per sample, so logs stay one record per line: JSON escapes newlines and C0
            # characters, `visible` the C1 and bidi ones JSON leaves raw
            self.say(f"step {r['step']:>6}  sample {visible(json.dumps(r['sample'], ensure_ascii=False))}")

    def on_tune(self, message: str) -> None:
        self.say(message, "dim" if self.progress is not None else None)

    def on_warning(self, message: str) -> None:
        warn(message)

    def _stop_reason(self, result: TrainResult) -> str:
        if result.stopped_by == "patience":
            return (f"stopped early: {self.trainer.cfg.patience} validations in a row found no new best; "
                    "training longer would learn the text by heart")
        return f"stopped by {result.stopped_by}"

    def on_end(self, result: TrainResult) -> None:
        if self.progress is not None:
            self._show(step=f"step {result.steps}")
            self.progress.stop()
        if result.best_val_bpc is not None:
            best = f"best val {result.best_val_bpc:.3f} bits/char"
        elif len(self.trainer.val_tokens) < 2:
            best = "no validation (no held-out text: --val-fraction is 0 or the corpus is tiny)"
        else:
            best = "not validated"
        where = f"; checkpoints in {visible(str(result.out_dir))}/" if result.out_dir else ""
        rate = f" at {fmt_rate(self.trainer.chars_per_second())} chars/s" if self.trainer.clock.train_seconds else ""
        self.say(f"done: {plural(result.steps, 'step')}, {result.epoch:.2f} epochs in {result.seconds:.0f}s{rate} "
                 f"({self._stop_reason(result)}); {best}{where}")
