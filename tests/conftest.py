"""Shared fixtures. Tests run single-threaded: tiny models are many times faster that way."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "corpora"
TINY_TEXT = ("the quick brown fox jumps over the lazy dog.\n" * 40)


@pytest.fixture(autouse=True, scope="session")
def _token_cache(tmp_path_factory):
    """Token caches made by tests go to a temporary folder, never to ~/.cache/charrnn."""
    mp = pytest.MonkeyPatch()
    mp.setenv("CHARRNN_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """A tiny trained run folder (best.pt, last.pt) made through the library in about a second."""
    from charrnn import TrainConfig, train_on_text

    out = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(steps=80, batch_size=4, seq_len=32, lr=1e-2, eval_every=40, threads=1, precision="fp32",
                      device="cpu", activation_reg=0.0, temporal_reg=0.0)  # (the tests' texts are read as they were)
    train_on_text(TINY_TEXT, {"hidden": 32, "embed": 8}, cfg, out)
    return out


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    """Run a test from an empty working folder (so ./checkpoints is its own)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def fifo_with(path: Path, data: bytes) -> Path:
    """A named pipe at `path` that gives `data` once, to its first reader: what bash's `<(cmd)` hands a
    command (as /dev/fd/63). A thread writes it; it waits, harmlessly, if nothing ever reads."""
    if not hasattr(os, "mkfifo"):
        pytest.skip("no named pipes on this system")
    os.mkfifo(path)

    def write() -> None:
        with open(path, "wb") as f:
            f.write(data)

    threading.Thread(target=write, daemon=True).start()
    return path


def one_corpus_catalog(monkeypatch, mirror: Path, name: str, data: bytes):
    """The catalog holds one corpus, `name`, whose text `data` lies in the `mirror` folder (its URL fails at
    once, so only the mirror can fetch it): its CorpusEntry."""
    import hashlib

    import charrnn.text.catalog

    (mirror / f"{name}.txt").write_bytes(data)
    entry = charrnn.text.catalog.CorpusEntry(name, "test", f"https://invalid.example/{name}.txt",
                                             hashlib.sha256(data).hexdigest(), len(data), "CC0")
    monkeypatch.setattr(charrnn.text.catalog, "load_catalog", lambda: {name: entry})
    return entry


def env_without_threads() -> dict:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    return env


# A text a tiny model learns by heart in a second; its second line is HTML, so the playground's
# test can check that generated markup is shown as text and never run.
PARROT_TEXT = ("the quick brown fox jumps over the lazy dog.\n"
               "<script>document.title='pwned'</script><img src=x onerror=alert(1)>\n") * 30


@pytest.fixture(scope="session")
def parrot_run(tmp_path_factory) -> Path:
    """A tiny run that knows PARROT_TEXT by heart: greedy decoding recites it (for tests that need real words)."""
    from charrnn import TrainConfig, train_on_text

    out = tmp_path_factory.mktemp("parrot")
    cfg = TrainConfig(steps=200, batch_size=8, seq_len=48, lr=2e-2, eval_every=200, sample_every=0, threads=1,
                      precision="fp32", device="cpu", activation_reg=0.0, temporal_reg=0.0)  # by heart: no regularizer
    train_on_text(PARROT_TEXT, {"hidden": 48, "embed": 16, "layers": 1}, cfg, out)
    return out
