"""Absurd numbers (issue 19, attack 8): every number is range-checked where it enters (flags, YAML, the
Python API), what cannot fit in memory is refused before it is built, and non-finite weights are
never saved as good."""

from __future__ import annotations

import math

import pytest
import torch
from typer.testing import CliRunner

from charrnn.training.checkpoint import load_checkpoint
from charrnn.cli import app
from charrnn.model.config import ModelConfig
from charrnn.training.config import TrainConfig
from charrnn.util.errors import UsageError
from charrnn.runtime.threads import default_threads
from charrnn import Trainer, train_on_text

from .conftest import TINY_TEXT

runner = CliRunner()
TINY = ["--hidden", "16", "--embed", "8", "-b", "4", "-t", "16", "--precision", "fp32", "--device", "cpu",
        "--sample-every", "0"]
HUGE = "99999999999999999999"


def usage_error(result, *words: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.stderr)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.stderr and "error:" in result.stderr
    for w in words:
        assert w in result.stderr, result.stderr


@pytest.mark.parametrize("args, words", [
    (["--threads", "100000"], ["--threads 100000 is more than the"]),
    (["--threads", HUGE], ["--threads"]),
    (["--seed", HUGE], ["--seed must be an integer from 0 to 2**64 - 1"]),
    (["--epochs", "inf"], ["--epochs must be a positive number"]),
    (["--time", "nan"], ["--time must be a positive number"]),
    (["--lr", "inf"], ["--lr must be a number > 0 and <= 10"]),
    (["--lr", "1e30"], ["--lr must be a number > 0 and <= 10"]),
    (["--eval-chars", "-1"], ["--eval-chars must be an integer >= 0"]),
    (["--weight-decay", "-1"], ["--weight-decay must be a number >= 0"]),
    (["--layers", "100000000"], ["--layers must be an integer from 1 to 1,000"]),
    (["--embed", "100000000"], ["--embed must be an integer from 1 to"]),
    (["--hidden", "100000"], ["needs about", "of memory, more than the", "available"]),
    (["--layers", "1000", "--hidden", "4096"], ["needs about", "available"]),
], ids=lambda x: " ".join(x) if isinstance(x, list) and x and x[0].startswith("-") else None)
def test_train_refuses_absurd_numbers_before_building_anything(in_tmp, args, words):
    (in_tmp / "c.txt").write_text(TINY_TEXT)
    flags = {**dict(zip(TINY[::2], TINY[1::2])), "--threads": "1", **dict(zip(args[::2], args[1::2]))}
    argv = ["train", "c.txt", "--steps", "2", *[x for kv in flags.items() for x in kv]]
    usage_error(runner.invoke(app, argv), *words)
    assert not (in_tmp / "checkpoints").exists()  # refused before any folder was made


def test_yaml_numbers_are_checked_too(in_tmp):
    (in_tmp / "c.txt").write_text(TINY_TEXT)
    (in_tmp / "bad.yaml").write_text("corpus: c.txt\nlog_every: 0\n")
    usage_error(runner.invoke(app, ["train", "--config", "bad.yaml", *TINY, "--threads", "1"]), "log_every must be an integer >= 1")
    (in_tmp / "bad.yaml").write_text("corpus: c.txt\nsample_temp: 1e300\nsample_every: 1\n")  # not at step 1: now
    usage_error(runner.invoke(app, ["train", "--config", "bad.yaml", *TINY, "--threads", "1"]), "sample_temp must be")
    (in_tmp / "bad.yaml").write_text("corpus: c.txt\nseed: 99999999999999999999\n")
    usage_error(runner.invoke(app, ["train", "--config", "bad.yaml", *TINY, "--threads", "1"]), "--seed")


def test_the_python_api_checks_the_same_ranges():
    for bad in (dict(lr=math.inf), dict(epochs=math.inf), dict(log_every=0), dict(lr="0.1"), dict(steps=True),
                dict(weight_decay=-1.0), dict(eval_chars=-1), dict(seed=2**70), dict(threads=10**6)):
        with pytest.raises(UsageError):
            TrainConfig(**bad)
    for bad in (dict(hidden=10**9), dict(layers=10**8), dict(hidden=16.5), dict(cell=["lstm"]), dict(vocab_size=0)):
        with pytest.raises(ValueError):
            ModelConfig(**{"vocab_size": 30, **bad})
    with pytest.raises(UsageError, match="memory"):
        train_on_text(TINY_TEXT, {"hidden": 200_000, "embed": 8, "layers": 1}, TrainConfig(steps=1, threads=1))


