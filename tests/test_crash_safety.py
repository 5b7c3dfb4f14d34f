"""Crash safety: SIGKILL at random moments, SIGINT/SIGTERM, a disk that fills up during a save."""

from __future__ import annotations

import errno
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from charrnn.training.checkpoint import load_checkpoint, load_model
from charrnn.cli import app
from charrnn import TrainConfig, train_on_text

from .conftest import REPO, TINY_TEXT, env_without_threads

TINY = ["--hidden", "16", "--embed", "8", "-b", "4", "-t", "16", "--threads", "1", "--precision", "fp32", "--device", "cpu"]
KILLS = int(os.environ.get("CHARRNN_TEST_KILLS", "8"))

# A fork server: imports charrnn (and torch) once, then forks one child per training command,
# so each kill costs a fraction of a second instead of a 2-second interpreter start. Each child
# runs the real CLI entry point (`charrnn train ...`) with its stderr in a log file, and is
# killed from outside with SIGKILL exactly like any other process.
FORK_SERVER = r"""
import json, os, sys
import charrnn.cli, charrnn.util.console, charrnn.training.start, charrnn.training.trainer, rich.progress, torch._dynamo
for line in sys.stdin:
    cmd = json.loads(line)
    if "wait" in cmd:
        _, status = os.waitpid(cmd["wait"], 0)
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        print(code, flush=True)
        continue
    pid = os.fork()
    if pid == 0:
        log = os.open(cmd["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(log, 2)
        os.chdir(cmd["cwd"])
        try:
            charrnn.cli.app(args=cmd["argv"], prog_name="charrnn")
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        os._exit(code)
    print(pid, flush=True)
"""


class ForkServer:
    def __init__(self):
        env = {**env_without_threads(), "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen([sys.executable, "-c", FORK_SERVER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)

    def _ask(self, cmd: dict) -> int:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def start(self, argv: list[str], cwd: Path, log: Path) -> int:
        return self._ask({"argv": argv, "cwd": str(cwd), "log": str(log)})

    def wait(self, pid: int) -> int:
        return self._ask({"wait": pid})

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


def wait_for_line(log: Path, text: str, timeout: float) -> None:
    """Poll a child's log until `text` appears (the run has started training)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and text in log.read_text():
            return
        time.sleep(0.01)
    raise AssertionError(f"the run did not start: {log.read_text() if log.exists() else '(no log)'}")


def temp_files(run: Path) -> set[Path]:
    return set(run.glob(".*.tmp"))


def wait_for_a_save(run: Path, after: int = 2, timeout: float = 60) -> None:
    """Return the moment a checkpoint is being written (its temporary file is there), once `after` saves of last.pt
    have gone through in this process (so every aimed kill lets the run get somewhere): the kill lands mid-save."""
    deadline, last, seen = time.monotonic() + timeout, None, 0
    while time.monotonic() < deadline:
        try:
            stamp = (run / "last.pt").stat().st_mtime_ns
        except FileNotFoundError:
            stamp = None
        if stamp is not None and stamp != last:
            seen, last = seen + (last is not None or stamp is not None), stamp
        if seen > after and any(".pt." in f.name and f.name.endswith(".tmp") for f in temp_files(run)):
            return
        time.sleep(0.0005)
    raise AssertionError("no save was seen in progress")


def check_run_loads(run: Path) -> int | None:
    """Every checkpoint in the run loads with load_model; returns last.pt's step (None if absent)."""
    for f in sorted(run.glob("*.pt")):
        load_model(f)  # raises on a torn or corrupt file
    return load_checkpoint(run / "last.pt")["step"] if (run / "last.pt").exists() else None


def test_sigkill_at_random_moments_never_corrupts_checkpoints(tmp_path, server):
    (tmp_path / "c.txt").write_text(TINY_TEXT)
    run = tmp_path / "run"
    rng = random.Random(20240607)
    fresh = ["train", "c.txt", "-o", "run", "--overwrite", "--steps", "100000", "--eval-every", "3",
             "--save-every", "1", "--keep", "2", "--seed", "1", *TINY]
    last_step, kills, stale_before, mid_save = 0, 0, set(), 0
    # at least KILLS kills, aimed: most in the middle of writing a checkpoint (the moment a torn file could be
    # left), one in four at a random moment while starting up, loading or training; go on (up to 3x) until at
    # least 3 tore a save and the run got past 10 save points
    while kills < KILLS or ((mid_save < 3 or last_step < 10) and kills < 3 * KILLS):
        argv = ["train", "--resume", "run"] if (run / "last.pt").exists() else fresh
        log = tmp_path / f"log{kills}.txt"
        pid = server.start(argv, tmp_path, log)
        if kills % 4:
            wait_for_line(log, "budget:", timeout=30)
            wait_for_a_save(run, after=rng.randint(1, 3))
        else:
            time.sleep(rng.uniform(0.0, 0.25))
        os.kill(pid, signal.SIGKILL)
        code = server.wait(pid)
        assert code == -signal.SIGKILL, f"the run ended by itself ({code}): {log.read_text()}"
        kills += 1
        step = check_run_loads(run)
        if step is not None:
            assert step >= last_step, "last.pt went back in time"
            if step > last_step and stale_before:
                # this process saved at least once: the temp files of the previous kill are gone
                # (a config.yaml temporary is swept when config.yaml is next written, or at a clean finish: checked below)
                left = {f for f in stale_before & temp_files(run) if not f.name.startswith(".config.yaml.")}
                assert not left, "a killed save's temp file was not cleaned up"
            last_step = step
            assert len(list(run.glob("step-*.pt"))) <= 3  # --keep 2, plus one a kill may catch before pruning
        stale_before = temp_files(run)
        mid_save += bool(stale_before - set(run.glob(".write-test.*")))
    assert last_step >= 10, f"the kills did not get past enough save points (last step {last_step})"
    assert mid_save >= 3, f"only {mid_save} of {kills} kills landed in the middle of writing a checkpoint"
    print(f"{kills} kills, {mid_save} in the middle of a save, last.pt reached step {last_step}")

    pid = server.start(["train", "--resume", "run", "--steps", str(last_step + 3)], tmp_path, tmp_path / "final.txt")
    assert server.wait(pid) == 0, (tmp_path / "final.txt").read_text()
    assert check_run_loads(run) == last_step + 3
    assert not temp_files(run), "temp files left after a clean finish"
    assert "resuming run/last.pt at step" in (tmp_path / "final.txt").read_text()


@pytest.fixture(scope="module")
def server():
    server = ForkServer()
    yield server
    server.close()


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_last_at_the_step_reached(tmp_path, server, sig, code):
    (tmp_path / "c.txt").write_text(TINY_TEXT)
    argv = ["train", "c.txt", "-o", "run", "--steps", "100000", "--eval-every", "100000", *TINY]
    log = tmp_path / "log.txt"
    pid = server.start(argv, tmp_path, log)
    wait_for_line(log, "step      1", timeout=30)  # training is under way: the handlers are installed
    os.kill(pid, sig)
    assert server.wait(pid) == code, log.read_text()
    err = log.read_text()
    assert "Traceback" not in err and f"stopped by {sig.name}" in err
    reached = int(re.search(r"done: (\d+) steps", err).group(1))
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == reached > 0


# ---- a full disk or unwritable folder during a save ----------------------------------------------


def disk_full_after(monkeypatch, target: str, n_ok: int) -> None:
    """Make os.<target> raise ENOSPC (as a full disk does) after `n_ok` successful calls."""
    real = getattr(os, target)
    calls = {"n": 0}

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] > n_ok:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*args, **kwargs)

    monkeypatch.setattr(os, target, failing)


