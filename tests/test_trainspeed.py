"""A training run chooses its CPU precision and threads by timing its own first steps (no timings asserted)."""

from __future__ import annotations

import torch

from charrnn.runtime.cache import TuneCache
from charrnn.model.config import ModelConfig
from charrnn.training.config import TrainConfig
from charrnn.runtime.threads import default_threads
from charrnn.runtime.device import resolve_precision
from charrnn import Reporter, train_on_text
from charrnn.training.speed import make_tuner, train_key
from tests.conftest import TINY_TEXT

MODEL = {"hidden": 16, "embed": 8}


class Collect(Reporter):
    def __init__(self):
        self.tune: list[str] = []

    def on_tune(self, message: str) -> None:
        self.tune.append(message)


def test_auto_times_its_first_steps_and_remembers_the_precision():
    cfg = TrainConfig(steps=70, batch_size=4, seq_len=16, eval_every=70, sample_every=0, device="cpu")
    before = torch.get_num_threads()
    reporter = Collect()
    trainer, result = train_on_text(TINY_TEXT, MODEL, cfg, reporter=reporter)
    assert result.steps == 70 and torch.get_num_threads() == before  # the run's thread count is put back
    chosen = [m for m in reporter.tune if m.startswith("precision: ")]
    assert len(chosen) == 1 and "threads: " in chosen[0]
    assert any(m.startswith("validation precision: ") for m in reporter.tune)
    verdicts = trainer.speed.tuner.precision_verdicts
    assert verdicts  # fp32 and bf16 were compared at some thread count
    for t, verdict in verdicts.items():  # a firm verdict is cached (one cut short by a slow step is not)
        assert (TuneCache().get(train_key(trainer.mcfg, cfg, t)) is not None) == verdict.firm
    counts = sorted({1, default_threads()})
    for t in counts:
        TuneCache().put(train_key(trainer.mcfg, cfg, t), {"choice": "fp32", "rates": {"fp32": 2.0, "bf16": 1.0}})
    again = make_tuner(trainer.mcfg, cfg, torch.device("cpu"), distributed=False)
    if len(counts) > 1:  # with every verdict cached, the next run only compares thread counts
        assert again.candidates == {t: ["fp32"] for t in counts}
        assert all(v.cached for v in again.precision_verdicts.values())
    else:
        assert again is None


def test_a_forced_precision_leaves_the_cached_verdict_alone():
    """`--precision fp32` compares nothing: the verdict an auto run measured stays for the next auto run."""
    cfg = TrainConfig(steps=40, batch_size=4, seq_len=16, eval_every=40, sample_every=0, device="cpu",
                      precision="fp32", threads=0)
    mcfg = ModelConfig(vocab_size=len(set(TINY_TEXT)), **MODEL)
    auto = TrainConfig(**{**cfg.to_dict(), "precision": "auto"})
    for t in sorted({1, default_threads()}):
        TuneCache().put(train_key(mcfg, auto, t), {"choice": "bf16", "rates": {"fp32": 1.0, "bf16": 2.0}})
    train_on_text(TINY_TEXT, MODEL, cfg)
    for t in sorted({1, default_threads()}):
        assert TuneCache().get(train_key(mcfg, auto, t))["choice"] == "bf16"
    # ... and a later auto run with --threads given, nothing left to time, trains in that verdict, not fp32
    trainer, _ = train_on_text(TINY_TEXT, MODEL, TrainConfig(**{**auto.to_dict(), "threads": 1}))
    assert trainer.speed.tuner is None and trainer.speed.amp_dtype == torch.bfloat16


def test_nothing_is_timed_when_nothing_is_left_to_choose():
    mcfg = ModelConfig(vocab_size=10, **MODEL)
    cpu = torch.device("cpu")
    assert make_tuner(mcfg, TrainConfig(precision="fp32", threads=1), cpu, distributed=False) is None
    assert make_tuner(mcfg, TrainConfig(precision="auto"), cpu, distributed=True) is None  # torchrun keeps fp32
    forced = make_tuner(mcfg, TrainConfig(precision="bf16", threads=0), cpu, distributed=False)
    if default_threads() > 1:  # a forced precision: only the thread count is timed
        assert forced.candidates == {1: ["bf16"], default_threads(): ["bf16"]}
    assert resolve_precision("auto", cpu) is None  # CPU flags alone never pick bf16


def test_a_slow_first_step_does_not_end_a_timed_run():
    """The final validation's reserve comes from recent steps' median: a first step slowed by one-time
    costs, or a 2-thread step timed while another process holds a core, must not stop the run at once."""
    from charrnn.training.trainer import Trainer
    from charrnn.text.vocab import Vocab

    vocab = Vocab.from_text(TINY_TEXT)
    tokens = vocab.encode_array(TINY_TEXT)
    cfg = TrainConfig(time=20, batch_size=4, seq_len=16, precision="fp32", threads=1, device="cpu")
    trainer = Trainer(ModelConfig(vocab_size=len(vocab), **MODEL), cfg, vocab, tokens[:1500], tokens[1500:])
    assert trainer.final_eval_reserve() == 0.0  # nothing measured yet
    def steps(*seconds: float) -> None:  # training steps that took these many seconds, on a fake clock
        times = iter([t for s in seconds for t in (0.0, s)])
        trainer.clock.now = lambda: next(times)
        for _ in seconds:
            with trainer.clock.timed(training=True):
                pass

    steps(30.0)  # one step, all one-time costs: the guess is capped at a quarter of the budget
    assert trainer.final_eval_reserve() == 5.0
    steps(25.0, *[0.002] * 6)  # two very slow steps among fast ones
    assert trainer.final_eval_reserve() < 1.0
