"""Configs and presets: layering order, errors that name the key, and repeating a run from its config.yaml."""

from __future__ import annotations

import pytest
import torch
import yaml
from typer.testing import CliRunner

from charrnn.training.checkpoint import load_checkpoint
from charrnn.cli import app
from charrnn.training.config import layer, load_config_file, resolve_run_config
from charrnn.util.errors import UsageError

from .conftest import TINY_TEXT

runner = CliRunner()
TINY_FLAGS = ["--steps", "12", "--hidden", "16", "--embed", "8", "-b", "4", "-t", "16", "--threads", "1",
              "--precision", "fp32", "--eval-every", "6", "--sample-every", "0"]


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_layers_apply_in_order_flags_last(tmp_path):
    cfg = write(tmp_path / "c.yaml", "preset: tiny\nhidden: 48\nlr: 1e-3\n")  # 1e-3: a string to YAML 1.1
    run = resolve_run_config({"hidden": 32}, config_file=cfg)
    assert run.model.hidden == 32  # flag beats file
    assert run.train.lr == 1e-3  # file beats preset (and `1e-3` is read as a number)
    assert run.model.embed == 16 and run.train.steps == 300  # from the preset
    assert run.train.clip == 5.0  # dataclass default
    assert resolve_run_config({}, preset="small", config_file=cfg).model.layers == 2  # --preset beats the file's


def test_budget_keys_replace_each_other_as_a_group():
    assert layer({"steps": 300}, {"time": 30.0}) == {"time": 30.0}
    run = resolve_run_config({"time": 5.0}, preset="tiny")
    assert run.train.steps is None and run.train.time == 5.0


def test_catalog_presets():
    from charrnn.text.catalog import load_catalog

    run = resolve_run_config({}, preset="linux")
    expected = load_catalog()["linux"].preset
    assert (run.model.layers, run.model.hidden, run.train.seq_len) == (expected["layers"], expected["hidden"], expected["seq_len"])
    assert resolve_run_config({"hidden": 64}, preset="linux").model.hidden == 64  # a flag beats the preset


@pytest.mark.parametrize(
    "text, message",
    [
        ("hiden: 256\n", "unknown key 'hiden' (did you mean 'hidden'?); valid keys: preset, corpus"),
        ("hidden: big\n", "hidden must be an integer, not str 'big'"),
        ("layers: 2.5\n", "layers must be an integer"),
        ("lr: true\n", "lr must be a number, not bool"),
        ("steps: [1]\n", "steps must be an integer or null"),
        ("corpus: 3\n", "corpus must be a string or a list of strings"),
        ("- hidden\n", "a config file is a mapping"),
        ("hidden: [1\n", "is not valid YAML (line 2"),
    ],
)
def test_config_errors_name_the_key(tmp_path, text, message):
    with pytest.raises(UsageError) as e:
        load_config_file(write(tmp_path / "bad.yaml", text))
    assert message in str(e.value)


def test_config_error_through_the_cli(in_tmp):
    write(in_tmp / "bad.yaml", "corpus: x.txt\nbatch: 4\n")
    result = runner.invoke(app, ["train", "--config", "bad.yaml"])
    assert result.exit_code == 2
    assert "unknown key 'batch'" in result.stderr and "batch_size" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_preset_lists_presets():
    with pytest.raises(UsageError, match="presets: tiny, small, medium, large, shakespeare"):
        resolve_run_config({}, preset="huge")


def test_no_corpus_anywhere_is_a_usage_error(in_tmp):
    result = runner.invoke(app, ["train", "--steps", "1"])
    assert result.exit_code == 2 and "name a corpus" in result.stderr


def weights(run_dir):
    return load_checkpoint(run_dir / "last.pt")["model"]


