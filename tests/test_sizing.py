"""Automatic sizing (issue 17): the rule with injected speeds, the probe's cache, and the CLI's choice."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
import yaml
from typer.testing import CliRunner

from charrnn.training import sizing
from charrnn.runtime.cache import TuneCache
from charrnn.cli import app
from charrnn.training.config import TrainConfig
from charrnn.model.config import ModelConfig
from charrnn.training.config import RunConfig, Source
from charrnn.training.sizing import LADDER, Shape, choose_size, right_size

from .conftest import TINY_TEXT

V = 65


def flops_rate(base: float):
    """A machine where chars/s falls with the parameter count (as it does), `base` for 2x384; counts calls."""
    calls = []

    def rate(shape: Shape) -> float:
        calls.append(shape)
        ref = Shape(2, 384, 128).config(V).num_params()
        return base * ref / shape.config(V).num_params()

    rate.calls = calls
    return rate


def test_a_bigger_time_budget_never_gets_a_smaller_model():
    sizes = [choose_size(1_000_000, TrainConfig(time=t), V, flops_rate(40_000)).params for t in (10, 60, 120, 300, 900, 3600)]
    assert sizes == sorted(sizes)
    assert sizes[0] < sizes[-1]  # the range of budgets spans more than one shape


def test_a_faster_machine_gets_a_bigger_model_for_the_same_seconds():
    slow = choose_size(1_000_000, TrainConfig(time=120), V, flops_rate(10_000))
    fast = choose_size(1_000_000, TrainConfig(time=120), V, flops_rate(400_000))
    assert slow.params < fast.params
    assert fast.rate > slow.rate


def test_the_choice_is_the_largest_shape_that_sees_enough_characters_per_parameter():
    rate, train = flops_rate(40_000), TrainConfig(time=300)
    got = choose_size(10_000_000, train, V, rate)
    i = LADDER.index(got.shape)
    assert i == 0 or got.chars_seen >= sizing.CHARS_PER_PARAM * got.params
    if i + 1 < len(LADDER):  # the next one up was refused
        nxt = LADDER[i + 1]
        seen = sizing.chars_seen(train, got.n_train, rate(nxt))
        assert seen < sizing.CHARS_PER_PARAM * nxt.config(V).num_params()


def test_a_step_or_epoch_budget_needs_no_timing():
    never = flops_rate(1.0)
    choose_size(1_000_000, TrainConfig(steps=2000), V, never)
    choose_size(1_000_000, TrainConfig(epochs=3), V, never)
    assert never.calls == []


def test_the_probe_stops_at_the_first_shape_too_big():
    rate = flops_rate(40_000)
    got = choose_size(1_000_000, TrainConfig(time=60), V, rate)
    assert rate.calls == list(LADDER[: LADDER.index(got.shape) + 2])[: len(LADDER)]


def test_a_text_read_many_times_gets_dropout():
    small = choose_size(100_000, TrainConfig(time=60), V, flops_rate(40_000))
    assert small.epochs >= sizing.MANY_PASSES and small.dropout == small.shape.dropout > 0
    big = choose_size(10_000_000, TrainConfig(time=60), V, flops_rate(40_000))
    assert big.epochs < 1 and big.dropout == 0


def measured_rate(shape: Shape) -> float:
    """chars/s of each ladder shape as measured on a 2-core AMD EPYC (bench/sweep/results.jsonl)."""
    return {128: 170_000, 256: 90_000, 384: 33_000, 512: 20_000, 768: 7_800}[shape.hidden]


def test_a_tiny_text_gets_a_model_it_cannot_learn_by_heart():
    for n_train in (18_000, 45_000, 90_000):  # 20 KB, 50 KB and 100 KB of text, on a very fast machine
        s = choose_size(n_train, TrainConfig(time=300), V, flops_rate(10_000_000))
        assert s.params <= sizing.MAX_PARAMS_PER_CHAR * n_train and s.dropout > 0
    assert choose_size(18_000, TrainConfig(time=300), V, flops_rate(10_000_000)).shape == LADDER[0]
    assert choose_size(1_000, TrainConfig(time=300), V, flops_rate(10_000_000)).shape == LADDER[0]  # never none
    assert "e+" not in choose_size(18_000, TrainConfig(time=30), V, flops_rate(200_000)).describe()


def test_a_shape_that_reads_the_text_many_times_is_preferred_to_a_larger_one_that_does_not():
    """Shakespeare (1.0M characters) at 300 s: 2×384 reads it ~10 times, 2×256 ~27 times; 2×256 with
    dropout won (2.024 bits/char against 2.074). At 120 s 2×128 reads it ~20 times, but the step down
    never goes to the smallest shape (2×128 with dropout: 2.198; 2×256 without: 2.084)."""
    at_300 = choose_size(1_003_854, TrainConfig(time=300), V, measured_rate)
    assert (str(at_300.shape), at_300.dropout, at_300.shape.lr) == ("2×256", 0.1, 3e-2)
    at_120 = choose_size(1_003_854, TrainConfig(time=120), V, measured_rate)
    assert (str(at_120.shape), at_120.dropout) == ("2×256", 0.0)
    at_900 = choose_size(1_003_854, TrainConfig(time=900), V, measured_rate)  # the larger one reads it 18 times
    assert (str(at_900.shape), at_900.dropout) == ("2×512", 0.2)
    linux = choose_size(7_200_000, TrainConfig(time=300), V, measured_rate)  # read ~1.4 times: no step down
    assert (str(linux.shape), linux.dropout) == ("2×384", 0.0)


def test_the_log_line_says_what_and_why():
    s = choose_size(1_000_000, TrainConfig(time=300), V, flops_rate(40_000))
    line = s.describe()
    assert line.startswith(f"model: LSTM {s.shape.layers}×{s.shape.hidden}")
    assert "parameters" in line and "1.0M training characters" in line and "300 s" in line and "chars/s here" in line
    assert "yours: --hidden" in s.describe(ModelConfig(vocab_size=V, hidden=64), {"hidden"})


def fake_windows(calls: list, rates=None, noisy: bool = False):
    """`timed_windows` on a pretend CPU: bf16 twice as fast as fp32, two threads 1.5x one; `rates` overrides."""
    def windows(mcfg, train, device, settings, rounds=sizing.PROBE_ROUNDS):
        calls.append((mcfg.hidden, list(settings), rounds))
        out = {}
        for p, t in settings:
            r = rates if rates is not None else 1000.0 * mcfg.hidden * (2 if p == "bf16" else 1) * (1.5 if t > 1 else 1)
            out[(p, t)] = [r, r * (3 if noisy else 1.01)][:rounds]
        return out

    return windows


def test_the_probe_times_what_the_run_may_choose_and_caches_a_steady_figure(tmp_path, monkeypatch):
    import charrnn.runtime.threads

    monkeypatch.setattr(charrnn.runtime.threads, "default_threads", lambda: 2)  # a two-core machine
    cache, calls = TuneCache(tmp_path / "tune.json"), []
    probe = sizing.Probe(V, TrainConfig(time=300), cache=cache, windows=fake_windows(calls))
    assert probe(Shape(2, 128, 32)) == pytest.approx(1000 * 128 * 2 * 1.5 * 1.01)  # bf16, 2 threads: as the run picks
    assert calls[0][1] == [("fp32", 1), ("bf16", 1), ("fp32", 2), ("bf16", 2)] and calls[0][2] == sizing.PROBE_ROUNDS
    again = sizing.Probe(V, TrainConfig(time=300), cache=cache, windows=fake_windows(calls))  # a later run
    assert again(Shape(2, 128, 32)) == probe(Shape(2, 128, 32))
    assert calls[-1][1:] == (calls[0][1], 1)  # the cached figure re-timed once, one window per setting
    forced = sizing.Probe(V, TrainConfig(time=300, precision="fp32", threads=1), cache=cache,
                          windows=fake_windows(calls))
    forced(Shape(2, 128, 32))
    assert calls[-1][1] == [("fp32", 1)]  # only what the run will use
    (tmp_path / "tune.json").write_text("{not json")
    assert sizing.Probe(V, TrainConfig(time=300), cache=cache, windows=fake_windows(calls))(Shape(2, 128, 32)) > 0


def test_a_figure_from_a_busy_moment_is_used_but_never_cached(tmp_path):
    cache = TuneCache(tmp_path / "tune.json")
    probe = sizing.Probe(V, TrainConfig(time=300), cache=cache, windows=fake_windows([], noisy=True))
    assert probe(Shape(2, 128, 32)) > 0  # this run uses it ...
    assert not (tmp_path / "tune.json").exists()  # ... the next one measures again


def test_a_cached_figure_that_the_machine_no_longer_runs_at_is_measured_again(tmp_path):
    """The poisoned cache: a figure timed while another process held a core (751 chars/s), used on an idle machine
    that trains at 47,000: its re-timing disagrees, so every figure of the probe is measured afresh, and cached."""
    cache = TuneCache(tmp_path / "tune.json")
    sizing.Probe(V, TrainConfig(time=300), cache=cache, windows=fake_windows([], rates=751.0))(Shape(2, 128, 32))
    calls = []
    probe = sizing.Probe(V, TrainConfig(time=300), cache=cache, windows=fake_windows(calls, rates=47_000.0))
    assert probe(Shape(2, 128, 32)) == pytest.approx(47_000 * 1.01) and probe(Shape(2, 256, 64)) > 0
    assert [c[2] for c in calls] == [1, sizing.PROBE_ROUNDS, sizing.PROBE_ROUNDS]  # the check, then two measurements
    assert sizing.Probe(V, TrainConfig(time=300), cache=cache, windows=fake_windows([], rates=47_000.0))(
        Shape(2, 128, 32)) == pytest.approx(47_000 * 1.01)


def test_a_setting_slow_in_the_cached_moment_is_timed_again(tmp_path, monkeypatch):
    """Cached while another process held a core: one thread won (two ran 0.5x) at 36k chars/s. Idle, one thread
    still runs 42k (within NOISY of the cached figure) but two run 64k: the re-check times both and measures again."""
    import charrnn.runtime.threads

    monkeypatch.setattr(charrnn.runtime.threads, "default_threads", lambda: 2)  # a two-core machine
    cache = TuneCache(tmp_path / "tune.json")
    train = TrainConfig(time=300, precision="fp32")
    busy = {("fp32", 1): 36_000.0, ("fp32", 2): 18_000.0}
    idle = {("fp32", 1): 42_000.0, ("fp32", 2): 64_000.0}

    def windows(moment):
        return lambda mcfg, train, device, settings, rounds=2: {s: [moment[s]] * rounds for s in settings}

    assert sizing.Probe(V, train, cache=cache, windows=windows(busy))(Shape(2, 128, 32)) == 36_000.0
    assert sizing.Probe(V, train, cache=cache, windows=windows(idle))(Shape(2, 128, 32)) == 64_000.0


def test_the_probe_spends_at_most_its_share_of_the_budget(tmp_path):
    now = [0.0]

    def slow_windows(mcfg, train, device, settings, rounds=2):
        now[0] += 1.0  # every shape takes a second to time
        return {s: [50_000.0, 50_000.0] for s in settings}

    probe = sizing.Probe(V, TrainConfig(time=20), cache=TuneCache(tmp_path / "t.json"), windows=slow_windows,
                         clock=lambda: now[0])  # 5% of 20 s: one second
    s = choose_size(5_000_000, TrainConfig(time=20), V, probe)
    assert s.shape == LADDER[0] and now[0] <= 2.0  # the first shape is always timed, then the time is up


def test_the_run_corrects_a_figure_its_own_steps_disagree_with(tmp_path):
    cache = TuneCache(tmp_path / "tune.json")
    probe = sizing.Probe(V, TrainConfig(time=30), cache=cache, windows=fake_windows([], rates=900.0))
    shape = Shape(2, 128, 32)
    probe(shape)
    assert probe.correct(shape, 1000.0, ("fp32", 2)) is None  # within the noise
    message = probe.correct(shape, 47_000.0, ("fp32", 1))
    assert "47k chars/s" in message and "52× the ~909 it was sized for" in message
    assert cache.get(probe.key(shape))["rate"] == 47_000.0


def test_a_run_checks_its_own_speed_once_its_steps_have_settled():
    from charrnn.training.speed import EVIDENCE_STEPS, SpeedPlan

    got = []
    plan = SpeedPlan(Shape(1, 16, 8).config(V), TrainConfig(precision="fp32", threads=1), torch.device("cpu"), False)
    plan.expect(lambda rate, setting: got.append((rate, setting)))
    for _ in range(EVIDENCE_STEPS + 5):
        plan.step(lambda: {"chars": 100})
    assert len(got) == 1 and got[0][0] > 0 and got[0][1] == ("fp32", 1)


def test_timed_windows_times_a_real_step():
    rates = sizing.timed_windows(Shape(1, 16, 8).config(V), TrainConfig(batch_size=2, seq_len=8), "cpu",
                                 [("fp32", 1)], rounds=1)
    assert rates[("fp32", 1)][0] > 0


def _run(given=(), preset=None, **train) -> RunConfig:
    """A run configuration as `charrnn train` makes it, the user having set `given` (or a preset)."""
    return RunConfig(Source(), ModelConfig(vocab_size=1), TrainConfig(**{"steps": 100, **train}), preset=preset,
                     given=frozenset(given))


def test_what_the_user_named_is_never_sized():
    assert right_size(_run(preset="small"), 10_000, V)[1] is None
    assert right_size(_run(given=sizing.SHAPE_KEYS), 10_000, V)[1] is None
    sized, s, _ = right_size(_run(given={"hidden"}), 10_000, V)
    assert s is not None and sized.model.hidden == ModelConfig.hidden  # theirs (the default here) is kept
    assert (sized.model.layers, sized.model.embed, sized.model.dropout) == (s.shape.layers, s.shape.embed, s.dropout)
    assert sized.train.lr == TrainConfig.lr and sized.train.min_lr_ratio == TrainConfig.min_lr_ratio  # the chosen
    # shape's lr and floor are not forced on a shape the user named
    sized, s, _ = right_size(_run(given={"dropout"}), 10_000, V)
    assert sized.train.lr == s.shape.lr and sized.train.min_lr_ratio == sizing.DECAY_TO
    assert sized.model.dropout == ModelConfig.dropout
    sized, s, _ = right_size(_run(given={"lr"}, lr=1e-3), 10_000, V)
    assert sized.train.lr == 1e-3  # --lr wins
    sized, s, _ = right_size(_run(given={"min_lr_ratio"}, min_lr_ratio=0.5), 10_000, V)
    assert sized.train.min_lr_ratio == 0.5  # and so does a --config file's floor


def test_a_time_budget_spends_about_a_twentieth_of_itself_validating():
    train = TrainConfig(time=300)  # Linux at 300 s: 250k held-out characters read every 200 steps took 11% of it
    s = choose_size(7_200_000, train, V, flops_rate(37_000))
    every = sizing.eval_spacing(s, train, 250_000)
    assert every > train.eval_every and every % sizing.EVAL_ROUND == 0
    steps = s.chars_seen / (train.batch_size * train.seq_len)
    seconds = steps // every * 250_000 / (sizing.EVAL_SPEEDUP * s.rate)  # what its validations cost
    assert 0.6 * sizing.EVAL_SHARE * train.time < seconds <= sizing.EVAL_SHARE * train.time
    assert sizing.eval_spacing(s, train, 10_000) is None  # cheap enough every 200 steps: unchanged
    by_steps = TrainConfig(steps=5_000)  # a step budget loses no training to its validations
    assert sizing.eval_spacing(choose_size(7_200_000, by_steps, V), by_steps, 250_000) is None
    short = TrainConfig(time=20)  # however dear, a run still validates MIN_EVALS times or so
    s = choose_size(7_200_000, short, V, flops_rate(37_000))
    every = sizing.eval_spacing(s, short, 5_000_000)
    assert s.chars_seen / (short.batch_size * short.seq_len) / every > sizing.MIN_EVALS - 1
    assert f"validating every {every} steps" in replace(s, eval_every=every).describe()
    assert "validating" not in s.describe()


def test_validations_are_spaced_for_the_chosen_shape_unless_the_user_set_them(monkeypatch):
    monkeypatch.setattr(sizing, "Probe", lambda *a, **k: flops_rate(37_000))
    sized, s, _ = right_size(_run(steps=None, time=300), 8_000_000, V)
    assert sized.train.eval_every == s.eval_every > TrainConfig().eval_every
    for given in ({"eval_every"}, {"hidden"}):  # theirs; or a shape they named, whose speed was not measured
        sized, s, _ = right_size(_run(given=given, steps=None, time=300), 8_000_000, V)
        assert sized.train.eval_every == TrainConfig().eval_every and s.eval_every is None


def test_a_small_text_read_many_times_is_validated_each_pass_and_stops_by_itself(monkeypatch):
    """40 KB of names at 60 s: 2×128 reads them ~250 times; today's run found its best at step 200 and went on."""
    monkeypatch.setattr(sizing, "Probe", lambda *a, **k: flops_rate(37_000))
    sized, s, _ = right_size(_run(steps=None, time=60), 40_000, V)
    per_pass = 36_000 / (sized.train.batch_size * sized.train.seq_len)
    assert s.epochs >= sizing.MANY_PASSES and sized.train.patience == sizing.PATIENCE
    assert per_pass <= sized.train.eval_every < per_pass + 10  # a validation each pass over the text
    assert "stopping once 5 validations in a row find no new best" in s.describe()
    sized, s, _ = right_size(_run(given={"patience"}, steps=None, time=60, patience=0), 40_000, V)
    assert sized.train.patience == 0  # theirs wins
    sized, s, _ = right_size(_run(steps=None, time=60), 8_000_000, V)
    assert sized.train.patience == 0 and s.patience is None  # a big text is not learnt by heart in a minute


