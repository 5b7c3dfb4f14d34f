"""Shared fixtures. Tests run single-threaded: tiny models are many times faster that way."""

from __future__ import annotations

import os
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
    from charrnn.train import TrainConfig, train_on_text

    out = tmp_path_factory.mktemp("run")
    cfg = TrainConfig(steps=80, batch_size=4, seq_len=32, lr=1e-2, eval_every=40, threads=1, precision="fp32")
    train_on_text(TINY_TEXT, {"hidden": 32, "embed": 8}, cfg, out)
    return out


@pytest.fixture
def in_tmp(tmp_path, monkeypatch) -> Path:
    """Run a test from an empty working folder (so ./checkpoints is its own)."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def env_without_threads() -> dict:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    return env