def test_repeat_a_run_from_its_config_yaml(in_tmp):
    write(in_tmp / "corpus.txt", TINY_TEXT)
    first = runner.invoke(app, ["train", "corpus.txt", "--seed", "7", "--lr", "0.02", *TINY_FLAGS])
    assert first.exit_code == 0, first.stderr
    run1 = in_tmp / "checkpoints" / "corpus"
    saved = yaml.safe_load((run1 / "config.yaml").read_text())
    assert saved["seed"] == 7 and saved["hidden"] == 16 and saved["corpus"] == [str(in_tmp / "corpus.txt")]
    assert load_checkpoint(run1 / "last.pt")["meta"]["config"] == saved  # the checkpoint holds it too

    again = runner.invoke(app, ["train", "--config", str(run1 / "config.yaml")])  # no corpus argument, no flags
    assert again.exit_code == 0, again.stderr
    run2 = in_tmp / "checkpoints" / "corpus-2"
    w1, w2 = weights(run1), weights(run2)
    assert w1.keys() == w2.keys() and all(torch.equal(w1[k], w2[k]) for k in w1)

    # a flag still overrides the file, and changes the result
    third = runner.invoke(app, ["train", "--config", str(run1 / "config.yaml"), "--seed", "8"])
    assert third.exit_code == 0, third.stderr
    w3 = weights(in_tmp / "checkpoints" / "corpus-3")
    assert not torch.equal(w1["head.weight"], w3["head.weight"])


def test_a_short_text_shrinks_the_batch_to_fit_and_says_so():
    from charrnn.training.config import TrainConfig, fit_to_text

    cfg = TrainConfig(batch_size=32, seq_len=64)
    same, message = fit_to_text(cfg, 200_000)
    assert same is cfg and message is None
    fitted, message = fit_to_text(cfg, 1_000)  # 900 training characters: 13 streams of 65 fit
    assert (fitted.batch_size, fitted.seq_len) == (13, 64) and "32 x seq 64 became 13 x 64" in message
    tiny, _ = fit_to_text(cfg, 40)  # 36 characters: one stream, shorter steps
    assert (tiny.batch_size, tiny.seq_len) == (1, 35)


def test_a_20_kb_poem_trains_from_the_cli_with_the_defaults(in_tmp):
    from typer.testing import CliRunner

    from charrnn.cli import app

    (in_tmp / "poem.txt").write_text(("Shall I compare thee to a summer's day?\n" * 30)[:1500])
    result = CliRunner().invoke(app, ["train", "poem.txt", "--steps", "3", "--hidden", "16", "--embed", "8",
                                      "--sample-every", "0", "--threads", "1", "--precision", "fp32"])
    assert result.exit_code == 0, result.stderr
    assert "became" in result.stderr and "so that it fits" in result.stderr


def test_patience_stops_a_run_that_stopped_improving_and_overfitting_is_said_once():
    from charrnn.training.overfit import OverfitWatch

    watch = OverfitWatch(patience=4)
    seen = [watch.update(s, v, t) for s, v, t in
            [(1, 2.0, 2.1), (2, 1.8, 1.9), (3, 1.85, 1.7), (4, 1.9, 1.6), (5, 1.95, 1.5), (6, 1.99, 1.4)]]
    warnings = [w for w, _ in seen if w]
    assert len(warnings) == 1 and "best 1.800 bits/char at step 2" in warnings[0]
    assert [stop for _, stop in seen] == [False, False, False, False, False, True]
    quiet = OverfitWatch()
    assert all(w is None for w, _ in [quiet.update(s, 2.0 - s / 10, 2.0) for s in range(5)])  # improving


def test_a_corpus_named_only_by_a_config_file_is_announced_before_it_is_read(in_tmp):
    """The decision in training/config.py: a config file may name any path (`corpus: /etc/passwd`), so the run's
    first line names the file and what it will read; named on the command line, the corpus needs no such line."""
    write(in_tmp / "secret.txt", TINY_TEXT)
    write(in_tmp / "shared.yaml", f"corpus: {in_tmp / 'secret.txt'}\n")
    result = runner.invoke(app, ["train", "--config", "shared.yaml", "-o", "run", *TINY_FLAGS])
    assert result.exit_code == 0, result.stderr
    first = result.stderr.splitlines()[0]
    assert first == f"reading the corpus that config file shared.yaml names (none was named on the command line): " \
                    f"{in_tmp / 'secret.txt'}"
    again = runner.invoke(app, ["train", "--config", "run/config.yaml", "-o", "run2"])  # a repeat: read, and said
    assert again.exit_code == 0 and again.stderr.startswith("reading the corpus that config file run/config.yaml")
    write(in_tmp / "mine.txt", TINY_TEXT)
    named = runner.invoke(app, ["train", "mine.txt", "--config", "shared.yaml", "-o", "run3", *TINY_FLAGS])
    assert named.exit_code == 0 and "reading the corpus that config file" not in named.stderr
    assert "mine.txt" in named.stderr and "secret.txt" not in named.stderr  # the command line's corpus wins
