"""One writer per run folder (issue 19, attacks 1 and 2): a live run's folder is refused to every other
writer with the holder's pid; a killed holder's lock is taken over; --overwrite clears the old run first.

The holder is a real second process (`python -m charrnn train ...`), the contenders run in this one:
flock locks belong to processes, so this is the same race two shells would run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from charrnn.training.checkpoint import load_checkpoint, remove_stale_temps
from charrnn.cli import app
from charrnn.training.runlock import RunLock

from .conftest import REPO, TINY_TEXT, env_without_threads

runner = CliRunner()
TINY = ["--hidden", "16", "--embed", "8", "-b", "4", "-t", "16", "--threads", "1", "--precision", "fp32",
        "--device", "cpu", "--sample-every", "0"]
OTHER_TEXT = "a completely different corpus, with other words in it.\n" * 40


def start_holder(cwd: Path, *argv: str) -> subprocess.Popen:
    """A real `charrnn train` in another process, training until it is stopped (or 60 s)."""
    env = {**env_without_threads(), "PYTHONPATH": str(REPO), "CHARRNN_CACHE": str(cwd / "cache")}
    return subprocess.Popen([sys.executable, "-m", "charrnn", "train", *argv, "--time", "60", "--eval-every", "5", *TINY],
                            cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            raise AssertionError(f"the holder exited early: {proc.stderr.read()[-2000:]}")
        if time.monotonic() > end:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.05)


def one_error_line(result, *words: str) -> str:
    assert result.exit_code == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for w in words:
        assert w in errors[0], errors[0]
    return errors[0]


@pytest.fixture
def holder(in_tmp, monkeypatch):
    """A run training on c.txt into checkpoints/c (the default folder) in another process, past its first save."""
    monkeypatch.setenv("CHARRNN_CACHE", str(in_tmp / "cache"))
    (in_tmp / "c.txt").write_text(TINY_TEXT)
    (in_tmp / "other.txt").write_text(OTHER_TEXT)
    proc = start_holder(in_tmp, "c.txt")
    wait_for(in_tmp / "checkpoints" / "c" / "last.pt", proc)
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=30)


def test_a_live_run_has_one_writer_and_a_killed_ones_lock_is_taken_over(holder, in_tmp):
    run, pid = in_tmp / "checkpoints" / "c", str(holder.pid)
    before = (run / "config.yaml").read_text()
    # every second writer: one error line naming the holder, exit 1, nothing touched
    one_error_line(runner.invoke(app, ["train", "other.txt", "-o", str(run), *TINY]), "in use", pid, "charrnn train")
    one_error_line(runner.invoke(app, ["train", "other.txt", "-o", str(run), "--overwrite", *TINY]), "in use", pid)
    one_error_line(runner.invoke(app, ["train", "--resume", str(run), "--steps", "999", *TINY]), "in use", pid)
    pruned = runner.invoke(app, ["checkpoints", "prune", str(run), "--keep", "0"])
    one_error_line(pruned, "in use", pid)
    assert pruned.stderr.count("\n") == 1  # only the error: no "deleted 0 snapshot(s)" for a run it never looked in
    assert (run / "config.yaml").read_text() == before

    # a second run on the same corpus without -o picks the next free folder, not the live one
    result = runner.invoke(app, ["train", "c.txt", "--steps", "2", "--eval-every", "1", *TINY])
    assert result.exit_code == 0, result.stderr
    assert load_checkpoint(in_tmp / "checkpoints" / "c-2" / "last.pt")["step"] == 2
    assert holder.poll() is None  # and the holder trains on, undisturbed

    # SIGKILL: no clean-up runs and the lock file keeps the dead pid, but the kernel dropped the lock
    assert (run / ".lock").read_text().startswith(f"{pid}\n")
    holder.kill()
    holder.wait(timeout=30)
    assert "error" not in holder.stderr.read()
    step = load_checkpoint(run / "last.pt")["step"]
    result = runner.invoke(app, ["train", "--resume", str(run), "--steps", str(step + 2), "--time", "600", *TINY])
    assert result.exit_code == 0, result.stderr
    assert load_checkpoint(run / "last.pt")["step"] == step + 2
    assert not (run / ".lock").exists()  # released at the end of the run


def test_stale_temporaries_of_the_dead_go_those_of_the_living_stay(tmp_path):
    live = tmp_path / f".last.pt.{os.getpid()}.abc.tmp"  # a writer that is still running (this process)
    dead = tmp_path / ".last.pt.999999999.abc.tmp"  # a pid above the kernel's pid_max: long gone
    for f in (live, dead):
        f.write_bytes(b"half")
    assert remove_stale_temps(tmp_path) == [dead]
    assert live.exists()


def test_lock_is_reentrant_in_one_process_and_leaves_no_folder_when_nothing_was_written(tmp_path):
    folder = tmp_path / "a" / "run"
    with RunLock(folder) as outer:
        with RunLock(folder):
            assert (folder / ".lock").is_file()
        assert outer.held and (folder / ".lock").is_file()
    assert not (tmp_path / "a").exists()  # created for the lock, empty again: removed


def test_overwrite_clears_the_old_run_before_the_new_one_writes(in_tmp, monkeypatch):
    monkeypatch.setenv("CHARRNN_CACHE", str(in_tmp / "cache"))
    (in_tmp / "lx.txt").write_text(OTHER_TEXT)
    (in_tmp / "small.txt").write_text(TINY_TEXT)
    old = runner.invoke(app, ["train", "lx.txt", "-o", "run", "--steps", "6", "--eval-every", "2", "--save-every", "2",
                              "--keep", "5", *TINY])
    assert old.exit_code == 0 and (in_tmp / "run" / "step-000004.pt").exists()
    (in_tmp / "run" / "notes.txt").write_text("mine")

    refused = runner.invoke(app, ["train", "missing.txt", "-o", "run", "--overwrite", *TINY])
    assert refused.exit_code == 1 and (in_tmp / "run" / "best.pt").exists()  # a refused start cleared nothing

    # the new run stops (as if by SIGTERM) before its first evaluation: nothing of the old run may be left
    result = runner.invoke(app, ["train", "small.txt", "-o", "run", "--overwrite", "--steps", "1", "--eval-every", "100",
                                 *TINY])
    assert result.exit_code == 0, result.stderr
    names = sorted(p.name for p in (in_tmp / "run").iterdir())
    assert names == ["best.pt", "config.yaml", "last.pt", "metrics.jsonl", "notes.txt"]
    for name in ("best.pt", "last.pt"):
        assert load_checkpoint(in_tmp / "run" / name)["meta"]["corpus"] == "small"
    assert "small.txt" in (in_tmp / "run" / "config.yaml").read_text()
    assert max(r["step"] for r in map(eval_json, (in_tmp / "run" / "metrics.jsonl").read_text().splitlines())) == 1


def test_a_folder_with_a_config_or_metrics_file_but_no_checkpoint_is_not_written_over(in_tmp):
    """`-o proj` where proj holds the user's own config.yaml or metrics.jsonl (no *.pt): refused without
    --overwrite, and the files are as they were."""
    (in_tmp / "small.txt").write_text(TINY_TEXT)
    for name in ("config.yaml", "metrics.jsonl"):
        folder = in_tmp / name.split(".")[0]
        folder.mkdir()
        (folder / name).write_text("mine\n")
        result = runner.invoke(app, ["train", "small.txt", "-o", str(folder), "--steps", "1", *TINY])
        assert one_error_line(result, "already holds", name, "--overwrite")
        assert (folder / name).read_text() == "mine\n" and not (folder / "last.pt").exists()


def eval_json(line: str) -> dict:
    import json

    return json.loads(line)


def test_a_folder_by_the_name_of_a_run_file_is_refused_before_training(in_tmp):
    """`-o proj` where proj/config.yaml or proj/metrics.jsonl is a folder: one line naming it and what to
    do, before training (metrics.jsonl is first written at the first save), and nothing written."""
    (in_tmp / "small.txt").write_text(TINY_TEXT)
    for name in ("config.yaml", "metrics.jsonl"):
        folder = in_tmp / name.split(".")[0]
        (folder / name).mkdir(parents=True)
        result = runner.invoke(app, ["train", "small.txt", "-o", str(folder), "--steps", "1", *TINY])
        assert one_error_line(result, name, "move it"), result.stderr
        assert "space" not in result.stderr and not (folder / "last.pt").exists()
