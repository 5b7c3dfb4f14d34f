"""Live samples while training: shown to the user, invisible to the training itself."""

from __future__ import annotations

import torch
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn import Reporter, TrainConfig, train_on_text

from .conftest import TINY_TEXT


class Samples(Reporter):
    def __init__(self):
        self.records = []

    def on_sample(self, record):
        self.records.append(record)


def tiny(sample_every: int, reporter=None):
    cfg = TrainConfig(steps=20, batch_size=4, seq_len=16, lr=1e-2, eval_every=10, threads=1, precision="fp32",
                      sample_every=sample_every, sample_length=30, sample_prime="the ")
    trainer, result = train_on_text(TINY_TEXT, {"hidden": 16, "embed": 8, "dropout": 0.1, "layers": 2}, cfg,
                                    reporter=reporter)
    return trainer, result


def test_live_samples_do_not_change_training():
    reporter = Samples()
    with_samples, r1 = tiny(5, reporter)
    without, r2 = tiny(0)
    assert [r["step"] for r in reporter.records] == [5, 10, 15, 20]
    assert all(len(r["sample"]) == 30 for r in reporter.records)
    losses = lambda r: [h.get("loss", h.get("val_loss")) for h in r.history]  # noqa: E731
    assert losses(r1) == losses(r2)
    a, b = with_samples.model.state_dict(), without.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_samples_go_to_the_log_when_not_a_terminal(in_tmp):
    result = CliRunner().invoke(app, ["train", "-", "--steps", "8", "--hidden", "16", "--embed", "8", "-b", "4",
                                      "-t", "16", "--threads", "1", "--sample-every", "4"], input=TINY_TEXT)
    assert result.exit_code == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if " sample " in line]
    assert [line.split()[1] for line in lines] == ["4", "8"]
    assert all(line.rstrip().endswith('"') for line in lines)  # one line each: newlines are escaped
    assert result.stdout == ""


def test_progress_bar_shows_the_validation_figure_as_soon_as_it_is_known():
    import io

    from rich.console import Console

    from charrnn.cli.progress import ConsoleReporter

    reporter = ConsoleReporter(Console(file=io.StringIO(), force_terminal=True, width=120), live=True)
    trainer, _ = train_on_text(TINY_TEXT, {"layers": 1, "hidden": 16, "embed": 8},
                               TrainConfig(steps=3, batch_size=4, seq_len=16, eval_every=2, log_every=100, sample_every=0, threads=1),
                               reporter=reporter)
    shown = reporter.progress.tasks[0].fields["val"]
    assert shown == f"{trainer.history[-1]['val_bpc']:.3f}"  # the last record is an eval, no log came after it


def test_the_progress_bar_starts_at_the_resumed_step_and_shows_the_average_rate(tmp_path):
    import io

    from rich.console import Console

    from charrnn.cli.progress import REFRESH_SECONDS, ConsoleReporter
    from charrnn.model.rnn import ModelConfig
    from charrnn.training.trainer import Trainer
    from charrnn.text.vocab import Vocab

    vocab = Vocab.from_text(TINY_TEXT)
    ids = vocab.encode_array(TINY_TEXT)
    trainer = Trainer(ModelConfig(vocab_size=len(vocab), hidden=16, embed=8),
                      TrainConfig(batch_size=4, seq_len=16, threads=1, precision="fp32"), vocab, ids, ids[:200])
    trainer.step = 140  # as after a resume
    clock = iter([100.0, 100.0 + REFRESH_SECONDS])  # the second look comes once the refresh interval has passed
    reporter = ConsoleReporter(Console(file=io.StringIO(), force_terminal=True, width=120), live=True,
                               now=lambda: next(clock))
    reporter.on_start(trainer)
    assert reporter.fields["step"] == "step 140"
    trainer.step, trainer.clock.train_seconds = 141, 0.5
    trainer.clock.count(chars=64, tokens=64)  # one slow step: 128 chars/s
    reporter.on_step(trainer)
    assert reporter.fields["step"] == "step 141" and reporter.fields["rate"] == "128"
    reporter.progress.stop()
