"""torchrun on the CPU (gloo): two processes must train exactly like one with the same global batch."""

import subprocess
import sys

import pytest
import torch

from charrnn.training.distributed import DistInfo, setup
from charrnn.util.errors import CharrnnError

from .conftest import env_without_threads

ARGS = ["--steps", "24", "--hidden", "32", "--embed", "8", "-b", "4", "-t", "16", "--threads", "1", "--device", "cpu",
        "--precision", "fp32", "--eval-every", "12", "--lr", "1e-2"]


def test_two_processes_match_one(tmp_path):
    text = ("the quick brown fox jumps over the lazy dog. " * 10 + "\n") * 40
    (tmp_path / "t.txt").write_text(text)
    run = lambda *cmd: subprocess.run([*cmd], cwd=tmp_path, capture_output=True, text=True,
                                      env=env_without_threads(), timeout=180)
    two = run(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
              "-m", "charrnn", "train", "t.txt", *ARGS)
    assert two.returncode == 0, two.stderr[-3000:]
    one = run(sys.executable, "-m", "charrnn", "train", "t.txt", "-o", "single", *ARGS)
    assert one.returncode == 0, one.stderr[-2000:]

    # only rank 0 wrote: one run folder, one summary line
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["t"]
    assert two.stderr.count("done:") == 1 and two.stderr.count("corpus:") == 1

    a = torch.load(tmp_path / "single" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "checkpoints" / "t" / "last.pt", weights_only=True)
    for k in a["model"]:
        assert torch.allclose(a["model"][k], b["model"][k], atol=1e-5), k
    assert a["metrics"][-1]["val_bpc"] == pytest.approx(b["metrics"][-1]["val_bpc"], abs=1e-6)
    # the carried state of all 4 streams is stored, whatever the number of processes
    assert b["extra"]["state"][0].shape == a["extra"]["state"][0].shape == (2, 4, 32)
    assert torch.allclose(a["extra"]["state"][0], b["extra"]["state"][0], atol=1e-5)

    # resume on another number of processes: the 2-process run continues in 1 process (and the
    # 1-process run in 2) exactly like the 1-process run continues in 1 process
    more = ["--steps", "36", "--threads", "1"]
    one_more = run(sys.executable, "-m", "charrnn", "train", "--resume", "single", *more)
    assert one_more.returncode == 0, one_more.stderr[-2000:]
    two_then_one = run(sys.executable, "-m", "charrnn", "train", "--resume", "checkpoints/t", *more)
    assert two_then_one.returncode == 0, two_then_one.stderr[-2000:]
    a = torch.load(tmp_path / "single" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "checkpoints" / "t" / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 36
    for k in a["model"]:
        assert torch.allclose(a["model"][k], b["model"][k], atol=1e-5), k


def test_world_size_must_divide_the_streams(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(CharrnnError, match="not divisible by the 2 processes"):
        setup(torch.device("cpu"), batch_size=3)


def test_shards_partition_the_streams():
    shards = [DistInfo(rank=r, world=4).shard(16) for r in range(4)]
    assert [list(range(16))[s] for s in shards] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]]


def test_sharded_validation_sums_to_the_whole():
    import numpy as np

    from charrnn.inspect.evaluation import evaluate
    from charrnn.model.rnn import CharRNN, ModelConfig

    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=10, hidden=16, embed=4))
    tokens = np.random.default_rng(0).integers(0, 10, 1000)
    whole = evaluate(model, tokens, batch_size=8, seq_len=32)
    parts = [evaluate(model, tokens, batch_size=8, seq_len=32, shard=(r, 3)) for r in range(3)]
    assert sum(p.chars for p in parts) == whole.chars == 999
    assert sum(p.nll_nats for p in parts) == pytest.approx(whole.nll_nats, rel=1e-6)