@pytest.mark.parametrize("argv, words", [
    (["sample", "--temp", "nan"], ["--temp must be a number from 0 to 100 (0 = greedy)"]),
    (["sample", "--temp", "inf"], ["--temp must be a number from 0 to 100 (0 = greedy)"]),
    (["sample", "--temp", "1e39"], ["--temp must be a number from 0 to 100 (0 = greedy)"]),  # overflowed float32
    (["chat", "--temp", "1e308"], ["--temp must be a number from 0 to 100 (0 = greedy)"]),
    (["chat", "--top-p", "2"], ["--top-p must be a number > 0 and <= 1"]),
    (["sample", "--seed", HUGE], ["--seed"]),
    (["sample", "--threads", "100000"], ["is more than the"]),
    (["sample", "-N", "10000000000"], ["--num-samples 10,000,000,000", "memory"]),  # ~57 TB: more than any machine
    (["beam", "--width", "100000000"], ["--width 100,000,000", "memory"]),
    (["beam", "--length-penalty", "nan"], ["--length-penalty must be a number"]),
    (["beam", "--length-penalty", "300"], ["--length-penalty must be a number from -10 to 10"]),  # overflowed
    (["beam", "--length-penalty", "-300"], ["--length-penalty must be a number from -10 to 10"]),  # divided by 0
    (["beam", "-n", "99999999999"], ["--width 5 with --length 99,999,999,999", "lower --length or --width"]),
    (["beam", "--top", "0"], ["--top must be an integer >= 1"]),
    (["beam", "--threads", "100000"], ["is more than the"]),
    (["eval", "TEXT", "--threads", "100000"], ["is more than the"]),
    (["score", "TEXT", "--threads", HUGE], ["is more than the"]),
], ids=lambda x: " ".join(x) if isinstance(x, list) else None)
def test_inference_commands_refuse_absurd_numbers(tmp_path, tiny_run, argv, words):
    text = tmp_path / "t.txt"
    text.write_text(TINY_TEXT)
    argv = [argv[0], str(tiny_run), *[str(text) if a == "TEXT" else a for a in argv[1:]]]
    result = runner.invoke(app, argv)
    usage_error(result, *words)
    assert result.stdout == ""


def test_threads_up_to_the_cores_are_fine(tiny_run):
    result = runner.invoke(app, ["sample", str(tiny_run), "-n", "5", "--threads", str(default_threads())])
    assert result.exit_code == 0, result.stderr


# ---- non-finite weights are never saved as good -----------------------------------------------------


def poison_after(monkeypatch, bad_step: int) -> None:
    """From `bad_step` on, the weights turn NaN after the optimizer's update (what --lr inf did)."""
    original = Trainer.train_step

    def step(self):
        out = original(self)
        if self.step >= bad_step:
            with torch.no_grad():
                self.model.head.weight.fill_(float("nan"))
        return out

    monkeypatch.setattr(Trainer, "train_step", step)


def test_diverged_weights_are_not_saved_and_the_message_says_what_was(tmp_path, monkeypatch):
    poison_after(monkeypatch, 3)
    cfg = TrainConfig(steps=20, batch_size=4, seq_len=16, eval_every=2, threads=1, precision="fp32", device="cpu",
                      sample_every=0)
    trainer, result = train_on_text(TINY_TEXT, {"hidden": 16, "embed": 8}, cfg, tmp_path / "run")
    assert result.stopped_by == "nan"
    assert "not saved" in result.error and "last.pt holds step 2" in result.error
    for name in ("best.pt", "last.pt"):
        ckpt = load_checkpoint(tmp_path / "run" / name)  # loads: its weights are finite
        assert ckpt["step"] == 2


def test_a_short_run_that_diverges_exits_1_and_leaves_no_nan_best(in_tmp, monkeypatch):
    poison_after(monkeypatch, 1)
    (in_tmp / "c.txt").write_text(TINY_TEXT)
    result = runner.invoke(app, ["train", "c.txt", "-o", "run", "--steps", "3", "--threads", "1", *TINY])
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert "nothing was saved in this session" in result.stderr
    assert not (in_tmp / "run" / "best.pt").exists() and not (in_tmp / "run" / "last.pt").exists()
