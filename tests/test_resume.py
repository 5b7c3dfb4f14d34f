"""Exact resume: N steps straight == N/2 steps, stop, resume, N/2 steps (bit for bit, on the CPU)."""

from __future__ import annotations

import time

import pytest
import torch

from charrnn.training.checkpoint import load_checkpoint
from charrnn.model.rnn import ModelConfig
from charrnn.training.trainer import Trainer, TrainConfig
from charrnn.text.vocab import Vocab

from .conftest import TINY_TEXT

TEXT = TINY_TEXT + "Pack my box with five dozen liquor jugs!\n" * 20


def make_trainer(out, **overrides) -> Trainer:
    vocab = Vocab.from_text(TEXT)
    tokens = vocab.encode_array(TEXT)
    settings = dict(steps=24, batch_size=4, seq_len=16, lr=1e-2, warmup=5, eval_every=5, log_every=3,
                    threads=1, precision="fp32", device="cpu", seed=7)
    cfg = TrainConfig(**{**settings, **overrides})
    # dropout makes the run depend on the torch RNG, which must be restored too
    mcfg = ModelConfig(vocab_size=len(vocab), cell="lstm", layers=2, hidden=24, embed=8, dropout=0.2)
    n_val = len(tokens) // 10
    return Trainer(mcfg, cfg, vocab, tokens[:-n_val], tokens[-n_val:], out)


def tokens_split():
    vocab = Vocab.from_text(TEXT)
    tokens = vocab.encode_array(TEXT)
    n_val = len(tokens) // 10
    return tokens[:-n_val], tokens[-n_val:]


