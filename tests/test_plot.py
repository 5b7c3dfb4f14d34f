"""`charrnn plot`: terminal plot of several runs, PNG when matplotlib is there, a clear message when not."""

from __future__ import annotations

import builtins
import json
import shutil

import pytest
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.cli.plots import load_metrics
from charrnn.cli.termplot import Series, render
from charrnn import TrainConfig, train_on_text

from .conftest import TINY_TEXT

runner = CliRunner()


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for name, hidden in (("small", 8), ("wide", 32)):
        cfg = TrainConfig(steps=30, batch_size=4, seq_len=16, lr=1e-2, eval_every=10, log_every=5, threads=1,
                          precision="fp32", sample_every=0)
        train_on_text(TINY_TEXT, {"hidden": hidden, "embed": 8}, cfg, root / name)
    return root


def test_metrics_log_has_what_a_user_needs(two_runs):
    records = [json.loads(line) for line in (two_runs / "small" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if "bpc" in r]
    val = [r for r in records if "val_bpc" in r]
    assert {"step", "epoch", "time", "loss", "bpc", "lr", "grad_norm", "chars_per_sec"} <= train[0].keys()
    assert {"step", "epoch", "time", "val_loss", "val_bpc"} <= val[0].keys()
    assert [r["step"] for r in val] == [10, 20, 30]


def test_terminal_plot_of_two_runs(two_runs):
    result = runner.invoke(app, ["plot", str(two_runs / "small"), str(two_runs / "wide"), "--no-png"])
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    for label in ("small train", "small val", "wide train", "wide val", "bits/char", "step"):
        assert label in out
    assert "●" in out and "■" in out  # each run's validation points, with its own marker
    assert "○" in out and "□" in out  # and its train line too: piped, without colour, they differ
    legend = {line.split(" ", 3)[-1]: line.split()[0] for line in out.splitlines() if line.endswith((" train", " val"))}
    assert len(set(legend.values())) == 4, legend
    assert any(0x2800 < ord(ch) <= 0x28FF for ch in out)  # braille line dots
    assert "\x1b[" not in out  # not a terminal: plain text


def test_plot_against_time(two_runs):
    result = runner.invoke(app, ["plot", str(two_runs / "small"), "--x", "time", "--no-png"])
    assert result.exit_code == 0 and "training time (s)" in result.stdout
    assert runner.invoke(app, ["plot", str(two_runs / "small"), "--x", "epochs"]).exit_code == 2


def test_lines_land_where_the_values_are():
    text = render([Series("up", [0, 1], [0, 1])], width=30, height=4).plain.splitlines()
    plot_rows = [line.split("┤" if "┤" in line else "│", 1)[1] for line in text[:4]]
    assert plot_rows[0].rstrip()[-1] != " " and plot_rows[0][0] == " "  # top right is drawn, top left empty
    assert plot_rows[3][0] != " "  # bottom left is drawn


def hide_matplotlib(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.split(".")[0] == "matplotlib":
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)


def test_missing_matplotlib_asked_for_png(two_runs, monkeypatch, tmp_path):
    hide_matplotlib(monkeypatch)
    result = runner.invoke(app, ["plot", str(two_runs / "small"), str(two_runs / "wide"), "-o", str(tmp_path / "c.png")])
    assert result.exit_code == 1
    assert "small val" in result.stdout  # the terminal plot is still shown
    assert "error: matplotlib is not installed" in result.stderr and "pip install 'charrnn[plot]'" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "c.png").exists()


def test_missing_matplotlib_default_png_is_a_warning(two_runs, monkeypatch, tmp_path):
    hide_matplotlib(monkeypatch)
    run = tmp_path / "run"
    shutil.copytree(two_runs / "small", run)
    result = runner.invoke(app, ["plot", str(run)])
    assert result.exit_code == 0
    assert "warning: matplotlib is not installed" in result.stderr and not (run / "loss.png").exists()