def test_each_shape_comes_with_its_learning_rate_and_the_line_says_it():
    lrs = {shape.hidden: shape.lr for shape in sizing.LADDER}
    assert lrs[256] > lrs[384] == TrainConfig().lr  # the sweep: 2x256 best at 2e-2, 2x384 at 6e-3
    s = choose_size(1_000_000, TrainConfig(time=300), V, flops_rate(40_000))
    assert s.settings()["lr"] == s.shape.lr and f"lr {s.shape.lr:g} decaying to" in s.describe()
    assert "lr 0.001 decaying to 1e-05 —" in s.describe(lr=1e-3)  # the lr the run ends up with (--lr)
    assert "decaying to 5e-05 —" in s.describe(lr=1e-3, floor=0.05)  # ... and its floor


def test_the_chosen_schedule_decays_lower_than_a_fixed_shapes():
    s = choose_size(1_000_000, TrainConfig(time=300), V, flops_rate(40_000))
    assert s.settings()["min_lr_ratio"] == sizing.DECAY_TO < TrainConfig().min_lr_ratio


runner = CliRunner()


def test_train_without_shape_flags_says_what_it_chose_and_records_it(in_tmp):
    (in_tmp / "poem.txt").write_text(TINY_TEXT)
    r = runner.invoke(app, ["train", "poem.txt", "--steps", "3", "--threads", "1", "-o", "run", "--sample-every", "0"])
    assert r.exit_code == 0, r.stderr
    first = next(line for line in r.stderr.splitlines() if line.strip())
    assert first.startswith("model: LSTM ") and "passes over the text" in first
    cfg = yaml.safe_load((in_tmp / "run" / "config.yaml").read_text())
    assert f"{cfg['layers']}×{cfg['hidden']} (embed {cfg['embed']})" in first  # the record matches the line
    assert f"lr {cfg['lr']:g} decaying to {cfg['lr'] * cfg['min_lr_ratio']:.2g} —" in first
    assert cfg["min_lr_ratio"] == sizing.DECAY_TO  # the schedule is part of the choice, and of the record
    again = runner.invoke(app, ["train", "--config", "run/config.yaml", "-o", "run2", "--threads", "1"])
    assert again.exit_code == 0, again.stderr
    assert "model: LSTM" not in again.stderr  # a recorded configuration is repeated as it is
    assert yaml.safe_load((in_tmp / "run2" / "config.yaml").read_text())["hidden"] == cfg["hidden"]


def test_a_shape_flag_overrides_its_part_of_the_choice(in_tmp):
    (in_tmp / "poem.txt").write_text(TINY_TEXT)
    r = runner.invoke(app, ["train", "poem.txt", "--steps", "2", "--hidden", "24", "--threads", "1", "-o", "run",
                            "--sample-every", "0"])
    assert r.exit_code == 0, r.stderr
    assert "yours: --hidden" in r.stderr
    recorded = yaml.safe_load((in_tmp / "run" / "config.yaml").read_text())
    assert recorded["hidden"] == 24 and recorded["lr"] == TrainConfig().lr  # no lr of a shape it is not
    assert recorded["min_lr_ratio"] == TrainConfig().min_lr_ratio  # nor its floor
    preset = runner.invoke(app, ["train", "poem.txt", "--preset", "tiny", "--steps", "2", "-o", "p", "--threads", "1"])
    assert preset.exit_code == 0 and "model: LSTM" not in preset.stderr
    assert json.loads(json.dumps(yaml.safe_load((in_tmp / "p" / "config.yaml").read_text())))["hidden"] == 64
