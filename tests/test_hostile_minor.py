"""The smaller findings of issue 19 (#12 and #13): a huge vocabulary is warned about with its cost; refused
starts leave no folder; advice fits the error; messages say what is true; odd paths are refused."""

from __future__ import annotations

import errno
import os
import threading

import pytest
import torch
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn import TrainConfig, train_on_text

from .conftest import TINY_TEXT

runner = CliRunner()
TINY = ["--hidden", "16", "--embed", "8", "-b", "4", "-t", "16", "--threads", "1", "--precision", "fp32",
        "--device", "cpu", "--sample-every", "0"]


def error_line(result) -> str:
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    return errors[0]


def test_a_huge_vocabulary_is_warned_about_with_its_cost(in_tmp, monkeypatch):
    monkeypatch.setenv("CHARRNN_CACHE", str(in_tmp / "cache"))
    (in_tmp / "cjk.txt").write_text("".join(chr(0x4E00 + i) for i in range(5000)) * 2)
    result = runner.invoke(app, ["train", "cjk.txt", "--steps", "1", *TINY])
    assert result.exit_code == 0, result.stderr
    warning = " ".join(result.stderr.split())
    assert "5,000 distinct characters" in warning and "parameters" in warning and "at its peak" in warning
    assert "fold the rare ones" in warning


def test_a_refused_init_from_leaves_no_run_folder(in_tmp, tiny_run, monkeypatch):
    monkeypatch.setenv("CHARRNN_CACHE", str(in_tmp / "cache"))
    (in_tmp / "new.txt").write_text("some text to fine-tune on\n" * 20)
    result = runner.invoke(app, ["train", "new.txt", "--init-from", str(tiny_run), "-o", "runs/ft", "--hidden", "999",
                                 *TINY[4:]])
    assert result.exit_code == 2 and "does not fit" in error_line(result)
    assert not (in_tmp / "runs").exists()  # not even config.yaml


@pytest.mark.parametrize("out, words", [("", "--out is empty"), ("/", "is the root of the file system")])
def test_out_must_name_a_folder(in_tmp, out, words):
    (in_tmp / "c.txt").write_text(TINY_TEXT)
    result = runner.invoke(app, ["train", "c.txt", "-o", out, "--steps", "1", *TINY])
    assert result.exit_code == 2 and words in error_line(result)


def test_out_that_is_a_file(in_tmp):
    (in_tmp / "c.txt").write_text(TINY_TEXT)
    result = runner.invoke(app, ["train", "c.txt", "-o", "c.txt", "--steps", "1", *TINY])
    assert result.exit_code == 1 and "is a file, not a folder" in error_line(result)


def test_a_cache_path_that_is_a_file_gets_advice_that_fits(in_tmp, monkeypatch):
    (in_tmp / "c.txt").write_text(TINY_TEXT)
    (in_tmp / "notadir").write_text("x")
    monkeypatch.setenv("CHARRNN_CACHE", str(in_tmp / "notadir"))
    line = error_line(runner.invoke(app, ["train", "c.txt", "--steps", "1", *TINY]))
    assert "free some space" not in line and "in the way" in line


def test_a_failed_first_save_does_not_claim_a_previous_one(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", full)  # the disk is full from the first save on
    cfg = TrainConfig(steps=4, batch_size=4, seq_len=16, eval_every=2, threads=1, precision="fp32", sample_every=0)
    _, result = train_on_text(TINY_TEXT, {"hidden": 16, "embed": 8}, cfg, tmp_path / "run")
    assert result.stopped_by == "save_error"
    assert "nothing was written" in result.error and "intact" not in result.error and "free some space" in result.error


def test_a_device_named_as_a_checkpoint_is_called_what_it_is(tmp_path):
    link = tmp_path / "zero.pt"
    link.symlink_to("/dev/zero")
    line = error_line(runner.invoke(app, ["sample", str(link), "-n", "5"]))
    assert "no checkpoint at" not in line and "not a regular file" in line


def test_out_of_memory_is_one_line_not_a_traceback(tiny_run, monkeypatch):
    def oom(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 4294967296 bytes")

    monkeypatch.setattr(torch.nn.Module, "load_state_dict", oom)
    result = runner.invoke(app, ["sample", str(tiny_run), "-n", "5", "--threads", "1"])
    assert result.exit_code == 1 and "out of memory" in error_line(result)
    monkeypatch.setattr(torch.nn.Module, "load_state_dict", lambda *a, **k: (_ for _ in ()).throw(MemoryError()))
    result = runner.invoke(app, ["sample", str(tiny_run), "-n", "5", "--threads", "1"])
    assert result.exit_code == 1 and "out of memory" in error_line(result)


def zeros_fifo(path, cap: int = 64 << 20) -> dict:
    """A named pipe giving NUL bytes, as /dev/zero does, but ending after `cap` (so a regression fails, not
    hangs); the returned dict counts what its reader took."""
    os.mkfifo(path)
    sent = {"bytes": 0}

    def write() -> None:
        try:
            with open(path, "wb", buffering=0) as f:
                while sent["bytes"] < cap:
                    sent["bytes"] += f.write(bytes(1 << 16))
        except BrokenPipeError:  # the reader stopped early: what it should do
            pass

    threading.Thread(target=write, daemon=True).start()
    return sent


@pytest.mark.parametrize("command", [["train", "ZEROS", "--steps", "1", "--threads", "1"],
                                     ["eval", "RUN", "ZEROS", "--threads", "1"],
                                     ["sample", "RUN", "--prime-file", "ZEROS", "-n", "5", "--threads", "1"]])
def test_an_endless_binary_stream_is_refused_at_its_first_bytes(command, in_tmp, tiny_run):
    """`charrnn train /dev/zero` (or `- < /dev/zero`) filled the disk before saying "binary", and `eval RUN
    /dev/zero` or a --prime-file the memory: a stream is looked at first, then read."""
    sent = zeros_fifo(in_tmp / "zeros")
    args = {"RUN": str(tiny_run), "ZEROS": str(in_tmp / "zeros")}
    result = runner.invoke(app, [args.get(a, a) for a in command])
    assert "has NUL bytes" in error_line(result)
    assert sent["bytes"] < 1 << 20, sent  # ~8 KB read, not the 64 MB the stream holds
