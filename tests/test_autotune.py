"""Choosing precision and threads by measurement: the choice logic fed with made-up timings, and the cache."""

from __future__ import annotations

import json

import pytest

from charrnn.runtime.timing import SlowdownWatch, StepTuner, Verdict, choose, precision_verdict, thread_verdict
from charrnn.runtime.cache import TuneCache, cached_or_measured


# ---- choosing from rates -------------------------------------------------------------------------


def test_bf16_only_when_clearly_faster():
    assert precision_verdict({"fp32": 100.0, "bf16": 150.0}).choice == "bf16"  # faster
    assert precision_verdict({"fp32": 100.0, "bf16": 62.0}).choice == "fp32"  # slower
    assert precision_verdict({"fp32": 100.0, "bf16": 105.0}).choice == "fp32"  # tied: not worth its rounding
    assert precision_verdict({"fp32": 100.0, "bf16": 111.0}).choice == "bf16"


def test_the_log_says_what_was_chosen_and_by_how_much():
    assert precision_verdict({"fp32": 100.0, "bf16": 62.0}).describe() == "fp32 (bf16 ran 0.62× here)"
    assert precision_verdict({"fp32": 50.0, "bf16": 100.0}).describe() == "bf16 (fp32 ran 0.50× here)"
    assert "cached" in Verdict("bf16", {}, cached=True).describe()


def test_more_threads_only_when_faster():
    assert thread_verdict({1: 100.0, 2: 180.0}) == 2
    assert thread_verdict({1: 100.0, 2: 103.0}) == 1
    assert thread_verdict({1: 100.0, 2: 30.0}) == 1  # another process holds a core
    assert choose({"a": 1.0}, "fp32", 1.1) == "a"  # the default not measured: the best there is


# ---- the training tuner, fed with step times --------------------------------------------------------


def drive(tuner: StepTuner, seconds_of, steps: int) -> tuple[list[str], list]:
    """Run `steps` fake steps, each taking seconds_of(setting); the messages and the settings used."""
    messages, used = [], []
    for _ in range(steps):
        setting = tuner.setting
        used.append(setting)
        message = tuner.record(seconds_of(setting))
        if message:
            messages.append(message)
    return messages, used


def step_times(fp32_1: float, bf16_1: float, fp32_2: float, bf16_2: float):
    table = {("fp32", 1): fp32_1, ("bf16", 1): bf16_1, ("fp32", 2): fp32_2, ("bf16", 2): bf16_2}
    return lambda s: table[(s.precision, s.threads)]


BOTH = {1: ["fp32", "bf16"], 2: ["fp32", "bf16"]}


@pytest.mark.parametrize("times, chosen", [
    ((0.10, 0.06, 0.06, 0.035), ("bf16", 2)),  # bf16 faster, two cores help
    ((0.10, 0.16, 0.06, 0.10), ("fp32", 2)),  # bf16 slower
    ((0.10, 0.097, 0.06, 0.058), ("fp32", 2)),  # tied: fp32
    ((0.10, 0.06, 0.35, 0.21), ("bf16", 1)),  # another process keeps one core busy
])
def test_tuner_chooses_from_the_runs_own_steps(times, chosen):
    tuner = StepTuner(BOTH)
    messages, used = drive(tuner, step_times(*times), 60)
    assert not tuner.trying and (tuner.chosen.precision, tuner.chosen.threads) == chosen
    assert len(messages) == 1 and messages[0].startswith("precision: ")
    assert used[-1] == tuner.chosen  # after the trial every step runs in the chosen setting
    assert max(i for i, s in enumerate(used) if s != tuner.chosen) < 40  # the trial is short


@pytest.mark.parametrize("slower, steps", [(40.0, 1), (4.0, 2)])
def test_a_hopeless_setting_is_dropped_at_once(slower, steps):
    tuner = StepTuner({1: ["fp32"], 2: ["fp32"]})
    _, used = drive(tuner, lambda s: 0.05 if s.threads == 1 else 0.05 * slower, 30)
    assert tuner.chosen.threads == 1
    assert sum(s.threads == 2 for s in used) == steps  # 40x: after its warm-up step; 4x: after one timed step


def test_a_busy_core_costs_one_warm_up_step_at_two_threads():
    tuner = StepTuner(BOTH)
    messages, used = drive(tuner, step_times(0.10, 0.06, 5.0, 3.0), 40)  # 2 threads: 50x slower, either precision
    assert (tuner.chosen.precision, tuner.chosen.threads) == ("bf16", 1)
    assert sum(s.threads == 2 for s in used) == 1
    assert messages[0].endswith("threads: 1 (2 ran 0.012× here, dropped after one step)")  # never '0.00×'


def test_a_precision_the_cpu_is_slow_at_is_dropped_everywhere():
    tuner = StepTuner(BOTH)
    _, used = drive(tuner, step_times(0.10, 2.0, 0.06, 1.2), 40)  # bf16 emulated: 20x slower
    assert (tuner.chosen.precision, tuner.chosen.threads) == ("fp32", 2)
    assert sum(s.precision == "bf16" for s in used) == 1


def test_sampling_notices_a_slowdown_once():
    watch = SlowdownWatch(jump=2.0, window=4)
    assert not any(watch.record(t) for t in [0.01, 0.012, 0.011, 0.01] * 5)  # the baseline, then steady
    # a core got busy: the median of the last 4 passes twice the first 4's once half of them are slow
    assert [watch.record(t) for t in (0.05, 0.06, 0.05, 0.07)] == [False, True, False, False]  # and says it once