def assert_same_tensors(a, b, where=""):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same_tensors(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.mark.parametrize("stop_at, average", [(12, 0.0), (13, 0.0), (13, 0.9)])  # on an eval/save step, between
def test_resume_is_bit_identical_to_a_straight_run(tmp_path, stop_at, average):  # two; averaging the weights
    straight = make_trainer(tmp_path / "a", average=average, average_from=0.25)
    straight.run()

    first = make_trainer(tmp_path / "b", average=average, average_from=0.25)
    paused = first.run(until_step=stop_at)
    assert paused.stopped_by == "until_step" and first.step == stop_at
    del first
    torch.manual_seed(12345)  # whatever happened to the global RNG since must not matter

    train, val = tokens_split()
    resumed = Trainer.resume(tmp_path / "b" / "last.pt", train, val)
    assert resumed.out_dir == tmp_path / "b" and resumed.step == stop_at
    assert resumed.total_steps == 24  # the budget, and so the LR schedule, came from the checkpoint
    result = resumed.run()
    assert result.stopped_by == "steps" and resumed.step == 24

    assert_same_tensors(straight.model.state_dict(), resumed.model.state_dict(), "model")
    assert_same_tensors(straight.optimizer.state_dict(), resumed.optimizer.state_dict(), "optimizer")
    assert_same_tensors(straight.state, resumed.state, "carried state")
    assert_same_tensors(straight.average, resumed.average, "the weights' average")
    assert straight.batcher.cursor == resumed.batcher.cursor and straight.epoch == resumed.epoch
    val_curve = lambda t: [(r["step"], r["val_bpc"]) for r in t.history if "val_bpc" in r]  # noqa: E731
    loss_curve = lambda t: [(r["step"], r["loss"], r["lr"]) for r in t.history if "loss" in r]  # noqa: E731
    assert val_curve(straight) == val_curve(resumed) and loss_curve(straight) == loss_curve(resumed)
    # and what is on disk says the same
    assert_same_tensors(load_checkpoint(tmp_path / "a" / "last.pt")["model"],
                        load_checkpoint(tmp_path / "b" / "last.pt")["model"], "last.pt")


def test_saving_does_not_perturb_training(tmp_path):
    """Evaluating and saving every step gives the same weights as never saving."""
    quiet = make_trainer(None, eval_every=1000)
    quiet.run()
    busy = make_trainer(tmp_path / "busy", eval_every=1, save_every=2, keep=2)
    busy.run()
    assert_same_tensors(quiet.model.state_dict(), busy.model.state_dict(), "model")


def test_resume_can_extend_the_budget_but_not_the_layout(tmp_path):
    make_trainer(tmp_path / "r").run(until_step=6)
    train, val = tokens_split()
    longer = Trainer.resume(tmp_path / "r" / "last.pt", train, val, overrides={"steps": 30})
    assert longer.total_steps == 30 and longer.step == 6
    from charrnn.util.errors import UsageError

    with pytest.raises(UsageError, match="batch_size cannot change when resuming"):
        Trainer.resume(tmp_path / "r" / "last.pt", train, val, overrides={"batch_size": 8})


def lrs(trainer) -> dict[int, float]:
    return {r["step"]: r["lr"] for r in trainer.history if "lr" in r}


@pytest.mark.parametrize("paused_at", [8, 24])  # mid-run, and after the whole budget was spent
def test_a_bigger_budget_goes_on_from_the_current_learning_rate_down_to_the_floor(tmp_path, paused_at):
    first = make_trainer(tmp_path / "r", log_every=1)
    first.run(until_step=paused_at if paused_at < 24 else None)
    before = lrs(first)
    train, val = tokens_split()
    longer = Trainer.resume(tmp_path / "r" / "last.pt", train, val, overrides={"steps": 40, "log_every": 1})
    longer.run()
    after = lrs(longer)
    last_old, first_new = before[paused_at], after[paused_at + 1]
    assert first_new <= last_old * 1.0001  # no jump up: the schedule goes on from where it was
    assert first_new >= last_old * 0.8
    floor = 1e-2 * TrainConfig().min_lr_ratio
    assert after[40] == pytest.approx(floor, rel=0.05)  # and ends at the floor over the new budget
    assert all(after[s + 1] <= after[s] * 1.0001 for s in range(paused_at + 1, 40))
    assert load_checkpoint(tmp_path / "r" / "last.pt")["train_config"]["steps"] == 40


def test_resuming_twice_with_the_same_budget_keeps_the_schedule(tmp_path):
    make_trainer(tmp_path / "r", log_every=1).run(until_step=10)
    train, val = tokens_split()
    resumed = Trainer.resume(tmp_path / "r" / "last.pt", train, val, overrides={"log_every": 1})
    resumed.run()
    straight = make_trainer(tmp_path / "s", log_every=1)
    straight.run()
    assert lrs(resumed) == lrs(straight)


def test_ctrl_c_before_the_first_validation_still_leaves_a_best_checkpoint(tmp_path):
    import os
    import signal

    from charrnn.training.trainer import Reporter

    class InterruptAt3(Reporter):
        def on_step(self, trainer):
            if trainer.step == 3:
                os.kill(os.getpid(), signal.SIGINT)

    trainer = make_trainer(tmp_path / "r", eval_every=1000)
    trainer.reporter = InterruptAt3()
    result = trainer.run()
    assert result.stopped_by == "SIGINT" and result.steps == 3
    assert result.best_val_bpc is not None
    assert (tmp_path / "r" / "best.pt").is_file() and (tmp_path / "r" / "last.pt").is_file()
    assert load_checkpoint(tmp_path / "r" / "best.pt")["step"] == 3


def test_a_time_budget_keeps_back_the_final_validation():
    from charrnn.training.budget import Budget

    b = Budget(steps=None, epochs=None, seconds=20, steps_per_epoch=100)
    assert b.spent(10, elapsed=16.0) is None
    assert b.spent(10, elapsed=16.0, reserve=5.0) == "time"  # 16 s + a 5 s validation would overrun 20 s
    trainer = make_trainer(None, steps=None, time=20)
    trainer.history = [{"step": 5, "val_bpc": 3.0, "eval_seconds": 1.5}]
    assert trainer.final_eval_reserve() == 1.5  # the last validation's measured duration


def test_the_final_validation_counts_in_the_runs_seconds(tmp_path):
    """`done: ... in Ns` includes the validation that ends the run."""
    trainer = make_trainer(tmp_path / "r", steps=3, eval_every=1000)
    validate = trainer.validate

    def slow_validate():
        time.sleep(0.4)
        return validate()

    trainer.validate = slow_validate
    result = trainer.run()
    assert [r["step"] for r in trainer.history if "val_bpc" in r] == [3]  # one validation: the final one
    assert result.seconds >= 0.4


def test_patience_ends_the_run_and_best_pt_holds_the_minimum(tmp_path):
    trainer = make_trainer(tmp_path / "r", eval_every=2, patience=2, steps=40)
    figures = iter([2.0, 1.5, 1.6, 1.7, 1.8, 1.9])
    trainer.validate = lambda: next(figures) * 0.6931471805599453  # nats per char
    result = trainer.run()
    assert result.stopped_by == "patience" and result.steps == 8  # evals at 2, 4 (best), 6, 8: two without a gain
    assert result.best_val_bpc == pytest.approx(1.5)
    assert load_checkpoint(tmp_path / "r" / "best.pt")["step"] == 4


def test_an_average_of_the_weights_validates_and_is_what_best_pt_keeps(tmp_path):
    trainer = make_trainer(tmp_path / "r", average=0.9, average_from=0.5, eval_every=24)  # one validation, at the end
    trainer.run()
    best, last = load_checkpoint(tmp_path / "r" / "best.pt"), load_checkpoint(tmp_path / "r" / "last.pt")
    own = {k: v.detach() for k, v in trainer.model.named_parameters()}
    assert_same_tensors(last["model"], own, "last.pt: the weights themselves")
    assert_same_tensors(best["model"], dict(zip(own, trainer.average)), "best.pt: their average")
    assert not any(torch.equal(best["model"][k], own[k]) for k in own if own[k].dim() > 1)
    with trainer.averaged():  # validation reads the average; the model's own weights come back after
        assert trainer.validate() == pytest.approx(trainer.best_val_bpc * 0.6931471805599453, rel=1e-6)
    assert_same_tensors({k: v.detach() for k, v in trainer.model.named_parameters()}, own, "restored")
