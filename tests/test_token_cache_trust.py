"""The token cache does not trust its files (issue 19, attack 6): it is keyed by content and what it reads
is checked against what was written; a bad entry is rebuilt with a warning, never trained on."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
from typer.testing import CliRunner

import charrnn.text.tokens
from charrnn.cli import app
from charrnn.text.tokens import prepare_corpus, sampled_digest

from .conftest import TINY_TEXT

runner = CliRunner()


@pytest.fixture
def cached(tmp_path):
    """A corpus file (modified an hour ago) and its freshly written cache entry."""
    f = tmp_path / "c.txt"
    f.write_text(TINY_TEXT)
    old = time.time() - 3600
    os.utime(f, (old, old))
    corpus = prepare_corpus([str(f)], cache=tmp_path / "cache")
    return f, corpus


def rebuilt(tmp_path, f, expected: np.ndarray, why: str):
    warnings = []
    again = prepare_corpus([str(f)], cache=tmp_path / "cache", warn=warnings.append)
    assert not again.cached and len(warnings) == 1 and why in warnings[0], warnings
    assert np.array_equal(again.tokens, expected)
    assert prepare_corpus([str(f)], cache=tmp_path / "cache", warn=warnings.append).cached and len(warnings) == 1


def test_same_size_garbage_is_rebuilt(tmp_path, cached):
    f, corpus = cached
    good = np.array(corpus.tokens)
    corpus.path.write_bytes(os.urandom(corpus.path.stat().st_size))
    rebuilt(tmp_path, f, good, "does not match the checksum")


def test_ids_beyond_the_vocabulary_are_rebuilt_even_with_a_matching_checksum(tmp_path, cached):
    f, corpus = cached
    good = np.array(corpus.tokens)
    bad = good.copy()
    bad[5] = 250
    corpus.path.write_bytes(bad.tobytes())
    meta_path = corpus.path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["checksum"] = {"blake2b": charrnn.text.tokens._file_digest(corpus.path), "sampled": sampled_digest(bad)}
    meta_path.write_text(json.dumps(meta))  # a crafted entry: the checksums agree with the bad file
    rebuilt(tmp_path, f, good, "beyond its")


def test_a_reversed_vocabulary_is_rebuilt(tmp_path, cached):
    f, corpus = cached
    meta_path = corpus.path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta["vocab"]["chars"] = meta["vocab"]["chars"][::-1]
    meta_path.write_text(json.dumps(meta))
    rebuilt(tmp_path, f, np.array(corpus.tokens), "code-point order")


def test_a_big_token_file_is_checked_by_sampled_blocks(tmp_path, cached, monkeypatch):
    f, corpus = cached
    monkeypatch.setattr(charrnn.text.tokens, "FULL_CHECK_BYTES", 0)  # as if it were larger than 64 MB
    good = np.array(corpus.tokens)
    bad = good.copy()
    bad[0] = (bad[0] + 1) % len(corpus.vocab)  # inside the first sampled block, still a valid id
    corpus.path.write_bytes(bad.tobytes())
    rebuilt(tmp_path, f, good, "does not match the checksum")


def test_a_file_edited_with_its_mtime_restored_is_read_again(tmp_path, cached):
    f, corpus = cached
    st = f.stat()
    f.write_text(TINY_TEXT.replace("quick", "QUICK"))  # same size, other content
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime put back, as `touch -r` would
    again = prepare_corpus([str(f)], cache=tmp_path / "cache")
    assert not again.cached and "Q" in again.vocab


def test_training_on_a_damaged_cache_warns_and_trains_on_the_text(in_tmp, monkeypatch):
    monkeypatch.setenv("CHARRNN_CACHE", str(in_tmp / "cache"))
    (in_tmp / "c.txt").write_text(TINY_TEXT)
    corpus = prepare_corpus(["c.txt"])
    corpus.path.write_bytes(os.urandom(corpus.path.stat().st_size))
    result = runner.invoke(app, ["train", "c.txt", "-o", "run", "--steps", "2", "--hidden", "16", "--embed", "8",
                                 "-b", "4", "-t", "16", "--threads", "1", "--sample-every", "0"])
    assert result.exit_code == 0 and "Traceback" not in result.stderr
    assert "token cache entry" in result.stderr and "damaged" in result.stderr and "cached tokens" not in result.stderr


def test_a_cache_entry_nested_past_pythons_limit_is_damaged_not_a_traceback(tmp_path):
    (tmp_path / "c.txt").write_text(TINY_TEXT)
    corpus = prepare_corpus([str(tmp_path / "c.txt")], cache=tmp_path / "cache")
    for meta in (tmp_path / "cache").rglob("*.json"):
        meta.write_text('{"format": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.warns(RuntimeWarning, match="is damaged"):
        again = prepare_corpus([str(tmp_path / "c.txt")], cache=tmp_path / "cache")
    assert not again.cached and again.tokens.tolist() == corpus.tokens.tolist()


def test_killed_runs_leave_nothing_in_the_cache_for_long(tmp_path):
    root = tmp_path / "cache"
    for sub, name in (("tokens", ".abc.bin.999999999.x1.tmp"), ("spool", ".stdin.999999999.x2.tmp")):
        (root / sub).mkdir(parents=True)
        (root / sub / name).write_bytes(b"x" * 1000)
    live = root / "spool" / f".stdin.{os.getpid()}.x3.tmp"
    live.write_bytes(b"mine")
    (tmp_path / "c.txt").write_text(TINY_TEXT)
    prepare_corpus([str(tmp_path / "c.txt")], cache=root)
    assert sorted(p.name for p in root.rglob("*.tmp")) == [live.name]
