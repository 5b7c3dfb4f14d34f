"""Choosing by measuring: precision, thread count and step kernel, picked from timings taken here.

A CPU that *reports* AVX512-BF16 may still multiply bf16 matrices no faster than fp32 ones, and a
second core helps only while no other process is using it. So charrnn does not guess from CPU
flags: it times the candidates on the work itself and keeps the fastest. This module holds the
parts that need no torch, so tests can feed them timings:

    candidate timings --> choose / StepTuner --> Verdict --> runtime.cache.TuneCache (cache_dir()/tune.json)

`StepTuner` chooses a training run's setting from its own first steps (real updates: no time is
thrown away) and re-checks it as it goes; `SlowdownWatch` notices when sampling slows down.
"""

from __future__ import annotations

import statistics
import time
from collections import deque
from dataclasses import dataclass, field

LOW_PRECISION_MARGIN = 1.10  # bf16 (or int8) must run >= 10% faster than fp32 to be chosen
THREAD_MARGIN = 1.05  # more threads must run >= 5% faster than one (training, re-checked as it goes)
SAMPLE_THREAD_MARGIN = 1.15  # ... >= 15% for sampling and beam search, chosen once at the start


def times(ratio: float) -> str:
    """'0.62×', and for a tiny ratio its two first digits ('0.021×'), never '0.00×'."""
    return f"{ratio:.2f}×" if ratio >= 0.1 else f"{ratio:.2g}×"


def choose(rates: dict, default, margin: float):
    """The candidate with the highest rate; the default (when measured) unless that one beats it by `margin`."""
    best = max(rates, key=rates.get)
    return best if default not in rates or rates[best] > margin * rates[default] else default


@dataclass
class Verdict:
    """What was chosen, and the measured rates (units/s) it was chosen from."""

    choice: str
    rates: dict[str, float] = field(default_factory=dict)
    cached: bool = False  # True when it came from the cache, not from timings taken now
    firm: bool = True  # False when a candidate was cut short (worth keeping for this run, not for the cache)

    def describe(self) -> str:
        """'fp32 (bf16 ran 0.62× here)', 'int8 (measured before, cached)'."""
        if self.cached:
            return f"{self.choice} (measured before, cached)"
        mine = self.rates.get(self.choice)
        notes = [f"{name} ran {times(rate / mine)} here" for name, rate in self.rates.items()
                 if name != self.choice and mine and rate is not None]
        return f"{self.choice} ({'; '.join(notes)})" if notes else self.choice

    def to_dict(self) -> dict:
        return {"choice": self.choice, "rates": self.rates}


def precision_verdict(rates: dict[str, float]) -> Verdict:
    """fp32 or bf16 from their rates: bf16 only when clearly faster."""
    return Verdict(choose(rates, "fp32", LOW_PRECISION_MARGIN), dict(rates))


def thread_verdict(rates: dict[int, float], margin: float = THREAD_MARGIN) -> int:
    """The thread count to use: more than the fewest only when `margin` times faster (training re-checks
    its choice, so a small gain is worth taking; sampling decides once: SAMPLE_THREAD_MARGIN)."""
    return choose(rates, min(rates), margin)


def interleaved_rates(contenders: dict, window: float, rounds: int, before: dict | None = None) -> dict:
    """Units per second of each contender {name: (fn, units per call)}: windows taken in turn, best kept.

    Taking turns (A, B, A, B, ...) means a burst of load from another process slows every contender
    alike; keeping each one's best window drops the windows it landed in. `before[name]` runs untimed
    before each of that contender's windows (e.g. setting the thread count); the first call is untimed.
    """
    before = before or {}
    best = dict.fromkeys(contenders, 0.0)
    for r in range(rounds):
        for name, (fn, units) in contenders.items():
            if name in before:
                before[name]()
            if r == 0:
                fn()
            calls, t0 = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - t0) < window or calls == 0:
                fn()
                calls += 1
            best[name] = max(best[name], calls * units / max(elapsed, 1e-9))
    return best


@dataclass(frozen=True)
class Setting:
    """How one training step runs on the CPU."""

    precision: str  # fp32 | bf16 (autocast)
    threads: int


@dataclass
class _Window:
    setting: Setting
    timed: bool  # False: a warm-up step, not counted
    steps: int = 0
    seconds: float = 0.0


