"""How long a run trains, and the learning rate at each point of it.

A budget is a number of steps, of epochs, of seconds, or several of them (whichever runs out
first). `progress` is the fraction of it spent, 0 -> 1; the learning-rate schedule is a
function of progress, so a `--time 120` run decays its learning rate to fit two minutes:

    lr  ^     ______
        |    /      `-.
        |   /          `-.
        |  /              `-.___   lr * min_lr_ratio
        +--|-------------------|--> progress
          warmup               1

Extending the budget of a finished or paused run (`--resume RUN --steps 400` after 300
steps) does not restart the cosine: the schedule goes on from the learning rate the run had
reached, down to the floor over what the new budget leaves (`Budget.extend`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_EPOCHS = 10  # when no --steps, --epochs or --time is given


@dataclass
class Budget:
    """The stop condition of a run and the schedule's clock."""

    steps: int | None  # --steps
    epochs: float | None  # --epochs
    seconds: float | None  # --time
    steps_per_epoch: int
    # (progress under this budget, schedule progress) where the budget last changed: the schedule maps
    # progress p >= anchor[0] linearly onto [anchor[1], 1]. (0, 0) for a run whose budget never changed.
    anchor: tuple[float, float] = (0.0, 0.0)

    @property
    def total_steps(self) -> int | None:
        """The step budget implied by --steps / --epochs (None if only --time is set)."""
        budgets = [self.steps] if self.steps else []
        budgets += [math.ceil(self.epochs * self.steps_per_epoch)] if self.epochs else []
        if not budgets and not self.seconds:
            return DEFAULT_EPOCHS * self.steps_per_epoch
        return min(budgets) if budgets else None

    def progress(self, step: int, elapsed: float) -> float:
        """Fraction of the budget used: the largest of the step and time fractions."""
        fractions = [step / self.total_steps] if self.total_steps else []
        return max(fractions + ([elapsed / self.seconds] if self.seconds else []))

    def schedule_progress(self, step: int, elapsed: float) -> float:
        """Progress as the learning-rate schedule sees it (see `anchor`), clamped to [0, 1]."""
        p = min(max(self.progress(step, elapsed), 0.0), 1.0)
        a, b = self.anchor
        if p <= a or a >= 1.0:
            return b if a > 0 else p
        return b + (p - a) * (1.0 - b) / (1.0 - a)

    def spent(self, step: int, elapsed: float, reserve: float = 0.0) -> str | None:
        """'steps', 'epochs' or 'time' once that part of the budget is used up, else None. `reserve` seconds
        are kept back from a time budget for the final validation, so that 20 s take about 20 s in all."""
        if self.seconds and elapsed + reserve >= self.seconds:
            return "time"
        if self.total_steps and step >= self.total_steps:
            return "steps" if self.steps and step >= self.steps else "epochs"
        return None

    def extend(self, step: int, elapsed: float, new: "Budget") -> "Budget":
        """`new`, anchored so the schedule continues from where this budget's schedule is now."""
        here = self.schedule_progress(step, elapsed)
        new.anchor = (min(max(new.progress(step, elapsed), 0.0), 1.0), here)
        return new


def lr_at(lr: float, warmup: int, min_lr_ratio: float, step: int, progress: float) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to lr * min_lr_ratio as progress goes 0 -> 1."""
    warm = min(1.0, (step + 1) / max(1, warmup))
    p = min(max(progress, 0.0), 1.0)
    decay = min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p))
    return lr * warm * decay


def describe(steps: int | None, epochs: float | None, seconds: float | None, time_note: str = "") -> str:
    """'2000 steps or 300 s': the parts of a budget that are set ('' if none)."""
    parts = [f"{steps} steps" if steps else "", f"{epochs:g} epochs" if epochs else "",
             f"{seconds:g} s{time_note}" if seconds else ""]
    return " or ".join(p for p in parts if p)