@pytest.mark.parametrize("target", ["replace", "fsync"])
def test_disk_full_during_save_stops_cleanly_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch, target):
    cfg = TrainConfig(steps=40, batch_size=4, seq_len=16, eval_every=5, threads=1, precision="fp32", device="cpu")
    # the first evaluation (step 5) writes best.pt, last.pt, metrics.jsonl: 3 replaces, 6 fsyncs (file + folder)
    disk_full_after(monkeypatch, target, 3 if target == "replace" else 6)
    trainer, result = train_on_text(TINY_TEXT, {"hidden": 16, "embed": 8}, cfg, tmp_path / "run")
    monkeypatch.undo()
    assert result.stopped_by == "save_error" and trainer.step == 10
    assert "No space left on device" in result.error and "the previous one is intact" in result.error
    assert "--resume" in result.error
    assert load_checkpoint(tmp_path / "run" / "last.pt")["step"] == 5  # intact, and not overwritten
    assert not temp_files(tmp_path / "run")  # the failed write cleaned up after itself


def test_disk_full_through_the_cli_is_one_error_line(in_tmp, monkeypatch):
    (in_tmp / "c.txt").write_text(TINY_TEXT)
    disk_full_after(monkeypatch, "replace", 0)
    result = CliRunner().invoke(app, ["train", "c.txt", "-o", "run", "--steps", "10", "--eval-every", "5", *TINY])
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0] and "Traceback" not in result.stderr


def test_unwritable_run_folder_fails_before_training(in_tmp, monkeypatch):
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    cfg = TrainConfig(steps=5, batch_size=4, seq_len=16, threads=1)
    from charrnn.util.errors import CharrnnError

    with pytest.raises(CharrnnError, match="cannot write to the run folder .*Permission denied"):
        train_on_text(TINY_TEXT, {"hidden": 16, "embed": 8}, cfg, in_tmp / "run")


# ---- a loss that turns NaN ------------------------------------------------------------------------


def test_nan_steps_are_skipped_and_a_nan_streak_stops_with_good_checkpoints(tmp_path, monkeypatch):
    import types

    import torch
    import torch.nn.functional as F

    from charrnn.training.trainer import Reporter

    bad_from = 6  # from step 6 on, every training loss is NaN

    class Recorder(Reporter):
        trainer, warnings = None, []

        def on_start(self, trainer):
            self.trainer = trainer

        def on_warning(self, message):
            self.warnings.append(message)

    rec = Recorder()

    def nan_after(*args, **kwargs):
        loss = F.cross_entropy(*args, **kwargs)
        return loss * float("nan") if rec.trainer.step + 1 >= bad_from else loss

    monkeypatch.setattr("charrnn.training.trainer.F", types.SimpleNamespace(cross_entropy=nan_after))
    cfg = TrainConfig(steps=100, batch_size=4, seq_len=16, eval_every=5, threads=1, precision="fp32", device="cpu")
    trainer, result = train_on_text(TINY_TEXT, {"hidden": 16, "embed": 8}, cfg, tmp_path / "run", rec)
    assert result.stopped_by == "nan" and trainer.step == bad_from - 1 + 10
    assert sum("not finite; update skipped" in m for m in rec.warnings) == 10
    assert "training stopped: 10 non-finite steps in a row" in rec.warnings[-1]
    last = load_checkpoint(tmp_path / "run" / "last.pt")
    good = load_checkpoint(tmp_path / "run" / "best.pt")  # written at step 5, the last good step
    assert all(torch.isfinite(t).all() for t in last["model"].values())
    assert all(torch.equal(last["model"][k], good["model"][k]) for k in good["model"])  # no bad update got in