class StepTuner:
    """Chooses the precision and thread count of a training run from its own step times.

    `candidates` maps each thread count to the precisions to try at it (one when it is forced or
    a cached verdict, given in `known`, says which). Use: run the next step in `setting`, then
    `record(seconds)`; a returned message says what was chosen.

    Trial: each setting runs an untimed warm-up step, then ROUNDS timed windows taken in turn (`window`
    seconds, at most WINDOW_STEPS steps each). A setting whose step takes HOPELESS times longer than
    another's best (twice that for a warm-up step) is dropped at once, with the settings it speaks for
    (`_alike`). A precision verdict is `firm` (worth caching) only when both precisions ran >= 2 windows.

    Watch: when the median of the last RECENT steps exceeds JUMP times the step time the setting was
    chosen at (at least MIN_GAP seconds after the choice), or `recheck_after` seconds have gone by, the
    thread counts are tried again (one window each); a re-check that changes nothing doubles that
    interval (up to RECHECK_MAX).
    """

    WINDOW_STEPS, ROUNDS, HOPELESS, JUMP, RECENT, MIN_GAP, RECHECK_MAX = 4, 3, 3.0, 1.5, 8, 5.0, 240.0

    def __init__(self, candidates: dict[int, list[str]], known: dict[int, Verdict] | None = None,
                 window: float = 0.15, recheck_after: float = 30.0):
        self.candidates = {t: list(p) for t, p in sorted(candidates.items())}
        self.window, self.recheck_after = window, recheck_after
        self.recent: deque[float] = deque(maxlen=self.RECENT)
        self.settings = [Setting(p, t) for t, ps in self.candidates.items() for p in ps]
        self.precision_verdicts: dict[int, Verdict] = dict(known or {})  # thread count -> fp32 vs bf16 (measured or cached)
        self.thread_rates: dict[int, float] = {}
        self.dropped: dict[int, float] = {}  # thread count -> steps/s of the step that had it dropped
        self.chosen: Setting | None = None if len(self.settings) > 1 else self.settings[0]
        self.baseline = 0.0  # seconds per step of the chosen setting when it was chosen
        self.since_check = 0.0  # seconds of steps since the last choice
        self._plan: list[_Window] = []
        self._done: list[_Window] = []
        if self.chosen is None:
            self._plan = [_Window(s, timed) for s in self.settings for timed in (False, True)]
            self._plan += [_Window(s, True) for _ in range(self.ROUNDS - 1) for s in self.settings]

    @property
    def trying(self) -> bool:
        """True while steps are being spent on comparing settings."""
        return bool(self._plan)

    @property
    def setting(self) -> Setting:
        """The setting the next step runs in."""
        return self._plan[0].setting if self._plan else self.chosen

    @property
    def steady(self) -> Setting:
        """The setting for work other than training steps: the chosen one, or the best timed so far."""
        if self.chosen is not None:
            return self.chosen
        rates, _ = self._rates()
        return max(rates, key=rates.get) if rates else self.settings[0]

    def record(self, seconds: float) -> str | None:
        """The step just run (in `setting`) took `seconds`. Returns a message when a choice was made."""
        if not self._plan:
            return self._watch(seconds)
        w = self._plan[0]
        w.steps, w.seconds = w.steps + 1, w.seconds + seconds
        if self._hopeless(w.setting, seconds, 1 if w.timed else 2):  # no more steps in it, nor in its like
            self._done.append(w)
            dropped = self._alike(w.setting)
            if all(d.threads == w.setting.threads for d in dropped):
                self.dropped[w.setting.threads] = 1.0 / max(seconds, 1e-9)
            self._plan = [p for p in self._plan if p.setting not in dropped]
        elif not w.timed or w.seconds >= self.window or w.steps >= self.WINDOW_STEPS:
            self._done.append(self._plan.pop(0))
        return None if self._plan else self._decide()

    def _best_step(self, setting: Setting) -> float | None:
        times = [w.seconds / w.steps for w in self._done if w.setting == setting and w.timed and w.steps]
        return min(times) if times else None

    def _alike(self, setting: Setting) -> set[Setting]:
        """What a hopeless setting says about the others: more threads than the fewest, when that
        precision ran fine at the fewest, is hopeless at every precision (another process holds a
        core); otherwise the precision is hopeless at every thread count (the CPU is slow at it)."""
        fewest = min(s.threads for s in self.settings)
        if setting.threads > fewest and self._best_step(Setting(setting.precision, fewest)) is not None:
            return {s for s in self.settings if s.threads == setting.threads}
        return {s for s in self.settings if s.precision == setting.precision}

    def _hopeless(self, setting: Setting, seconds: float, leeway: float = 1.0) -> bool:
        others = [b for s in self.settings if s != setting and (b := self._best_step(s)) is not None]
        return bool(others) and seconds > leeway * self.HOPELESS * min(others)

    def _rates(self) -> tuple[dict[Setting, float], dict[Setting, int]]:
        """Each setting's best window rate (steps/s), and how many timed windows it ran."""
        rates, windows = {}, {}
        for w in self._done:
            if w.timed and w.steps:
                rates[w.setting] = max(rates.get(w.setting, 0.0), w.steps / w.seconds)
                windows[w.setting] = windows.get(w.setting, 0) + 1
        return rates, windows

    def _decide(self) -> str:
        (rates, windows), first = self._rates(), self.chosen is None
        self._done = []
        per_threads: dict[int, Setting] = {}
        for t, precisions in self.candidates.items():
            tried = {p: rates[Setting(p, t)] for p in precisions if Setting(p, t) in rates}
            if not tried:
                continue
            verdict = precision_verdict(tried)  # (the one tried, when there is one)
            if len(tried) > 1:
                verdict.firm = all(windows.get(Setting(p, t), 0) >= 2 for p in tried)
                self.precision_verdicts[t] = verdict
            p = verdict.choice
            self.candidates[t] = [p]  # re-checks try each thread count at its own precision
            per_threads[t] = Setting(p, t)
        if not per_threads:  # every setting was dropped as hopeless
            per_threads = {s.threads: s for s in self.settings[:1]}
        self.thread_rates = {t: rates.get(s, 0.0) for t, s in per_threads.items()}
        before = self.chosen
        self.dropped = {n: r for n, r in self.dropped.items() if n not in self.thread_rates}
        self.chosen = per_threads[thread_verdict(self.thread_rates)]
        self.baseline = 1.0 / max(rates.get(self.chosen, 0.0), 1e-9)
        self.settings = list(per_threads.values())
        self.recent.clear()
        self.since_check = 0.0
        if first:
            return self.describe()
        if self.chosen != before:
            self.recheck_after = 30.0
            return f"threads: {self._threads_note()} (re-checked: step times changed)"
        self.recheck_after = min(self.recheck_after * 2, self.RECHECK_MAX)
        return None

    def _watch(self, seconds: float) -> str | None:
        if len(self.settings) < 2:
            return None
        self.recent.append(seconds)
        self.since_check += seconds
        jumped = (len(self.recent) == self.recent.maxlen and self.since_check >= self.MIN_GAP
                  and statistics.median(self.recent) > self.JUMP * self.baseline)
        if jumped or self.since_check >= self.recheck_after:
            order = [self.chosen] + [s for s in self.settings if s != self.chosen]
            self._plan = [_Window(s, True) for s in order]
        return None

    def _threads_note(self) -> str:
        t = self.chosen.threads
        rates = {**self.dropped, **self.thread_rates}
        others = [f"{n} ran {times(r / rates[t])} here" + (", dropped after one step" if n not in self.thread_rates else "")
                  for n, r in sorted(rates.items()) if n != t and rates.get(t)]
        return f"{t}" + (f" ({'; '.join(others)})" if others else "")

    def describe(self) -> str:
        """'precision: fp32 (bf16 ran 0.62× here); threads: 2 (1 ran 0.55× here)'."""
        verdict = self.precision_verdicts.get(self.chosen.threads)
        precision = verdict.describe() if verdict else self.chosen.precision
        return f"precision: {precision}; threads: {self._threads_note()}"


class SlowdownWatch:
    """Notices when steps run `jump` times slower than the first `window` of them did.

    Sampling chooses its thread count once; if another process then takes a core, a step with more than
    one thread can take 10-100 times as long. `record(seconds)` returns True once, on the step where the
    median of the last `window` steps passes `jump` times the median of the first `window`.
    """

    def __init__(self, jump: float = 2.0, window: int = 16):
        self.jump, self.window = jump, window
        self.recent: deque[float] = deque(maxlen=window)
        self.baseline: float | None = None
        self.fired = False

    def record(self, seconds: float) -> bool:
        if self.fired:
            return False
        self.recent.append(seconds)
        if len(self.recent) < self.window:
            return False
        if self.baseline is None:
            self.baseline = statistics.median(self.recent)
            self.recent.clear()
            return False
        self.fired = statistics.median(self.recent) > self.jump * self.baseline
        return self.fired
