"""Output files never replace a symbolic link, a device or a FIFO (issue 19, attack 5): the rule lives in
`fileio.atomic_write`, so every writer (reports, corpora, checkpoints, configs) follows it."""

from __future__ import annotations

import os
import stat
import threading

import pytest
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.util.files import atomic_write_text

from .conftest import TINY_TEXT

runner = CliRunner()


def test_a_link_to_a_file_is_kept_and_the_file_it_names_is_written(tmp_path):
    target = tmp_path / "real.html"
    target.write_text("old")
    link = tmp_path / "out.html"
    link.symlink_to(target)
    atomic_write_text(link, "new")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == "new"


def test_a_dangling_link_gets_its_target_written(tmp_path):
    link = tmp_path / "out.txt"
    link.symlink_to(tmp_path / "later.txt")
    atomic_write_text(link, "hello")
    assert link.is_symlink() and (tmp_path / "later.txt").read_text() == "hello"


def test_a_link_to_a_device_is_written_through(tmp_path):
    link = tmp_path / "out.html"
    link.symlink_to(os.devnull)  # as /proc/self/fd/1 or /dev/stdout would be
    atomic_write_text(link, "into the device")
    assert link.is_symlink() and stat.S_ISCHR(os.stat(os.devnull).st_mode)
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_fifo_is_written_through_not_replaced(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))
    reader.start()
    atomic_write_text(fifo, "through the pipe")
    reader.join(timeout=10)
    assert got == [b"through the pipe"] and stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_folder_is_refused_clearly(tmp_path):
    with pytest.raises(IsADirectoryError):
        atomic_write_text(tmp_path, "x")


def test_score_html_through_a_link_keeps_the_link(tmp_path, tiny_run):
    (tmp_path / "x.txt").write_text(TINY_TEXT[:200])
    target = tmp_path / "report.html"
    link = tmp_path / "out.html"
    link.symlink_to(target)
    result = runner.invoke(app, ["score", str(tiny_run), str(tmp_path / "x.txt"), "--html", str(link), "--no-text",
                                 "--threads", "1", "--device", "cpu"])
    assert result.exit_code == 0, result.stderr
    assert link.is_symlink() and "<!DOCTYPE html>" in target.read_text()


def test_corpus_build_into_a_fifo_writes_through(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.c").write_text("int a;\n")
    fifo = tmp_path / "corpus.fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))
    reader.start()
    result = runner.invoke(app, ["corpus", "build", str(src), "-o", str(fifo)])
    reader.join(timeout=10)
    assert result.exit_code == 0, result.stderr
    assert got == [b"int a;\n"] and stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_link_to_an_open_file_descriptor_writes_that_open_file(tmp_path):
    """--html /dev/stdout with stdout redirected to a file: the HTML lands in that file, the link stays."""
    out = tmp_path / "redirected.txt"
    with open(out, "w") as f:
        link = tmp_path / "stdout-link"
        link.symlink_to(f"/proc/self/fd/{f.fileno()}")
        atomic_write_text(link, "<html>")
        assert link.is_symlink() and os.readlink(link).startswith("/proc/self/fd/")
    assert out.read_text() == "<html>" and not list(tmp_path.glob(".*.tmp"))


def test_dev_stdout_redirected_to_a_file_continues_after_what_is_there(tmp_path):
    """`charrnn corpus build src -o /dev/stderr 2> log`: the corpus and the summary both land in the log."""
    import subprocess
    import sys

    from .conftest import REPO

    code = ("import sys; from charrnn.util.files import atomic_write_text; sys.stderr.write('before\\n'); "
            "atomic_write_text('/dev/stderr', 'corpus\\n'); sys.stderr.write('after\\n')")
    with open(tmp_path / "log", "w") as log:
        subprocess.run([sys.executable, "-c", code], stderr=log, check=True, cwd=REPO, timeout=60)
    assert (tmp_path / "log").read_text() == "before\ncorpus\nafter\n"
    assert os.path.islink("/dev/stderr")


def test_corpus_build_to_dev_stdout_redirected_to_a_file_needs_no_force(tmp_path):
    """`corpus build src -o /dev/stdout > corpus.txt`: the shell opened the file, the build writes through it;
    only a file the build would replace needs --force."""
    import subprocess
    import sys

    from .conftest import REPO

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("a text\n")
    out = tmp_path / "corpus.txt"
    out.write_text("")  # the shell creates it before the command runs
    with open(out, "w") as f:
        proc = subprocess.run([sys.executable, "-m", "charrnn", "corpus", "build", str(tmp_path / "src"), "-o",
                               "/dev/stdout"], stdout=f, stderr=subprocess.PIPE, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    assert out.read_text() == "a text\n"
