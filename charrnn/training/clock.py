"""A training run's clocks: the budget's seconds, and the throughput figures users read.

    clock = RunClock()
    with clock.timed(training=True):   # a training step: counts toward chars/s
        ...
    clock.count(chars=2048, tokens=2048)   # what that step's targets stood for
    with clock.timed():                # validation, a save, a live sample: budget time only
        ...
    clock.chars_per_second()           # this session's training throughput
    clock.take_window()                # (seconds, characters, tokens) since the last log record

`elapsed` is the budget's clock: every second of the run (training, validation, saving,
samples), summed across resumes (a checkpoint stores it). The throughput figures count
training steps of this session only, so a resumed run reports its own speed.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class RunClock:
    def __init__(self, now: Callable[[], float] = time.perf_counter):
        self.now = now  # the clock it reads (a test gives it a fake one)
        self.elapsed = 0.0  # seconds of the whole run, summed across resumes
        self.train_seconds = 0.0  # seconds in training steps, this session
        self.chars = 0  # characters of text those steps' targets stood for
        self._window = [0.0, 0, 0]  # training seconds, characters, tokens since the last log record
        self._recent: deque[float] = deque(maxlen=20)  # seconds of the last training steps

    @contextmanager
    def timed(self, training: bool = False) -> Iterator[None]:
        """Add the block's wall time to `elapsed`, and to the throughput figures if `training`."""
        t0 = self.now()
        try:
            yield
        finally:
            dt = self.now() - t0
            self.elapsed += dt
            if training:
                self.train_seconds += dt
                self._window[0] += dt
                self._recent.append(dt)

    def count(self, chars: int, tokens: int) -> None:
        """One training step done: the characters and tokens its targets stood for."""
        self.chars += chars
        self._window[1] += chars
        self._window[2] += tokens

    def chars_per_second(self) -> float:
        return self.chars / max(self.train_seconds, 1e-9)

    def eval_reserve(self, budget: float | None, val_tokens: int, tokens_per_step: int, last: float | None) -> float:
        """Seconds a time budget keeps back for the validation at the end: the `last` one's duration.

        Before any, a guess: a forward pass over the held-out text, ~3x faster per token than the median
        of the recent steps (not the mean: a first step of one-time costs would make the reserve look
        longer than the budget), and at most a quarter of the budget.
        """
        if not budget or val_tokens < 2:
            return 0.0
        if last:
            return last
        if not self._recent:
            return 0.0
        rate = tokens_per_step / max(statistics.median(self._recent), 1e-9)
        return min(val_tokens / max(3 * rate, 1.0), 0.25 * budget)

    def take_window(self) -> tuple[float, int, int]:
        """(training seconds, characters, tokens) since the last call."""
        window, self._window = tuple(self._window), [0.0, 0, 0]
        return window
