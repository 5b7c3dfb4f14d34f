"""SIGTERM and SIGINT clean up what they interrupt, and what SIGKILL leaves is swept by the next run
(issue 19, attack 9 and the mirror check of 13)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

import charrnn.text.catalog
from charrnn.text.catalog import fetch
from charrnn.cli import app
from charrnn.util.signals import terminate_cleanly
from charrnn.text.tokens import prepare_corpus

from .conftest import REPO, TINY_TEXT, env_without_threads, one_corpus_catalog

runner = CliRunner()


@pytest.fixture
def catalog(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    one_corpus_catalog(monkeypatch, mirror, "small", b"a small corpus, copied a few bytes at a time\n" * 50)
    monkeypatch.setattr(charrnn.text.catalog, "CHUNK", 256)
    monkeypatch.setenv("CHARRNN_CORPORA", str(tmp_path / "corpora"))
    return mirror


def sigterm_when(condition):
    """A progress callback that sends this process SIGTERM once `condition(args)` holds."""
    def progress(*args):
        if condition(args):
            os.kill(os.getpid(), signal.SIGTERM)
    return progress


def test_sigterm_during_corpus_get_leaves_no_partial_file(catalog, tmp_path):
    with pytest.raises(SystemExit) as e, terminate_cleanly():
        fetch("small", catalog, sigterm_when(lambda a: a[0] > 1000))
    assert e.value.code == 143
    assert not (tmp_path / "corpora").exists()  # no partial file, and not the folder the fetch made for it
    # what a SIGKILLed fetch left (its pid long gone) is swept by the next one
    (tmp_path / "corpora").mkdir()
    (tmp_path / "corpora" / ".small.txt.999999999.abc.tmp").write_bytes(b"x" * 100)
    fetch("small", catalog)
    assert sorted(p.name for p in (tmp_path / "corpora").iterdir()) == ["small.txt"]


def test_sigterm_during_cache_encoding_leaves_no_partial_file(tmp_path):
    (tmp_path / "c.txt").write_text(TINY_TEXT * 20)
    with pytest.raises(SystemExit), terminate_cleanly():
        prepare_corpus([str(tmp_path / "c.txt")], cache=tmp_path / "cache", progress=sigterm_when(lambda a: a[0] == "encoding"))
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file() and "hashes" not in p.parts] == []


def test_a_mirror_of_the_wrong_size_is_refused_before_copying(catalog, tmp_path):
    (catalog / "small.txt").write_bytes(b"short")
    result = runner.invoke(app, ["corpus", "get", "small", "--mirror", str(catalog)])
    assert result.exit_code == 1 and "holds 5 bytes" in result.stderr and "nothing was copied" in result.stderr
    assert not (tmp_path / "corpora").exists() or list((tmp_path / "corpora").iterdir()) == []


def test_sigterm_while_spooling_stdin_removes_the_spool(tmp_path):
    """A real process reading a pipe that never ends, stopped with SIGTERM: exit 143, no spool left."""
    env = {**env_without_threads(), "PYTHONPATH": str(REPO), "CHARRNN_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "-X", "faulthandler", "-m", "charrnn", "train", "-", "--steps", "1"], cwd=tmp_path, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        proc.stdin.write(b"some text that keeps coming\n" * 40000)  # ~1 MB, and the pipe stays open
        proc.stdin.flush()
        spool = tmp_path / "cache" / "spool"
        end = time.monotonic() + 60
        while not (spool.is_dir() and any(spool.iterdir())):
            assert time.monotonic() < end and proc.poll() is None, proc.stderr.read()
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            proc.wait(timeout=10)
            raise AssertionError(proc.stderr.read().decode()[-5000:])
        assert proc.returncode == 143
        assert b"Traceback" not in proc.stderr.read()
        assert list(spool.iterdir()) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stdin.close()
        proc.wait(timeout=30)
