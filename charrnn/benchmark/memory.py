"""Peak memory of training, measured in a fresh subprocess per model shape.

A process's peak resident set size only ever grows, so each shape gets its own
Python process: it imports torch (the baseline), trains a few steps on a small synthetic
corpus, runs one validation pass, and reports both peaks as JSON on its stdout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from charrnn.benchmark.rows import BenchConfig, Row, synthetic_text
from charrnn.model.config import ModelConfig
from charrnn.training.config import TrainConfig
from charrnn.training.trainer import Trainer
from charrnn.text.vocab import Vocab

RSS_CHILD = "import sys, json; from charrnn.benchmark.memory import rss_child; print(json.dumps(rss_child(*map(int, sys.argv[1:]))))"


def peak_rss_mb() -> float:
    """This process's peak resident set size in MB: on Linux VmHWM, which belongs to the current address
    space (Linux carries ru_maxrss across execve: a child of a big parent would report the parent's peak)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    scale = 1024 * 1024 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def rss_child(layers: int, hidden: int, embed: int, batch: int, seq_len: int, steps: int, n_threads: int) -> dict:
    """Run in a fresh process: peak RSS (MB) after imports, and after training steps + one validation."""
    base = peak_rss_mb()
    text = synthetic_text(300_000)
    vocab = Vocab.from_text(text)
    tokens = vocab.encode_array(text)
    mcfg = ModelConfig(vocab_size=len(vocab), layers=layers, hidden=hidden, embed=embed)
    tcfg = TrainConfig(batch_size=batch, seq_len=seq_len, threads=n_threads, device="cpu")
    trainer = Trainer(mcfg, tcfg, vocab, tokens[:270_000], tokens[270_000:])
    for _ in range(steps):
        trainer.train_step()
    trainer.validate()
    return {"base_mb": base, "peak_mb": peak_rss_mb(), "params": trainer.model.num_params()}


def memory_setup(item, cfg: BenchConfig) -> tuple[str, str, list[int]]:
    """A preset name ("default" = the dataclass defaults) or (layers, hidden) -> key, label, rss_child args."""
    if isinstance(item, str):
        from charrnn.training.config import get_preset

        p = {} if item == "default" else get_preset(item)
        m, t = ModelConfig(vocab_size=1), TrainConfig()
        layers, hidden, embed = (p.get(k, getattr(m, k)) for k in ("layers", "hidden", "embed"))
        batch, seq_len = (p.get(k, getattr(t, k)) for k in ("batch_size", "seq_len"))
        label = "defaults" if item == "default" else f"{item} preset"
        return (f"memory_{item}", f"peak RSS training, {label}, {layers}×{hidden} B{batch}×T{seq_len}",
                [layers, hidden, embed, batch, seq_len])
    layers, hidden = item
    return (f"memory_lstm_{layers}x{hidden}", f"peak RSS training {layers}×{hidden} LSTM",
            [layers, hidden, cfg.embed, cfg.batch_size, cfg.seq_len])


def memory_rows(cfg: BenchConfig, log: Callable[[str], None]) -> list[Row]:
    """Peak RSS of training each preset (or shape), each in its own subprocess (a small corpus)."""
    rows = []
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[2]),  # the checkout
                                                       os.environ.get("PYTHONPATH", "")]))
    for item in cfg.memory_shapes:
        key, what, shape = memory_setup(item, cfg)
        log(f"{what} (subprocess)")
        args = [*shape, cfg.memory_steps, cfg.threads]
        done = subprocess.run([sys.executable, "-c", RSS_CHILD, *map(str, args)], capture_output=True,
                              text=True, env=env, timeout=900)
        if done.returncode != 0:
            rows.append(Row(key, what, None, "MB", note=f"failed: {done.stderr.strip().splitlines()[-1:]}"))
            continue
        d = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(Row(key, what, d["peak_mb"], "MB", "after import torch", d["base_mb"],
                        note="corpus-size independence: see the corpora benchmark", extra={"params": d["params"]}))
    return rows
