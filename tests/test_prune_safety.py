"""`checkpoints prune` deletes only what is ours (issue 19, attack 10): snapshots that load as checkpoints
of the run they sit in, inside run folders, never under / ."""

from __future__ import annotations

import shutil

from typer.testing import CliRunner

from charrnn.cli import app

runner = CliRunner()


def test_prune_leaves_files_that_are_not_checkpoints_of_the_run(tmp_path, tiny_run):
    other = tmp_path / "other" / "exp"
    other.mkdir(parents=True)
    (other / "step-000100.pt").write_text("precious\n")  # not a run folder, not a checkpoint
    run = tmp_path / "other" / "run"
    shutil.copytree(tiny_run, run)
    (run / "step-000010.pt").write_text("precious too\n")  # in a run folder, but not a checkpoint
    shutil.copy(tiny_run / "last.pt", run / "step-000020.pt")  # a real snapshot of this run
    result = runner.invoke(app, ["checkpoints", "prune", str(tmp_path / "other"), "--keep", "0"])
    assert result.exit_code == 0, result.stderr
    assert (other / "step-000100.pt").read_text() == "precious\n"
    assert (run / "step-000010.pt").read_text() == "precious too\n"
    assert not (run / "step-000020.pt").exists() and "deleted 1 snapshot(s)" in result.stderr
    assert (run / "best.pt").exists() and (run / "last.pt").exists()


def test_prune_refuses_the_root_of_the_file_system():
    result = runner.invoke(app, ["checkpoints", "prune", "/", "--keep", "0", "--dry-run"])
    assert result.exit_code == 1 and "refusing to prune /" in result.stderr and "Traceback" not in result.stderr


def test_prune_finds_no_runs_in_a_folder_without_any(tmp_path):
    (tmp_path / "step-000001.pt").write_text("x")
    result = runner.invoke(app, ["checkpoints", "prune", str(tmp_path), "--keep", "0"])
    assert result.exit_code == 0 and "no run folders" in result.stderr
    assert (tmp_path / "step-000001.pt").exists()
