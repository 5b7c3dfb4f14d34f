"""CPU threads: the one place torch's thread count is set, and the timed choice of it.

    with torch_threads(n):              n threads inside the block (0 = one per core), the count before it after
    with timed_threads(0, work):        the faster of 1 and one per core for `work`, timed now: yields it
    with paced_threads(0) as pace:      the faster, chosen on the work itself: call pace(done, total) after
                                        each block (a progress hook), and the next block runs at the count chosen
    set_threads(n)                      inside such a block: change it (a tuner's trial, a fallback to 1)

Why time it: a second thread helps only while no other process holds the other core. On a busy
core a 2-thread step can run 0.02x as fast as a 1-thread one, so a count fixed in advance is
wrong on a busy machine whichever it is. torch is imported inside the functions only.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from charrnn.util.errors import UsageError


def default_threads() -> int:
    """One thread per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS
        return max(1, os.cpu_count() or 1)


def check_threads(n: int) -> int:
    """A thread count as given by a user: 0 (= one per core) up to the cores there are."""
    if n < 0:
        raise UsageError("threads must be >= 0 (0 = one per core)", "threads")
    cores = default_threads()
    if n > cores:
        raise UsageError(f"threads {n} is more than the {cores} core(s) this process may use: "
                         f"give 0 (one per core) or at most {cores}", "threads")
    return n


def candidates(n: int = 0) -> list[int]:
    """The thread counts worth timing for a user's `n`: n itself, or 1 and one per core for 0 (auto)."""
    return [n] if n else sorted({1, default_threads()})


def set_threads(n: int) -> None:
    """torch uses n CPU threads from now on (0 = one per core); call it inside a `torch_threads` block."""
    import torch

    n = n or default_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch uses n CPU threads inside the block (0 = one per core), the previous count after."""
    import torch

    saved = torch.get_num_threads()
    set_threads(n)
    try:
        yield
    finally:
        set_threads(saved)


@contextmanager
def timed_threads(n: int, work: Callable[[], object]) -> Iterator[int]:
    """Inside the block torch uses `n` threads, or for 0 the faster of 1 and one per core at `work`, timed now
    in short windows taken in turn; yields the count."""
    from charrnn.runtime.timing import SAMPLE_THREAD_MARGIN, interleaved_rates, thread_verdict

    counts = candidates(check_threads(n))
    with torch_threads(counts[0]):
        if len(counts) > 1:
            rates = interleaved_rates({c: (work, 1.0) for c in counts}, 0.05, 3,
                                      before={c: (lambda c=c: set_threads(c)) for c in counts})
            counts = [thread_verdict(rates, SAMPLE_THREAD_MARGIN)]
        set_threads(counts[0])
        yield counts[0]


class Pace:
    """Thread counts chosen on the work itself, block by block: the first blocks run at each count in turn,
    the rest at the faster (in units of work per second, as `done` counts them). The others are tried again,
    one block each, when a block runs JUMP times slower than the chosen count's pace (another process took a
    core) and every RECHECK seconds (one may have left one: one thread's pace does not show it). No verdict is
    kept between runs: a count cached in an idle minute ran 1.45x slower in a busy one (eval of 200 KB, 2x256:
    9.6 s at 2 threads beside a busy core, 6.6 s at 1)."""

    JUMP, RECHECK = 1.5, 30.0

    def __init__(self, counts: list[int], progress: Callable[[int, int], None] | None = None,
                 clock: Callable[[], float] = time.perf_counter):
        self.counts, self.progress, self.clock = counts, progress, clock
        self.plan = list(counts)  # the counts still to try, the current one first
        self.rates: dict[int, float] = {}
        self.current, self.done, self.last = counts[0], 0, clock()
        self.pace, self.chosen_at = 0.0, self.last  # the chosen count's rate when chosen, and when
        set_threads(self.current)

    def __call__(self, done: int, total: int) -> None:
        now = self.clock()
        rate = (done - self.done) / max(now - self.last, 1e-9)
        self.done, self.rates[self.current] = done, rate
        if self.plan:
            self.plan.pop(0)
            if not self.plan:  # each count has run a block: the faster runs the rest
                self.current = max(self.rates, key=self.rates.get)
                self.pace, self.chosen_at = self.rates[self.current], now
        elif rate * self.JUMP < self.pace or now - self.chosen_at > self.RECHECK:
            self.plan = [c for c in self.counts if c != self.current] + [self.current]
        self.current = self.plan[0] if self.plan else self.current
        set_threads(self.current)
        if self.progress is not None:
            self.progress(done, total)
        self.last = self.clock()


@contextmanager
def paced_threads(n: int, progress: Callable[[int, int], None] | None = None,
                  cpu: bool = True) -> Iterator[Callable[[int, int], None] | None]:
    """n CPU threads inside the block, or for 0 (on the CPU) the faster of 1 and one per core, chosen as the work
    goes (`Pace`): yields the progress hook to call after each block (it calls `progress` too)."""
    counts = candidates(check_threads(n))
    with torch_threads(counts[0]):
        yield Pace(counts, progress) if len(counts) > 1 and cpu else progress
