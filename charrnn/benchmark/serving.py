"""The serve rows of the benchmark: a bounded load test of `charrnn serve` on 127.0.0.1.

A model of the configured shape (random weights: speed does not depend on what it learned)
is written to a temporary file and served by `charrnn serve` in a subprocess, so the
server and the load clients (`serve.loadtest`, in this process) do not share a GIL, only the
machine. Then 1, 8, 32 and 64 concurrent streaming clients (`serve_clients`) take turns
round by round. Each level is one row:

    figure     total characters per second, all clients together
    baseline   the same with one client; the goal is 32 clients >= 8x one client
    note       characters per second each client sees, time to first character p50 / p99

It runs for each precision in `serve_precisions` (bf16 only where the CPU computes it
natively). The server only ever listens on 127.0.0.1 and is stopped at the end, whatever happens.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import torch

from charrnn.benchmark.rows import BenchConfig, Row
from charrnn.training.checkpoint import checkpoint_bytes, write_checkpoint_bytes
from charrnn.model.config import ModelConfig
from charrnn.model.rnn import CharRNN
from charrnn.text.vocab import Vocab

SERVE_GOAL = (32, 8.0)  # 32 clients: >= 8x the total chars/s of one


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def served(checkpoint: Path, precision: str, max_concurrent: int, timeout: float = 60.0):
    """`charrnn serve` on 127.0.0.1 in a subprocess; yields its port, stops it on the way out."""
    port = free_port()
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, "-m", "charrnn", "serve", str(checkpoint), "--port", str(port),
                             "--precision", precision, "--max-concurrent", str(max_concurrent), "--threads", "1"],
                            stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"charrnn serve did not start: {log.read().decode(errors='replace')[-500:]}")
                time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def serve_rows(cfg: BenchConfig, vocab: Vocab, log: Callable[[str], None]) -> list[Row]:
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        return [Row("serve", "serve: needs the serve extra", None, "chars/s", note="skipped: pip install 'charrnn[serve]'")]
    from charrnn.serve.loadtest import measure
    from charrnn.runtime.device import cpu_has_fast_bf16

    layers, hidden = cfg.serve_shape
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=len(vocab), layers=layers, hidden=hidden, embed=cfg.embed))
    payload = {"model_config": model.config.to_dict(), "vocab": vocab.to_dict(), "model": model.state_dict()}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "serve-bench.pt"
        write_checkpoint_bytes(checkpoint, checkpoint_bytes(payload))
        for precision in cfg.serve_precisions:
            if precision == "bf16" and not cpu_has_fast_bf16():
                continue
            log(f"serve {layers}×{hidden} LSTM, {precision}: {', '.join(map(str, cfg.serve_clients))} streaming clients "
                f"of {cfg.serve_chars} characters, {cfg.serve_rounds} rounds each")
            with served(checkpoint, precision, max(cfg.serve_clients)) as port:
                levels = asyncio.run(measure("127.0.0.1", port, cfg.serve_clients, cfg.serve_chars, cfg.serve_rounds))
            one = next((lv.total_chars_per_sec for lv in levels if lv.clients == 1), None)
            for lv in levels:
                rows.append(Row(
                    f"serve_{precision}_{lv.clients}c",
                    f"serve {layers}×{hidden} LSTM, {lv.clients} streaming client{'s' if lv.clients > 1 else ''}, {precision}",
                    lv.total_chars_per_sec, "chars/s", "1 client" if lv.clients > 1 else "",
                    one if lv.clients > 1 else None, goal_ratio=SERVE_GOAL[1] if lv.clients == SERVE_GOAL[0] else None,
                    note=f"{lv.per_client_chars_per_sec:,.0f} chars/s per client; first char p50 "
                         f"{lv.first_char_p50 * 1000:.0f} ms, p99 {lv.first_char_p99 * 1000:.0f} ms",
                    extra={**asdict(lv), "precision": precision}))
    return rows
