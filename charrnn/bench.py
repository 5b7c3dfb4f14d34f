"""The benchmark: charrnn's speed as ratios against plain PyTorch, measured in one run.

Every row holds a figure, the baseline it is compared with, and their ratio. The baselines
are measured in the same process, on the same cores, interleaved window by window with the
figure they are compared to, so a busy machine slows both alike and the ratio stays honest.
Each figure is the best of `repeats` timed windows.

    row        figure                                   baseline
    train_*    charrnn's Trainer step, chars/s          a plain fp32 nn.LSTM loop (below), same B, T, threads
    train_gru  GRU training, achieved GFLOP/s           the LSTM's GFLOP/s (same trainer, same shape)
    sample_*   sample_ids(fast=True) at batch 1         eager nn.LSTM stepping (fast=False)
    beam       beam search, width 5, chars/s            eager nn.LSTM stepping at batch 5, steps/s
    eval       evaluate(), no gradients, chars/s        training chars/s of the same shape
    memory_*   peak RSS of a training subprocess, MB    the same subprocess after `import torch`
    serve_*    `charrnn serve` under N streaming         the same with one client (bench_serve.py)
               clients, total chars/s

FLOPs per character, counting only the matrix products: a layer with G gates (LSTM 4,
GRU 3, RNN 1), input width I and H units multiplies a (G*H, I + H) matrix forward, costing
2*G*H*(I + H) FLOPs; the backward pass costs about twice that (gradients for inputs and
weights), so training costs 6*G*H*(I + H) per layer, plus 6*H*V for the output layer.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from charrnn.evaluation import evaluate
from charrnn.model import CharRNN, ModelConfig
from charrnn.beam import beam_search, step_dtype
from charrnn.bench_memory import memory_rows
from charrnn.benchrows import SECTIONS, BenchConfig, Row, flops_per_char, synthetic_text  # noqa: F401  (SECTIONS: for the CLI)
from charrnn.sampling import sample_ids, tune_threads
from charrnn.config import TrainConfig
from charrnn.runtime import cpu_has_fast_bf16, default_threads, resolve_precision
from charrnn.runtime import torch_threads as threads
from charrnn.train import Trainer
from charrnn.vocab import Vocab

# ---- the plain baseline: what a PyTorch user writes without charrnn ----------------------------


class PlainRNN(nn.Module):
    """embedding -> nn.LSTM (or nn.GRU) -> linear, nothing else."""

    def __init__(self, vocab_size: int, embed: int, hidden: int, layers: int, cell: str = "lstm"):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed)
        self.rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell](embed, hidden, layers, batch_first=True)
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, x, hx=None):
        out, hx = self.rnn(self.embedding(x), hx)  # (B, T, H)
        return self.head(out), hx  # (B, T, V)


class PlainTrainer:
    """A plain fp32 loop: B contiguous streams read T characters at a time, AdamW, clip at 5."""

    def __init__(self, tokens: np.ndarray, vocab_size: int, layers: int, hidden: int, embed: int,
                 batch_size: int, seq_len: int, lr: float = 4e-3, cell: str = "lstm"):
        n = len(tokens) // batch_size
        self.data = torch.from_numpy(np.asarray(tokens[: n * batch_size], dtype=np.int64)).view(batch_size, n)
        self.model = PlainRNN(vocab_size, embed, hidden, layers, cell)
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=lr)
        self.seq_len, self.pos, self.hx = seq_len, 0, None

    def step(self) -> float:
        """One training step; returns the loss in nats/char."""
        T = self.seq_len
        if self.pos + T + 1 > self.data.size(1):
            self.pos, self.hx = 0, None
        chunk = self.data[:, self.pos : self.pos + T + 1]  # (B, T+1)
        self.pos += T
        logits, hx = self.model(chunk[:, :-1], self.hx)  # (B, T, V)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), chunk[:, 1:].reshape(-1))
        self.opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
        self.opt.step()
        self.hx = tuple(h.detach() for h in hx) if isinstance(hx, tuple) else hx.detach()
        return loss.item()


# ---- timing ----------------------------------------------------------------------------------


def rate(fn: Callable[[], object], units: float, window: float, warmup: int = 2) -> float:
    """Units per second of calling fn() repeatedly for about `window` seconds (after warm-up)."""
    for _ in range(warmup):
        fn()
    calls, t0 = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= window:
            return calls * units / elapsed


def best_rates(contenders: dict[str, tuple[Callable, float]], cfg: BenchConfig) -> dict[str, float]:
    """Best rate of each contender over cfg.repeats windows, taken in turn (A, B, A, B, ...)."""
    best = dict.fromkeys(contenders, 0.0)
    for r in range(cfg.repeats):
        for name, (fn, units) in contenders.items():
            best[name] = max(best[name], rate(fn, units, cfg.window, warmup=2 if r == 0 else 0))
    return best


# ---- the text ----------------------------------------------------------------------------------


def bench_text(corpus: str | None) -> tuple[str, str]:
    """(name, text): the corpus asked for; else Tiny Shakespeare if fetched or mirrored; else random text."""
    from charrnn.catalog import fetch, is_fetched, load_catalog, resolve_source
    from charrnn.corpus import read_text
    from charrnn.errors import CharrnnError

    if corpus:
        return corpus, read_text([resolve_source(corpus)])
    entry = load_catalog().get("shakespeare")
    if entry and (is_fetched(entry) or os.environ.get("CHARRNN_MIRROR")):
        try:
            return "shakespeare", read_text([str(fetch("shakespeare"))])
        except CharrnnError:
            pass
    return "random text", synthetic_text(1_200_000)


# ---- the rows ----------------------------------------------------------------------------------

SAMPLE_GOALS = {(2, 512): 5_000, (2, 256): 10_000}  # chars/s at batch 1 (issue 8)
BEAM_GOALS = {(2, 512, 5): 1_500}  # chars/s at (layers, hidden, width)


def _precision_name() -> str:
    return "bf16 autocast" if resolve_precision("auto", torch.device("cpu")) == torch.bfloat16 else "fp32"


def _trainer(cfg: BenchConfig, vocab: Vocab, tokens: np.ndarray, cell: str, layers: int, hidden: int) -> Trainer:
    mcfg = ModelConfig(vocab_size=len(vocab), cell=cell, layers=layers, hidden=hidden, embed=cfg.embed)
    tcfg = TrainConfig(batch_size=cfg.batch_size, seq_len=cfg.seq_len, threads=cfg.threads, device="cpu")
    return Trainer(mcfg, tcfg, vocab, tokens, tokens[:2])


def train_rows(cfg: BenchConfig, vocab: Vocab, tokens: np.ndarray, log: Callable[[str], None]) -> tuple[list[Row], dict]:
    """charrnn's Trainer vs the plain loop per LSTM shape, and GRU vs LSTM per FLOP."""
    rows, ours = [], {}
    chars, V, prec = cfg.batch_size * cfg.seq_len, len(vocab), _precision_name()
    with threads(cfg.threads):
        for layers, hidden in cfg.train_shapes:
            log(f"training {layers}×{hidden} LSTM: charrnn vs a plain fp32 nn.LSTM loop")
            trainer = _trainer(cfg, vocab, tokens, "lstm", layers, hidden)
            plain = PlainTrainer(tokens, V, layers, hidden, cfg.embed, cfg.batch_size, cfg.seq_len)
            r = best_rates({"charrnn": (trainer.train_step, chars), "plain": (plain.step, chars)}, cfg)
            ours[(layers, hidden)] = r["charrnn"]
            gflop = flops_per_char("lstm", layers, hidden, cfg.embed, V) / 1e9
            rows.append(Row(f"train_lstm_{layers}x{hidden}", f"train {layers}×{hidden} LSTM, charrnn ({prec})",
                            r["charrnn"], "chars/s", "plain fp32 nn.LSTM", r["plain"], goal_ratio=1.3,
                            extra={"gflops": r["charrnn"] * gflop, "baseline_gflops": r["plain"] * gflop}))
        if cfg.gru_shape:
            layers, hidden = cfg.gru_shape
            log(f"training {layers}×{hidden} GRU vs LSTM, per FLOP")
            gru, lstm = (_trainer(cfg, vocab, tokens, c, layers, hidden) for c in ("gru", "lstm"))
            r = best_rates({"gru": (gru.train_step, chars), "lstm": (lstm.train_step, chars)}, cfg)
            g = {c: r[c] * flops_per_char(c, layers, hidden, cfg.embed, V) / 1e9 for c in r}
            rows.append(Row(f"train_gru_{layers}x{hidden}", f"train {layers}×{hidden} GRU, charrnn ({prec})",
                            g["gru"], "GFLOP/s", f"{layers}×{hidden} LSTM", g["lstm"], goal_ratio=1.0,
                            note=f"GRU {r['gru']:,.0f} vs LSTM {r['lstm']:,.0f} chars/s",
                            extra={"gru_chars_per_sec": r["gru"], "lstm_chars_per_sec": r["lstm"]}))
    return rows, ours


