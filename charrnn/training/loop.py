"""One session of training: the order of events around the steps, and who hears of them.

`Trainer` (trainer.py) holds what a run *is*, the model, optimizer, data cursor and carried
state, and what one step does. `TrainingRun` is one call of `Trainer.run`:

    lock the run folder; catch Ctrl-C / SIGTERM (util.signals); set the CPU threads
    while there is no stop reason:       the budget is spent, a signal came, patience ran out,
        one step (timed: clock)          until_step was reached, or MAX_BAD_STEPS bad steps in a row
        log / validate and save / sample, each when its interval comes round
    finish: last.pt always; best.pt too if the run stopped before its first validation
    -> TrainResult (why it stopped; a failed save or divergence as a message, not a traceback)

Everything a run tells the outside world goes through a `Reporter`; the CLI's progress bar
(cli/progress.py) is one, a test's list of records another.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

from charrnn.training import distributed
from charrnn.training.checkpoint import SaveError
from charrnn.inspect.evaluation import LN2
from charrnn.training.runfolder import RunFolder
from charrnn.runtime.threads import torch_threads
from charrnn.util.signals import StopSignals

MAX_BAD_STEPS = 10  # non-finite steps in a row before a run gives up


class Reporter:
    """What the trainer tells the outside world. Subclass and override what you need."""

    def on_prepare(self, phase: str, done: int, total: int) -> None: ...  # reading the corpus (long for big ones)
    def on_info(self, message: str) -> None: ...  # a fact about the run before it starts: its model, its corpus
    def on_status(self, message: str | None) -> None: ...  # what it is busy with before it starts (None: done)
    def on_start(self, trainer) -> None: ...
    def on_step(self, trainer) -> None: ...  # after every step: keep it cheap
    def on_log(self, record: dict) -> None: ...
    def on_eval(self, record: dict) -> None: ...
    def on_save(self, path: Path) -> None: ...
    def on_sample(self, record: dict) -> None: ...
    def on_warning(self, message: str) -> None: ...
    def on_tune(self, message: str) -> None: ...  # what precision / thread count was chosen, and why
    def on_end(self, result: "TrainResult") -> None: ...


@dataclass
class TrainResult:
    steps: int
    epoch: float
    seconds: float
    best_val_bpc: float | None
    last_val_bpc: float | None
    stopped_by: str  # "steps" | "epochs" | "time" | "patience" | "SIGINT" | "SIGTERM" | "nan" | "until_step" | "save_error"
    out_dir: Path | None
    history: list[dict] = field(default_factory=list)
    error: str | None = None  # what went wrong when stopped_by is "save_error" or "nan"


class Diverged(Exception):
    """The weights (or their validation loss) are no longer finite: they must not be saved."""


class TrainingRun:
    """One call of `Trainer.run(until_step)`: the loop, its intervals, and how it ends."""

    def __init__(self, trainer, until_step: int | None = None):
        self.t = trainer
        self.until_step = until_step
        self.last_val: float | None = None  # bits/char of the newest validation of this session

    def __call__(self) -> TrainResult:
        t = self.t
        lock = RunFolder(t.out_dir).lock() if t.out_dir is not None else None  # one writer per folder
        try:
            if t.out_dir is not None:  # fail before training, not after an hour of it
                RunFolder(t.out_dir, t.cfg.keep).check_writable(prune=bool(t.cfg.save_every))
            t.reporter.on_start(t)
            stopped_by, error = self._train()
            result = TrainResult(steps=t.step, epoch=t.epoch_float, seconds=t.elapsed, best_val_bpc=t.best_val_bpc,
                                 last_val_bpc=self.last_val, stopped_by=stopped_by, out_dir=t.out_dir,
                                 history=t.history, error=error)
            t.reporter.on_end(result)
            return result
        finally:
            if lock is not None:
                lock.release()

    def _train(self) -> tuple[str, str | None]:
        """Steps until a stop reason, then the final saves; (why it stopped, an error message or None)."""
        t = self.t
        threads = torch_threads(t.cfg.threads) if t.device.type == "cpu" else nullcontext()
        with StopSignals() as signals, threads:
            try:
                stopped_by = self._loop(signals)
                with t.clock.timed():  # the final validation and saves count toward the run's seconds
                    self._finish(stopped_by)
                return stopped_by, None
            except SaveError as e:
                return "save_error", (f"{e}; training stopped at step {t.step}: once that is fixed, "
                                      f"continue with `charrnn train --resume {t.out_dir}`")
            except Diverged as e:
                kept = (f"last.pt holds step {t.saved_step}, the last state saved" if t.saved_step is not None
                        else "nothing was saved in this session (the folder's checkpoints are as they were)")
                return "nan", f"training stopped: {e}; these weights were not saved: {kept}. Try a lower --lr"
            finally:
                t.net = t.model  # the DDP wrapper (and its reducer's gloo work) goes before the group does
                distributed.cleanup(t.dist)

    def _loop(self, signals: StopSignals) -> str:
        """Train step after step until the budget is spent or a signal arrives; why it stopped."""
        t, bad_steps = self.t, 0
        while (stopped_by := self._stop_reason(signals)) is None:
            with t.clock.timed(training=True):
                out = t.speed.step(t.train_step)
            t.clock.count(out["chars"], t.cfg.batch_size * t.cfg.seq_len)
            if out["finite"]:
                t.good_step, bad_steps = t.step, 0
            else:
                bad_steps += 1
                t.reporter.on_warning(f"step {t.step}: loss or gradient is not finite; update skipped")
                if bad_steps >= MAX_BAD_STEPS:
                    return "nan"
            t.reporter.on_step(t)
            self._after_step(out)
        return stopped_by

    def _stop_reason(self, signals: StopSignals) -> str | None:
        t = self.t
        sig = signals.signum or 0
        if t.dist.enabled:  # every rank sees the same signal and the same elapsed time
            sig, t.clock.elapsed = distributed.all_reduce([sig, t.elapsed], t.device, t.dist, op="max")
            signals.signum = int(sig) or None
        if signals.received:
            return signals.received
        if self.until_step is not None and t.step >= self.until_step:
            return "until_step"
        if t.watch.out_of_patience:
            return "patience"
        return t.budget.spent(t.step, t.elapsed, t.final_eval_reserve())

    def _after_step(self, out: dict) -> None:
        """Log, validate and save, and show a live sample, each when its interval comes round."""
        t, c = self.t, self.t.cfg
        if t.step % c.log_every == 0 or t.step == 1:
            self._log(out)
        snapshot = bool(c.save_every) and t.step % c.save_every == 0
        if t.step % c.eval_every == 0 or snapshot:
            with t.clock.timed():
                if t.step % c.eval_every == 0:
                    self.last_val = t.validate_and_save(snapshot)
                else:
                    t.save("last.pt", t.snapshot_name())
        if c.sample_every and t.step % c.sample_every == 0:
            with t.clock.timed():
                t.live_sample()

    def _log(self, out: dict) -> None:
        """A training-loss record: bits per character (and per token), gradient norm, lr, throughput."""
        t = self.t
        if t.dist.enabled:  # the mean loss over all streams, as one process would see it
            out["loss"] = distributed.all_reduce([out["loss"]], t.device, t.dist)[0] / t.dist.world
        seconds, chars, tokens_seen = t.clock.take_window()
        tokens = t.cfg.batch_size * t.cfg.seq_len  # per step
        record = t.record(loss=out["loss"], bpc=out["loss"] * tokens / max(out["chars"], 1) / LN2, bpt=out["loss"] / LN2,
                          grad_norm=out["grad_norm"], lr=out["lr"], chars_per_sec=chars / max(seconds, 1e-9),
                          tokens_per_sec=tokens_seen / max(seconds, 1e-9))
        t.history.append(record)
        t.reporter.on_log(record)

    def _finish(self, stopped_by: str) -> None:
        """The saves that end a run: last.pt always; a validation (and best.pt) if the run has none yet."""
        t = self.t
        if stopped_by == "nan":
            # every bad update was skipped, so the weights in memory are those after the last finite one;
            # they are saved only if they still validate to a finite loss
            t.check_finite(t.validate())
            t.save("last.pt")
            t.reporter.on_warning(f"training stopped: {MAX_BAD_STEPS} non-finite steps in a row; last.pt holds "
                                  f"the weights after step {t.good_step}, the last finite update (try a lower --lr)")
        elif stopped_by.startswith("SIG") or stopped_by == "until_step":
            t.save("last.pt")  # first, so a second Ctrl-C during the validation below loses nothing
            if stopped_by.startswith("SIG") and t.best_val_bpc is None and len(t.val_tokens) >= 2:
                self.last_val = t.validate_and_save()  # stopped before the first validation: make best.pt
        elif t.step % t.cfg.eval_every != 0:
            self.last_val = t.validate_and_save()