def test_png_of_two_runs(two_runs, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "compare.png"
    result = runner.invoke(app, ["plot", str(two_runs / "small"), str(two_runs / "wide"), "-o", str(out), "--no-terminal"])
    assert result.exit_code == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_not_a_run(tmp_path, two_runs):
    result = runner.invoke(app, ["plot", str(tmp_path)])
    assert result.exit_code == 1 and "no metrics.jsonl" in result.stderr
    (tmp_path / "odd" / "metrics.jsonl").mkdir(parents=True)
    odd = runner.invoke(app, ["plot", str(tmp_path / "odd")])
    assert odd.exit_code == 1 and "odd/metrics.jsonl is not a file" in odd.stderr
    (tmp_path / "README.md").write_text("x")
    (tmp_path / "empty").mkdir()
    glob = [str(two_runs / "small"), str(tmp_path / "README.md"), str(tmp_path / "empty")]  # as checkpoints/* matches
    mixed = runner.invoke(app, ["plot", *glob, "--no-png"])
    assert mixed.exit_code == 0 and mixed.stderr == "" and "small val" in mixed.stdout  # not runs: passed over silently
    (tmp_path / "broken").mkdir()
    shutil.copy(two_runs / "small" / "best.pt", tmp_path / "broken" / "best.pt")  # a run, but no metrics.jsonl
    warned = runner.invoke(app, ["plot", *glob, str(tmp_path / "broken"), "--no-png"])
    assert warned.exit_code == 0 and "skipped: no metrics.jsonl for" in warned.stderr
    assert load_metrics(two_runs / "small" / "best.pt").name == "small"


def test_plot_says_which_run_it_took(two_runs, in_tmp):
    shutil.copytree(two_runs / "small", in_tmp / "checkpoints" / "small")
    result = runner.invoke(app, ["plot", "--no-png"])
    assert result.exit_code == 0 and "small train" in result.stdout
    assert result.stderr == "plotting checkpoints/small (the newest run)\n"


def test_lines_that_cannot_be_plotted_are_skipped(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    good = [{"step": s, "time": s / 10, "bpc": 5 - s / 10} for s in (1, 10, 20)] + [{"step": 20, "time": 2.0, "val_bpc": 3.5}]
    bad = [
        '{"step": 30, "time": 3.0, "loss": NaN, "bpc": NaN}',  # what training logs for a skipped non-finite step
        '{"step": 31, "time": 3.1, "bpc": Infinity, "val_bpc": -Infinity}',
        '{"step": "x", "bpc": "[bold]z"}',
        '{"step": true, "time": 1, "bpc": 1}',
        '{"step": 32, "bpc": 1.0}',  # no time: on the step axis only
        '{"step": 1e308, "time": 1, "bpc": 1}',
        '{"step": 1, "time": 1, "bpc": ' + "9" * 400 + "}",
        "[" * 100_000,
    ]
    lines = [json.dumps(r).encode() for r in good] + [b.encode() for b in bad] + [b'{"step": 33, "bpc": "\xff"}']
    (run / "metrics.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    metrics = load_metrics(run)
    assert metrics.curve("train", "step") == ([1, 10, 20, 32], [4.9, 4.0, 3.0, 1.0])
    assert metrics.curve("train", "time") == ([0.1, 1.0, 2.0], [4.9, 4.0, 3.0])
    assert metrics.curve("val", "step") == ([20], [3.5])
    for x in ("step", "time"):
        result = runner.invoke(app, ["plot", str(run), "--no-png", "--x", x])
        assert result.exit_code == 0 and result.exception is None, result.stderr
        assert "run train" in result.stdout


def test_height_is_range_checked_before_anything_is_read(tmp_path):
    for height in ("0", "-1", "3", "501", "99999999"):
        result = runner.invoke(app, ["plot", str(tmp_path), "--no-png", "--height", height])
        assert result.exit_code == 2 and result.stderr == "error: --height must be between 4 and 500 (rows of the terminal plot)\n"