def sample_rows(cfg: BenchConfig, vocab: Vocab, log: Callable[[str], None]) -> list[Row]:
    """sample_ids at batch 1: the hand-written step (fast=True) vs eager nn.LSTM stepping, same threads."""
    rows = []
    for layers, hidden in cfg.sample_shapes:
        torch.manual_seed(0)
        model = CharRNN(ModelConfig(vocab_size=len(vocab), layers=layers, hidden=hidden, embed=cfg.embed)).eval()
        for i, n in enumerate(cfg.sample_threads):
            chosen = n or tune_threads(model)
            how = f"{chosen} thread{'s' if chosen > 1 else ''}" + (" (tuned)" if n == 0 else "")
            log(f"sampling {layers}×{hidden} LSTM at batch 1, {how}: fast vs eager")
            with threads(chosen):
                fast = sample_ids(model, [0], 10**12, temperature=1.0, seed=1, fast=True)
                eager = sample_ids(model, [0], 10**12, temperature=1.0, seed=1, fast=False)
                r = best_rates({"fast": (lambda: next(fast), 1), "eager": (lambda: next(eager), 1)}, cfg)
            suffix = "" if i == 0 else f"_t{n}"
            rows.append(Row(f"sample_lstm_{layers}x{hidden}{suffix}", f"sample {layers}×{hidden} LSTM, batch 1, {how}",
                            r["fast"], "chars/s", "eager nn.LSTM step", r["eager"], goal_ratio=15.0,
                            goal_figure=SAMPLE_GOALS.get((layers, hidden)) if i == 0 else None,
                            extra={"threads": chosen}))
    return rows


