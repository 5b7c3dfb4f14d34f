"""`corpus stats` of a source that never ends (issue 33, item 9): /dev/zero, /dev/urandom, a pipe or standard
input that is not text is refused at its first bytes, as every other command refuses it; a binary regular file
(which ends) is still reported, and a text stream still counted."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.text.stats import text_stats
from charrnn.util.errors import CharrnnError

from .conftest import REPO, env_without_threads, fifo_with

runner = CliRunner()


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_stats_refuses_an_endless_device_at_its_first_bytes(device):
    if not os.path.exists(device):
        pytest.skip(f"no {device} here")
    with pytest.raises(CharrnnError, match=f"{device} has NUL bytes .* looks binary, not text"):
        text_stats([device])


def test_stats_refuses_a_binary_pipe_and_binary_stdin(tmp_path):
    pipe = fifo_with(tmp_path / "bin.fifo", bytes(range(256)) * 100)
    result = runner.invoke(app, ["corpus", "stats", str(pipe)])
    assert result.exit_code == 1 and "looks binary, not text" in result.stderr and "Traceback" not in result.stderr
    done = subprocess.run([sys.executable, "-m", "charrnn", "corpus", "stats", "-"], stdin=open("/dev/zero", "rb"),
                          capture_output=True, text=True, timeout=60, cwd=REPO, env=env_without_threads())
    assert done.returncode == 1 and done.stderr.startswith("error: standard input has NUL bytes"), done.stderr


def test_a_binary_file_is_still_reported_and_a_text_pipe_counted(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"\x00\x01\x02" * 100)
    assert "x.bin has NUL bytes" in text_stats([str(tmp_path / "x.bin")]).binary[0]
    text = "the quick brown fox\n" * 500  # longer than the bytes looked at first: nothing lost
    stats = text_stats([str(fifo_with(tmp_path / "t.fifo", text.encode()))])
    assert stats.characters == len(text) and stats.lines == 500 and stats.bytes == len(text)