def test_steady_is_the_best_setting_so_far():
    tuner = StepTuner({1: ["fp32"], 2: ["fp32"]}, window=0.05)
    assert tuner.steady.threads == 1  # nothing timed yet: the first setting
    for seconds, threads in ((0.5, 1), (0.1, 1), (0.3, 2), (0.2, 2)):  # warm-up and a window each
        assert tuner.setting.threads == threads
        tuner.record(seconds)
    assert tuner.trying and tuner.steady.threads == 1  # 2 threads ran slower so far


def test_a_verdict_cut_short_is_not_firm():
    tuner = StepTuner(BOTH)
    drive(tuner, step_times(0.10, 0.06, 0.06, 0.035), 60)
    assert all(v.firm for v in tuner.precision_verdicts.values())
    tuner = StepTuner(BOTH)
    drive(tuner, step_times(0.10, 0.50, 0.06, 0.30), 60)  # bf16 hopeless: dropped after one step
    assert tuner.chosen.precision == "fp32" and not any(v.firm for v in tuner.precision_verdicts.values())


def test_a_jump_in_step_time_rechecks_the_threads():
    tuner = StepTuner({1: ["fp32"], 2: ["fp32"]})
    drive(tuner, lambda s: 0.10 if s.threads == 1 else 0.06, 40)
    assert tuner.chosen.threads == 2
    # another process starts: 2-thread steps now take 4x as long
    messages, _ = drive(tuner, lambda s: 0.10 if s.threads == 1 else 0.24, 30)
    assert tuner.chosen.threads == 1
    assert any(m.startswith("threads: 1") for m in messages)


def test_a_busy_core_freed_is_noticed_by_the_periodic_recheck():
    tuner = StepTuner({1: ["fp32"], 2: ["fp32"]}, recheck_after=5.0)
    drive(tuner, lambda s: 0.10 if s.threads == 1 else 0.30, 40)  # busy: 1 thread
    assert tuner.chosen.threads == 1
    drive(tuner, lambda s: 0.10 if s.threads == 1 else 0.06, 80)  # 8 s later the other core is free
    assert tuner.chosen.threads == 2


def test_a_quiet_recheck_waits_longer_next_time():
    tuner = StepTuner({1: ["fp32"], 2: ["fp32"]}, recheck_after=5.0)
    drive(tuner, lambda s: 0.10 if s.threads == 1 else 0.06, 200)
    assert tuner.chosen.threads == 2 and tuner.recheck_after > 5.0


def test_a_cached_precision_leaves_only_the_threads_to_time():
    known = {1: Verdict("bf16", {"fp32": 1.0, "bf16": 2.0}, cached=True)}
    tuner = StepTuner({1: ["bf16"], 2: ["bf16"]}, known)
    messages, used = drive(tuner, lambda s: 0.1 if s.threads == 1 else 0.4, 30)
    assert {s.precision for s in used} == {"bf16"}
    assert tuner.chosen.threads == 1 and "cached" in messages[0]


def test_nothing_to_choose_means_no_trial():
    assert not StepTuner({2: ["fp32"]}).trying


# ---- the cache ----------------------------------------------------------------------------------------


def test_cache_hit_and_stale_torch(tmp_path):
    cache = TuneCache(tmp_path / "tune.json")
    work = {"what": "train step", "hidden": 384, "batch": 32}
    cpu = {"model": "Some CPU", "flags": ["avx512_bf16"]}
    key = TuneCache.key(work, "2.13.0", cpu)
    cache.put(key, {"choice": "bf16", "rates": {"fp32": 1.0, "bf16": 1.6}})
    assert TuneCache(tmp_path / "tune.json").get(key)["choice"] == "bf16"  # hit, from the file
    assert cache.get(TuneCache.key(work, "2.14.0", cpu)) is None  # another torch version misses
    assert cache.get(TuneCache.key(work, "2.13.0", {"model": "Other CPU", "flags": []})) is None
    assert cache.get(TuneCache.key({**work, "batch": 64}, "2.13.0", cpu)) is None


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", json.dumps({"version": 99, "entries": {}}),
                                     json.dumps({"version": 1, "entries": {"k": "not a dict"}}),
                                     '{"entries": ' + "[" * 100_000 + "]" * 100_000 + "}"])  # nested past Python's limit
def test_a_corrupt_cache_is_ignored(tmp_path, content):
    path = tmp_path / "tune.json"
    path.write_text(content)
    cache = TuneCache(path)
    assert cache.get("k") is None
    calls = []
    verdict = cached_or_measured(cache, "k", lambda: calls.append(1) or Verdict("fp32", {"fp32": 1.0}), ["fp32"])
    assert verdict.choice == "fp32" and not verdict.cached and calls == [1]
    assert cache.get("k")["choice"] == "fp32"  # and replaced by a good one


def test_measured_once_then_read_from_the_cache(tmp_path):
    cache, calls = TuneCache(tmp_path / "tune.json"), []

    def measure():
        calls.append(1)
        return Verdict("int8", {"fp32": 1.0, "int8": 2.0})

    first = cached_or_measured(cache, "k", measure, ["fp32", "int8"])
    second = cached_or_measured(cache, "k", measure, ["fp32", "int8"])
    assert (first.cached, second.cached, second.choice, calls) == (False, True, "int8", [1])
    third = cached_or_measured(cache, "k", measure, ["fp32", "bf16"])  # a cached choice no longer on offer
    assert not third.cached and calls == [1, 1]


def test_cache_disabled_by_environment(tmp_path, monkeypatch):
    cache, calls = TuneCache(tmp_path / "tune.json"), []
    cache.put("k", {"choice": "bf16", "rates": {}})
    monkeypatch.setenv("CHARRNN_NO_TUNE_CACHE", "1")
    cached_or_measured(cache, "k", lambda: calls.append(1) or Verdict("fp32"), ["fp32", "bf16"])
    assert calls == [1]