def beam_rows(cfg: BenchConfig, vocab: Vocab, log: Callable[[str], None]) -> list[Row]:
    """Beam search as `charrnn beam` runs it (auto precision, tuned threads) vs eager nn.LSTM at batch = width."""
    layers, hidden = cfg.beam_shape
    w = cfg.beam_width
    key, what = f"beam_w{w}_{layers}x{hidden}", f"beam search, width {w}, {layers}×{hidden} LSTM"
    log(f"beam search, width {w}, {layers}×{hidden} LSTM")
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=len(vocab), layers=layers, hidden=hidden, embed=cfg.embed)).eval()
    x, state = torch.zeros(w, 1, dtype=torch.long), model.init_state(w)
    dtype = step_dtype("auto", "cpu", w)
    chosen = tune_threads(model, w, dtype)

    @torch.inference_mode()
    def eager_step() -> None:
        model(x, state)  # (w, 1, V): one nn.LSTM call per character

    length = 200
    with threads(chosen):
        r = best_rates({"beam": (lambda: beam_search(model, vocab, width=w, length=length, dtype=dtype), length),
                        "eager": (eager_step, 1)}, cfg)
    prec = "bf16" if dtype == torch.bfloat16 else "fp32"
    return [Row(key, f"{what}, {prec}, {chosen} thread{'s' if chosen > 1 else ''}", r["beam"], "chars/s",
                f"eager nn.LSTM steps/s at batch {w}", r["eager"], goal_figure=BEAM_GOALS.get((layers, hidden, w)),
                extra={"threads": chosen, "precision": prec})]


def eval_rows(cfg: BenchConfig, vocab: Vocab, tokens: np.ndarray, train_rates: dict,
              log: Callable[[str], None]) -> list[Row]:
    """evaluate() (no gradients, large batches) vs training chars/s of the same shape."""
    layers, hidden = cfg.eval_shape
    log(f"evaluating a {layers}×{hidden} LSTM ({cfg.eval_batch} streams) vs training it")
    model = CharRNN(ModelConfig(vocab_size=len(vocab), layers=layers, hidden=hidden, embed=cfg.embed))
    text = tokens[: cfg.eval_chars]
    dtype = resolve_precision("auto", torch.device("cpu"))
    contenders = {"eval": (lambda: evaluate(model, text, cfg.eval_batch, 256, "cpu", dtype), len(text) - 1)}
    if (layers, hidden) not in train_rates:
        trainer = _trainer(cfg, vocab, tokens, "lstm", layers, hidden)
        contenders["train"] = (trainer.train_step, cfg.batch_size * cfg.seq_len)
    with threads(cfg.threads):
        r = best_rates(contenders, cfg)
    train = r.get("train", train_rates.get((layers, hidden)))
    return [Row(f"eval_lstm_{layers}x{hidden}", f"evaluate {layers}×{hidden} LSTM, {cfg.eval_batch} streams",
                r["eval"], "chars/s", "training chars/s", train, goal_ratio=20.0)]


# ---- the whole run -----------------------------------------------------------------------------


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": default_threads(), "torch": torch.__version__,
            "fast_bf16": cpu_has_fast_bf16(), "python": platform.python_version()}


def run_bench(cfg: BenchConfig, corpus: str | None = None, log: Callable[[str], None] = lambda s: None) -> dict:
    """Run the chosen sections; returns {"machine", "config", "corpus", "rows", "seconds"}."""
    t0 = time.perf_counter()
    name, text = bench_text(corpus)
    vocab = Vocab.from_text(text)
    tokens = vocab.encode_array(text)
    rows, train_rates = [], {}
    if "train" in cfg.sections:
        train, train_rates = train_rows(cfg, vocab, tokens, log)
        rows += train
    if "sample" in cfg.sections:
        rows += sample_rows(cfg, vocab, log)
    if "beam" in cfg.sections and cfg.beam_shape:
        rows += beam_rows(cfg, vocab, log)
    if "eval" in cfg.sections:
        rows += eval_rows(cfg, vocab, tokens, train_rates, log)
    if "memory" in cfg.sections:
        rows += memory_rows(cfg, log)
    if "serve" in cfg.sections:
        from charrnn.bench_serve import serve_rows  # (it needs the serve extra, which the other rows do not)

        rows += serve_rows(cfg, vocab, log)
    return {"machine": machine(), "config": asdict(cfg), "corpus": {"name": name, "chars": len(text)},
            "rows": [r.to_dict() for r in rows], "seconds": time.perf_counter() - t0}
