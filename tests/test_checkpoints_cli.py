"""`charrnn checkpoints list/show/prune/export`, and `train --resume / --init-from` from the command line."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml
from typer.testing import CliRunner

from charrnn.training.checkpoint import load_checkpoint, load_model
from charrnn.cli import app
from charrnn.training.start import init_from_checkpoint
from charrnn.generation.sampling import sample_text
from charrnn.training.trainer import TrainConfig

from .conftest import TINY_TEXT

runner = CliRunner()
TINY = ["--hidden", "16", "--embed", "8", "-b", "4", "-t", "16", "--threads", "1", "--precision", "fp32"]


@pytest.fixture
def runs(tmp_path, tiny_run):
    """A folder of runs: two copies of the tiny run (one with snapshots) and a damaged file."""
    root = tmp_path / "checkpoints"
    shutil.copytree(tiny_run, root / "alpha")
    shutil.copytree(tiny_run, root / "beta")
    for step in (10, 20, 30, 40):
        shutil.copy(tiny_run / "last.pt", root / "beta" / f"step-{step:06d}.pt")
    (root / "beta" / ".last.pt.999999999.abc123.tmp").write_bytes(b"half a checkpoint")  # left by a killed pid
    (root / "gamma").mkdir()
    (root / "gamma" / "last.pt").write_bytes(b"garbage")
    return root


def test_list_table_on_stdout(runs):
    result = runner.invoke(app, ["checkpoints", "list", str(runs)])
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    for word in ("run", "step", "val bits/char", "params", "size", "date", "lstm 2x32", "step-000040.pt"):
        assert word in result.stdout
    alpha_best = next(line for line in lines if "alpha" in line and "best.pt" in line)
    assert " 80 " in alpha_best  # the step
    assert "unreadable" in next(line for line in lines if "gamma" in line)
    assert ".tmp" not in result.stdout  # a killed save's temp file is no checkpoint
    # piped: bare columns: the title, the header, then one line per checkpoint: alpha 2, beta 6, gamma 1
    assert not set("┏┃━│└─") & set(result.stdout)
    assert len(lines) == 2 + (2 + 6 + 1) and lines[1].split()[:3] == ["run", "checkpoint", "step"]
    assert alpha_best.split()[:3] == ["alpha", "best.pt", "80"]


def test_list_json(runs):
    result = runner.invoke(app, ["checkpoints", "list", str(runs), "--json"])
    rows = json.loads(result.stdout)
    assert [(r["run"], r["name"]) for r in rows][:3] == [("alpha", "best.pt"), ("alpha", "last.pt"), ("beta", "best.pt")]
    best = rows[0]
    ckpt = load_checkpoint(runs / "alpha" / "best.pt")
    assert best["step"] == ckpt["step"] and best["val_bpc"] == ckpt["metrics"][-1]["val_bpc"]
    assert best["params"] == load_model(runs / "alpha").model.num_params() and best["resumable"]
    assert rows[-1]["run"] == "gamma" and "not a charrnn checkpoint" in rows[-1]["error"]


def test_show(tiny_run):
    result = runner.invoke(app, ["checkpoints", "show", str(tiny_run / "last.pt")])
    assert result.exit_code == 0, result.stderr
    assert "resumable training checkpoint" in result.stdout and "vocabulary (" in result.stdout
    assert "validation history" in result.stdout
    configs = yaml.safe_load(result.stdout.split("\nvocabulary (")[0].split("\n", 2)[2])  # the configs are YAML
    assert configs["model"]["hidden"] == 32 and configs["training"]["batch_size"] == 4
    data = json.loads(runner.invoke(app, ["checkpoints", "show", str(tiny_run), "--json"]).stdout)
    ckpt = load_checkpoint(tiny_run / "best.pt")
    assert data["vocab"] == ckpt["vocab"]["chars"] and data["metrics"] == [r for r in ckpt["metrics"] if "val_bpc" in r]
    assert data["train_config"]["steps"] == 80


def test_show_prints_the_run_config_as_yaml(in_tmp):
    (in_tmp / "c.txt").write_text(TINY_TEXT)
    assert runner.invoke(app, ["train", "c.txt", "--steps", "2", "--hidden", "8", "--embed", "4", "-b", "2", "-t", "8",
                               "--threads", "1", "-o", "run"]).exit_code == 0
    out = runner.invoke(app, ["checkpoints", "show", "run"]).stdout
    assert "{'" not in out  # no Python dict repr
    configs = yaml.safe_load(out.split("\nvocabulary (")[0].split("\n", 2)[2])
    assert configs["model"]["hidden"] == 8 and configs["run"]["sources"] == [str(in_tmp / "c.txt")]
    assert "config" not in configs["run"] and out.count("hidden: 8") == 1  # each setting once


def test_prune_keeps_best_last_and_the_newest_snapshots(runs):
    result = runner.invoke(app, ["checkpoints", "prune", str(runs / "beta"), "--keep", "2", "--dry-run"])
    assert result.exit_code == 0 and "would delete 2 snapshot(s)" in result.stderr
    assert len(list((runs / "beta").glob("step-*.pt"))) == 4
    result = runner.invoke(app, ["checkpoints", "prune", str(runs), "--keep", "2"])
    assert result.exit_code == 0, result.stderr
    assert sorted(f.name for f in (runs / "beta").iterdir()) == [
        "best.pt", "last.pt", "metrics.jsonl", "step-000030.pt", "step-000040.pt"]  # the temp file is gone too
    assert (runs / "alpha" / "best.pt").exists()


def test_export_is_smaller_samples_identically_and_cannot_be_resumed(tmp_path, tiny_run):
    out = tmp_path / "small.pt"
    result = runner.invoke(app, ["checkpoints", "export", str(tiny_run), "-o", str(out)])
    assert result.exit_code == 0, result.stderr
    exported = load_checkpoint(out)
    assert "optimizer" not in exported and "train_config" not in exported and "extra" not in exported
    assert out.stat().st_size < (tiny_run / "best.pt").stat().st_size / 2
    a, b = load_model(tiny_run / "best.pt"), load_model(out)
    assert sample_text(a.model, a.vocab, 60, seed=5) == sample_text(b.model, b.vocab, 60, seed=5)
    again = runner.invoke(app, ["checkpoints", "export", str(tiny_run), "-o", str(out)])
    assert again.exit_code == 1 and "already exists" in again.stderr
    (tmp_path / "c.txt").write_text(TINY_TEXT)
    resumed = runner.invoke(app, ["train", str(tmp_path / "c.txt"), "--resume", str(out)])
    assert resumed.exit_code == 1 and "inference-only" in resumed.stderr and "--init-from" in resumed.stderr
    assert "corpus:" not in resumed.stderr  # refused before the corpus was read (hashed, encoded)
    unread = runner.invoke(app, ["train", str(tmp_path / "nowhere"), "--resume", str(out)])
    assert unread.exit_code == 1 and "inference-only" in unread.stderr


def test_resume_from_the_cli_rereads_the_corpus_and_keeps_counting(in_tmp):
    (in_tmp / "c.txt").write_text(TINY_TEXT)
    first = runner.invoke(app, ["train", "c.txt", "-o", "run", "--steps", "12", "--eval-every", "6",
                                "--save-every", "4", "--keep", "1", *TINY])
    assert first.exit_code == 0, first.stderr
    assert sorted(f.name for f in (in_tmp / "run").glob("*.pt")) == ["best.pt", "last.pt", "step-000012.pt"]
    more = runner.invoke(app, ["train", "--resume", "run", "--steps", "18"])  # no corpus: the run's own
    assert more.exit_code == 0, more.stderr
    assert "resuming run/last.pt at step 12" in more.stderr
    ckpt = load_checkpoint(in_tmp / "run" / "last.pt")
    assert ckpt["step"] == 18 and ckpt["train_config"]["steps"] == 18 and ckpt["train_config"]["seq_len"] == 16
    assert [r["step"] for r in ckpt["metrics"] if "val_bpc" in r] == [6, 12, 18]
    config = yaml.safe_load((in_tmp / "run" / "config.yaml").read_text())
    assert config["steps"] == 18  # the new budget is recorded
    assert "resumed at step 12" in (in_tmp / "run" / "config.yaml").read_text()
    (in_tmp / "other.txt").write_text(TINY_TEXT + "QZ!")
    wrong = runner.invoke(app, ["train", "other.txt", "--resume", "run"])
    assert wrong.exit_code == 1 and "never trained on: '!' 'Q' 'Z'" in wrong.stderr
    finished = runner.invoke(app, ["train", "--resume", "run"])
    assert finished.exit_code == 2 and "already used its whole budget (step 18)" in finished.stderr
    bad = runner.invoke(app, ["train", "--resume", "run", "--hidden", "64"])
    assert bad.exit_code == 2 and "--hidden 64 does not fit" in bad.stderr
    layout = runner.invoke(app, ["train", "--resume", "run", "-b", "8"])
    assert layout.exit_code == 2 and "--batch-size cannot change when resuming" in layout.stderr


def test_resume_a_stdin_run_needs_the_text_again(in_tmp):
    first = runner.invoke(app, ["train", "-", "-o", "run", "--steps", "3", *TINY], input=TINY_TEXT)
    assert first.exit_code == 0, first.stderr
    again = runner.invoke(app, ["train", "--resume", "run"])
    assert again.exit_code == 2 and "trained on standard input" in again.stderr
    piped = runner.invoke(app, ["train", "-", "--resume", "run", "--steps", "5"], input=TINY_TEXT)
    assert piped.exit_code == 0, piped.stderr
    assert load_checkpoint(in_tmp / "run" / "last.pt")["step"] == 5


def test_init_from_starts_a_new_run_from_the_weights(tmp_path, tiny_run):
    cfg = TrainConfig(steps=4, batch_size=2, seq_len=8, threads=1, precision="fp32", device="cpu")
    text = "the lazy dog jumps over the quick brown fox.\n" * 10  # only characters the checkpoint knows
    trainer = init_from_checkpoint(tiny_run / "best.pt", text, {"dropout": 0.1}, cfg, tmp_path / "ft")
    source = load_checkpoint(tiny_run / "best.pt")
    assert trainer.step == 0 and trainer.vocab.chars == source["vocab"]["chars"]
    assert all(torch.equal(v, source["model"][k]) for k, v in trainer.model.state_dict().items())
    assert trainer.mcfg.dropout == 0.1
    trainer.run()
    assert load_checkpoint(tmp_path / "ft" / "last.pt")["meta"]["init_from"].endswith("best.pt")
    grown = init_from_checkpoint(tiny_run / "best.pt", text + "JX", None, cfg, tmp_path / "ft2")  # J, X: added
    assert grown.vocab.chars == "".join(sorted(source["vocab"]["chars"] + "JX"))


def test_init_from_through_the_cli(in_tmp, tiny_run):
    (in_tmp / "poem.txt").write_text("over the lazy brown dog\n" * 20)
    result = runner.invoke(app, ["train", "poem.txt", "--init-from", str(tiny_run), "-o", "ft", "--steps", "3",
                                 "-b", "2", "-t", "8", "--threads", "1"])
    assert result.exit_code == 0, result.stderr
    assert "starting from the weights of" in result.stderr
    assert load_checkpoint(in_tmp / "ft" / "last.pt")["step"] == 3
    both = runner.invoke(app, ["train", "poem.txt", "--init-from", str(tiny_run), "--resume", "ft"])
    assert both.exit_code == 2 and "not both" in both.stderr


def test_a_file_named_as_a_folder_of_runs_is_not_called_missing(tiny_run):
    for command in (["list"], ["prune", "--keep", "1"]):
        result = runner.invoke(app, ["checkpoints", *command, str(tiny_run / "best.pt")])
        assert result.exit_code == 1 and "best.pt is not a folder: name a run folder" in result.stderr, result.stderr
