"""Named corpora live in one place per user and are found from any folder; a failed fetch leaves nothing."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.text.catalog import corpora_dir, fetch, found_path, resolve_source

from tests.conftest import one_corpus_catalog

runner = CliRunner()
TINY_ARGS = ["--steps", "2", "--hidden", "8", "--embed", "4", "-b", "2", "-t", "8", "--threads", "1"]


@pytest.fixture
def user(tmp_path, monkeypatch):
    """A user with an empty home folder, no corpora variables, a catalog of one corpus 'tiny' in a mirror
    folder, no network (a download fails at once), working in an empty folder elsewhere."""
    home, mirror, work = tmp_path / "home", tmp_path / "mirror", tmp_path / "elsewhere"
    for d in (home, mirror, work):
        d.mkdir()
    entry = one_corpus_catalog(monkeypatch, mirror, "tiny", b"a tiny corpus for tests\n" * 20)
    for name in ("CHARRNN_CORPORA", "CHARRNN_MIRROR", "XDG_DATA_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(home))

    def offline(*args, **kwargs):
        raise OSError("network unreachable (test)")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    monkeypatch.chdir(work)
    return home, mirror, work, entry


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_the_folder_is_the_users_data_folder_unless_one_is_named(tmp_path, monkeypatch):
    monkeypatch.delenv("CHARRNN_CORPORA", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert corpora_dir() == tmp_path / ".local" / "share" / "charrnn" / "corpora"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/data")  # not absolute: ignored, as the XDG spec says
    assert corpora_dir() == tmp_path / ".local" / "share" / "charrnn" / "corpora"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert corpora_dir() == tmp_path / "data" / "charrnn" / "corpora"
    monkeypatch.setenv("CHARRNN_CORPORA", str(tmp_path / "mine"))
    assert corpora_dir() == tmp_path / "mine"
    assert corpora_dir(tmp_path / "flag") == tmp_path / "flag"  # --corpora beats the variable


def test_fetched_once_found_from_any_folder_and_the_folder_stays_clean(user, monkeypatch):
    home, mirror, work, entry = user
    result = runner.invoke(app, ["corpus", "get", "tiny", "--mirror", str(mirror)])
    assert result.exit_code == 0, result.stderr
    where = home / ".local" / "share" / "charrnn" / "corpora" / "tiny.txt"
    assert where.read_bytes() == (mirror / "tiny.txt").read_bytes() and str(where) in result.stderr
    assert tree(work) == []  # nothing in the working folder
    listing = runner.invoke(app, ["corpus", "list"])
    assert "~/.local/share/charrnn/corpora/tiny.txt" in listing.stdout
    other = work / "deeper" / "still"
    other.mkdir(parents=True)
    monkeypatch.chdir(other)  # no mirror, no network: only the fetched copy can serve
    assert resolve_source("tiny") == str(where)
    result = runner.invoke(app, ["train", "tiny", *TINY_ARGS])
    assert result.exit_code == 0, result.stderr
    assert tree(other) == sorted(["checkpoints", "checkpoints/tiny", *(f"checkpoints/tiny/{f}" for f in
                                                                       tree(other / "checkpoints" / "tiny"))])


def test_a_failed_fetch_leaves_no_file_and_no_folder(user):
    home, mirror, work, entry = user
    result = runner.invoke(app, ["train", "tiny", *TINY_ARGS])  # not fetched, no mirror, no network
    assert result.exit_code == 1 and "could not download tiny" in result.stderr
    assert tree(home) == [] and tree(work) == []
    (mirror / "tiny.txt").write_bytes(b"tampered with, for test\n" * 20)  # the right size, other bytes
    result = runner.invoke(app, ["corpus", "get", "tiny", "--mirror", str(mirror), "--corpora", "a/b/c"])
    assert result.exit_code == 1 and "sha256 mismatch" in result.stderr
    assert tree(work) == []  # a/b/c made for the copy, removed again
    (work / "a").mkdir()
    (work / "a" / "mine.txt").write_text("the user's own file")
    runner.invoke(app, ["corpus", "get", "tiny", "--mirror", str(mirror), "--corpora", "a/b/c"])
    assert tree(work) == ["a", "a/mine.txt"]  # only what it made goes


def test_the_corpora_flag_and_variable_name_the_folder(user, monkeypatch):
    home, mirror, work, entry = user
    result = runner.invoke(app, ["corpus", "get", "tiny", "--mirror", str(mirror), "--corpora", str(work / "c")])
    assert result.exit_code == 0 and (work / "c" / "tiny.txt").is_file() and tree(home) == []
    assert "c/tiny.txt" in runner.invoke(app, ["corpus", "list", "--corpora", str(work / "c")]).stdout
    row = [r for r in runner.invoke(app, ["corpus", "list"]).stdout.splitlines() if r.strip().startswith("tiny")]
    assert row and "tiny.txt" not in row[0]  # the default folder has none
    monkeypatch.setenv("CHARRNN_CORPORA", str(work / "c"))
    assert found_path(entry) == work / "c" / "tiny.txt"


def test_a_copy_in_the_working_folders_corpora_is_used_unless_a_folder_is_named(user, monkeypatch):
    """A checkout's ./corpora/ (what `make demo` fetched before, or what older charrnn fetched) still works."""
    home, mirror, work, entry = user
    (work / "corpora").mkdir()
    (work / "corpora" / "tiny.txt").write_bytes((mirror / "tiny.txt").read_bytes())
    assert found_path(entry) == Path("corpora/tiny.txt")
    assert fetch("tiny") == Path("corpora/tiny.txt") and tree(home) == []  # found: nothing fetched
    assert runner.invoke(app, ["train", "tiny", *TINY_ARGS]).exit_code == 0
    monkeypatch.setenv("CHARRNN_CORPORA", str(work / "named"))
    assert found_path(entry) is None  # a named folder is the only place looked in
    (work / "corpora" / "tiny.txt").write_bytes(b"short")  # a partial copy is not a fetched corpus
    monkeypatch.delenv("CHARRNN_CORPORA")
    assert found_path(entry) is None
