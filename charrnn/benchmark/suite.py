"""The benchmark: charrnn's speed as ratios against plain PyTorch, measured in one run.

Every row holds a figure, the baseline it is compared with, and their ratio. The baselines
are measured in the same process, on the same cores, interleaved window by window with the
figure they are compared to, so a busy machine slows both alike and the ratio stays honest.
Each figure is the best of `repeats` timed windows.

    row        figure                                   baseline
    train_*    charrnn's Trainer step, chars/s, in the  a plain fp32 nn.LSTM loop (below), same B, T, threads
               precision auto picks from fp32 and bf16
               timed here (both shown)
    train_gru  GRU training, achieved GFLOP/s           the LSTM's GFLOP/s (same trainer, same shape)
    sample_*   sample_ids at batch 1 with the step      eager nn.LSTM stepping (fast=False)
               kernel and threads auto picks from
               every kernel timed here (all shown)
    beam       beam search, width 5, chars/s            eager nn.LSTM stepping at batch 5, steps/s
    eval       evaluate(), no gradients, chars/s        training chars/s of the same shape
    kernel_*   bits/char of held-out text through a     the fp32 kernel's (needs --checkpoint)
               reduced-precision step kernel
    memory_*   peak RSS of a training subprocess, MB    the same subprocess after `import torch`
    serve_*    `charrnn serve` under N streaming         the same with one client (serving.py)
               clients, total chars/s

The choices are made with the same rules as `charrnn train`, `sample` and `beam` make them
(`charrnn.runtime.timing`), from the rates measured here, never from the cache.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from charrnn.benchmark.memory import memory_rows
from charrnn.benchmark.rows import BenchConfig, Row, flops_per_char, synthetic_text
from charrnn.generation.beam import beam_search
from charrnn.generation.sampling import sample_ids
from charrnn.generation.settings import Sampling
from charrnn.inspect.evaluation import evaluate, kernel_bits_per_char
from charrnn.model.kernels import choose_kernel, kernels_for
from charrnn.model.rnn import CharRNN, ModelConfig
from charrnn.runtime.cache import TuneCache, cpu_info, cpu_summary
from charrnn.runtime.device import cpu_has_fast_bf16
from charrnn.runtime.threads import candidates, default_threads, set_threads
from charrnn.runtime.threads import torch_threads as threads
from charrnn.runtime.timing import (LOW_PRECISION_MARGIN, SAMPLE_THREAD_MARGIN, choose, interleaved_rates,
                                    precision_verdict, thread_verdict)
from charrnn.text.vocab import Vocab
from charrnn.training.config import TrainConfig
from charrnn.training.speed import DTYPES, eval_precision
from charrnn.training.trainer import Trainer

# ---- the plain baseline: what a PyTorch user writes without charrnn ----------------------------


class PlainRNN(nn.Module):
    """embedding -> nn.LSTM -> linear, nothing else."""

    def __init__(self, vocab_size: int, embed: int, hidden: int, layers: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embed)
        self.rnn = nn.LSTM(embed, hidden, layers, batch_first=True)
        self.head = nn.Linear(hidden, vocab_size)

    def forward(self, x, hx=None):
        out, hx = self.rnn(self.embedding(x), hx)  # (B, T, H)
        return self.head(out), hx  # (B, T, V)


class PlainTrainer:
    """A plain fp32 loop (cuDNN's nn.LSTM on a GPU): B contiguous streams read T characters at a time, AdamW, clip at 5."""

    def __init__(self, tokens: np.ndarray, vocab_size: int, layers: int, hidden: int, embed: int,
                 batch_size: int, seq_len: int, lr: float = 4e-3, device: str = "cpu"):
        n = len(tokens) // batch_size
        data = torch.from_numpy(np.asarray(tokens[: n * batch_size], dtype=np.int64)).view(batch_size, n)
        self.data = data.to(device)  # (B, n): the whole text on the device, as a plain script keeps it
        self.model = PlainRNN(vocab_size, embed, hidden, layers).to(device)
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
        self.hx = tuple(h.detach() for h in hx)  # (h, c): carried to the next chunk, its graph cut
        return loss.item()


def rate(fn: Callable[[], object], units: float, window: float, warmup: int = 2) -> float:
    """Units per second of calling fn() repeatedly for about `window` seconds, after warm-up (bench/gpu.py)."""
    for _ in range(warmup):
        fn()
    calls, t0 = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= window:
            return calls * units / elapsed


# ---- the text ----------------------------------------------------------------------------------


def bench_text(corpus: str | None) -> tuple[str, str]:
    """(name, text): the corpus asked for; else Tiny Shakespeare if fetched or mirrored; else random text."""
    from charrnn.text.catalog import fetch, found_path, load_catalog, resolve_source
    from charrnn.text.corpus import read_text
    from charrnn.util.errors import CharrnnError

    if corpus:
        return corpus, read_text([resolve_source(corpus)])
    entry = load_catalog().get("shakespeare")
    if entry and (found_path(entry) is not None or os.environ.get("CHARRNN_MIRROR")):
        try:
            return "shakespeare", read_text([str(fetch("shakespeare"))])
        except CharrnnError:
            pass
    return "random text", synthetic_text(1_200_000)


# ---- the rows ----------------------------------------------------------------------------------

SAMPLE_GOALS = {(2, 512): 8_000, (2, 256): 20_000}  # chars/s at batch 1
BEAM_GOALS = {(2, 512, 5): 3_000}  # chars/s at (layers, hidden, width)
PRECISION_NAMES = {"fp32": "fp32", "bf16": "bf16 autocast"}


def _trainer(cfg: BenchConfig, vocab: Vocab, tokens: np.ndarray, cell: str, layers: int, hidden: int,
             precision: str = "fp32") -> Trainer:
    mcfg = ModelConfig(vocab_size=len(vocab), cell=cell, layers=layers, hidden=hidden, embed=cfg.embed)
    tcfg = TrainConfig(batch_size=cfg.batch_size, seq_len=cfg.seq_len, threads=cfg.threads or default_threads(),
                       device="cpu", precision=precision)
    return Trainer(mcfg, tcfg, vocab, tokens, tokens[:2])


def train_rows(cfg: BenchConfig, vocab: Vocab, tokens: np.ndarray, log: Callable[[str], None]) -> tuple[list[Row], dict]:
    """charrnn's Trainer in fp32 and bf16 (auto keeps the faster) vs the plain loop per LSTM shape; GRU vs LSTM."""
    rows, ours, choices = [], {}, {}
    chars, V = cfg.batch_size * cfg.seq_len, len(vocab)
    with threads(cfg.threads):
        for layers, hidden in cfg.train_shapes:
            log(f"training {layers}×{hidden} LSTM: charrnn in fp32 and bf16 vs a plain fp32 nn.LSTM loop")
            ours_by = {p: _trainer(cfg, vocab, tokens, "lstm", layers, hidden, p) for p in DTYPES}
            plain = PlainTrainer(tokens, V, layers, hidden, cfg.embed, cfg.batch_size, cfg.seq_len)
            contenders = {**{p: (t.train_step, chars) for p, t in ours_by.items()}, "plain": (plain.step, chars)}
            r = interleaved_rates(contenders, cfg.window, cfg.repeats)
            verdict = precision_verdict({p: r[p] for p in DTYPES})
            auto = verdict.choice
            choices[(layers, hidden)] = auto
            ours[(layers, hidden)] = r[auto]
            gflop = flops_per_char("lstm", layers, hidden, cfg.embed, V) / 1e9
            rows.append(Row(f"train_lstm_{layers}x{hidden}",
                            f"train {layers}×{hidden} LSTM, charrnn (auto: {PRECISION_NAMES[auto]})",
                            r[auto], "chars/s", "plain fp32 nn.LSTM", r["plain"], goal_ratio=1.3 if auto == "bf16" else 1.0,
                            note=f"fp32 {r['fp32']:,.0f}, bf16 {r['bf16']:,.0f} chars/s: {verdict.describe()}",
                            extra={"gflops": r[auto] * gflop, "baseline_gflops": r["plain"] * gflop, "precision": auto,
                                   "fp32_chars_per_sec": r["fp32"], "bf16_chars_per_sec": r["bf16"]}))
        if cfg.gru_shape:
            layers, hidden = cfg.gru_shape
            prec = choices.get((layers, hidden), "fp32")
            log(f"training {layers}×{hidden} GRU vs LSTM, per FLOP ({prec})")
            gru, lstm = (_trainer(cfg, vocab, tokens, c, layers, hidden, prec) for c in ("gru", "lstm"))
            r = interleaved_rates({"gru": (gru.train_step, chars), "lstm": (lstm.train_step, chars)},
                                  cfg.window, cfg.repeats)
            g = {c: r[c] * flops_per_char(c, layers, hidden, cfg.embed, V) / 1e9 for c in r}
            rows.append(Row(f"train_gru_{layers}x{hidden}", f"train {layers}×{hidden} GRU, charrnn ({PRECISION_NAMES[prec]})",
                            g["gru"], "GFLOP/s", f"{layers}×{hidden} LSTM", g["lstm"], goal_ratio=1.0,
                            note=f"GRU {r['gru']:,.0f} vs LSTM {r['lstm']:,.0f} chars/s",
                            extra={"gru_chars_per_sec": r["gru"], "lstm_chars_per_sec": r["lstm"]}))
    return rows, ours


def _threads_name(n: int) -> str:
    return f"{n} thread{'s' if n > 1 else ''}"


def sample_rows(cfg: BenchConfig, vocab: Vocab, log: Callable[[str], None]) -> list[Row]:
    """sample_ids at batch 1 through every step kernel at each thread count vs eager nn.LSTM stepping: the
    headline row is what `charrnn sample` would pick, a row per fixed count in `cfg.sample_threads` follows."""
    rows = []
    counts = sorted({c for n in cfg.sample_threads for c in candidates(n)})  # 0: 1 and one per core, as auto tries
    for layers, hidden in cfg.sample_shapes:
        torch.manual_seed(0)
        model = CharRNN(ModelConfig(vocab_size=len(vocab), layers=layers, hidden=hidden, embed=cfg.embed)).eval()
        names = kernels_for(model)
        log(f"sampling {layers}×{hidden} LSTM at batch 1: kernels {', '.join(names)} and eager nn.LSTM, "
            f"{' and '.join(map(_threads_name, counts))}")
        gens = {(k, n): sample_ids(model, [0], Sampling(10**12, seed=1), k, watch_threads=False)
                for k in names for n in counts}
        gens.update({("eager", n): sample_ids(model, [0], Sampling(10**12, seed=1), fast=False) for n in counts})
        r = interleaved_rates({key: (lambda g=g: next(g), 1) for key, g in gens.items()}, cfg.sample_window, cfg.repeats,
                              before={key: (lambda n=key[1]: set_threads(n)) for key in gens})
        set_threads(cfg.threads)
        for i, n in enumerate(cfg.sample_threads):
            tried = candidates(n)
            best = {k: max(r[(k, t)] for t in tried) for k in names}
            kernel = choose(best, "fp32", LOW_PRECISION_MARGIN)
            chosen = thread_verdict({t: r[(kernel, t)] for t in tried}, SAMPLE_THREAD_MARGIN)
            how = _threads_name(chosen) + (" (tuned)" if n == 0 else "")
            note = "tried " + ", ".join(f"{k} {r[(k, t)]:,.0f}" + (f" ({t}t)" if len(tried) > 1 else "")
                                        for k in names for t in tried)
            suffix = "" if i == 0 else f"_t{n}"
            rows.append(Row(f"sample_lstm_{layers}x{hidden}{suffix}",
                            f"sample {layers}×{hidden} LSTM, batch 1, {how}, {kernel} kernel",
                            r[(kernel, chosen)], "chars/s", "eager nn.LSTM step", r[("eager", chosen)], goal_ratio=15.0,
                            goal_figure=SAMPLE_GOALS.get((layers, hidden)) if i == 0 else None, note=note,
                            extra={"threads": chosen, "kernel": kernel,
                                   "kernels": {f"{k}/{t}": r[(k, t)] for k in names for t in tried}}))
    return rows


def beam_rows(cfg: BenchConfig, vocab: Vocab, log: Callable[[str], None]) -> list[Row]:
    """Beam search as `charrnn beam` runs it (kernel and threads chosen by timing) vs eager nn.LSTM at batch = width."""
    layers, hidden = cfg.beam_shape
    w = cfg.beam_width
    what = f"beam search, width {w}, {layers}×{hidden} LSTM"
    log(what)
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=len(vocab), layers=layers, hidden=hidden, embed=cfg.embed)).eval()
    x, state = torch.zeros(w, 1, dtype=torch.long), model.init_state(w)
    with tempfile.TemporaryDirectory() as folder:  # measured now, never read from the cache
        choice = choose_kernel(model, w, "auto", 0, cache=TuneCache(Path(folder) / "tune.json"))

    @torch.inference_mode()
    def eager_step() -> None:
        model(x, state)  # (w, 1, V): one nn.LSTM call per character

    length = 200
    with threads(choice.threads):
        r = interleaved_rates({"beam": (lambda: beam_search(model, vocab, width=w, length=length, kernel=choice.kernel),
                                        length), "eager": (eager_step, 1)}, cfg.window, cfg.repeats)
    steps = choice.verdict.rates if choice.verdict else {}
    return [Row(f"beam_w{w}_{layers}x{hidden}", f"{what}, {choice.kernel} kernel, {_threads_name(choice.threads)}",
                r["beam"], "chars/s", f"eager nn.LSTM steps/s at batch {w}", r["eager"],
                goal_figure=BEAM_GOALS.get((layers, hidden, w)),
                note="kernel steps/s: " + ", ".join(f"{k} {v:,.0f}" for k, v in steps.items()),
                extra={"threads": choice.threads, "precision": choice.kernel, "kernel_steps_per_sec": steps})]


def eval_rows(cfg: BenchConfig, vocab: Vocab, tokens: np.ndarray, train_rates: dict,
              log: Callable[[str], None]) -> list[Row]:
    """evaluate() (no gradients, large batches, the precision auto picks) vs training chars/s of the same shape."""
    layers, hidden = cfg.eval_shape
    log(f"evaluating a {layers}×{hidden} LSTM ({cfg.eval_batch} streams) vs training it")
    model = CharRNN(ModelConfig(vocab_size=len(vocab), layers=layers, hidden=hidden, embed=cfg.embed))
    text = tokens[: cfg.eval_chars]
    with threads(cfg.threads), tempfile.TemporaryDirectory() as folder:
        verdict = eval_precision(model, text, cfg.eval_batch, 256, cache=TuneCache(Path(folder) / "tune.json"))
    dtype = DTYPES[verdict.choice]
    contenders = {"eval": (lambda: evaluate(model, text, cfg.eval_batch, 256, "cpu", dtype), len(text) - 1)}
    if (layers, hidden) not in train_rates:
        trainer = _trainer(cfg, vocab, tokens, "lstm", layers, hidden)
        contenders["train"] = (trainer.train_step, cfg.batch_size * cfg.seq_len)
    with threads(cfg.threads):
        r = interleaved_rates(contenders, cfg.window, cfg.repeats)
    train = r.get("train", train_rates.get((layers, hidden)))
    return [Row(f"eval_lstm_{layers}x{hidden}", f"evaluate {layers}×{hidden} LSTM, {cfg.eval_batch} streams, "
                f"{PRECISION_NAMES[verdict.choice]}", r["eval"], "chars/s", "training chars/s", train, goal_ratio=20.0,
                note=f"precision: {verdict.describe()}", extra={"precision": verdict.choice})]


def kernel_rows(cfg: BenchConfig, checkpoint: str | None, corpus: str | None, log: Callable[[str], None]) -> list[Row]:
    """What each reduced-precision step kernel costs: bits/char of held-out text through it, against fp32's:
    the first `cfg.kernel_chars` characters of the corpus's last tenth (the checkpoint's own corpus, unless
    --corpus names another), stepped one at a time."""
    from charrnn.inspect.surprise import encode_known
    from charrnn.text.catalog import resolve_source
    from charrnn.text.corpus import read_text, split_train_val
    from charrnn.training.checkpoint import load_model

    if not checkpoint:
        log("kernels: skipped (pass --checkpoint RUN to measure what each step kernel costs in bits/char)")
        return []
    loaded = load_model(checkpoint)
    sources = [resolve_source(corpus)] if corpus else (loaded.checkpoint.get("meta") or {}).get("sources")
    if not sources:
        log("kernels: skipped (the checkpoint names no corpus: pass --corpus)")
        return []
    vocab = loaded.vocab
    tokens = encode_known(vocab, read_text([str(s) for s in sources])).tokens  # (characters it cannot read: left out)
    _, held_out = split_train_val(tokens, 0.1, vocab.char_counts)
    held_out = held_out[: cfg.kernel_chars]
    chars = max(int(vocab.char_counts[np.asarray(held_out[1:], dtype=np.int64)].sum()), 1)  # predicted
    c = loaded.model.config
    log(f"kernels: bits/char of {len(held_out):,} held-out characters through each step kernel "
        f"({c.layers}×{c.hidden} {c.cell})")
    with threads(1):
        bpc = {k: kernel_bits_per_char(loaded.model, held_out, k) * (len(held_out) - 1) / chars
               for k in kernels_for(loaded.model)}
    return [Row(f"kernel_bpc_{k}", f"{k} step kernel: bits/char cost, {c.layers}×{c.hidden} {c.cell}",
                bpc[k] - bpc["fp32"], "bits/char", "fp32 kernel bits/char", bpc["fp32"], goal_max=0.01,
                extra={"bits_per_char": bpc[k], "chars": len(held_out)})
            for k in bpc if k != "fp32"]


# ---- the whole run -----------------------------------------------------------------------------


def machine() -> dict:
    info = cpu_info()
    return {"cpu": info["model"], "cores": default_threads(), "torch": torch.__version__, "flags": info["flags"],
            "cpu_summary": cpu_summary(), "fast_bf16": cpu_has_fast_bf16(), "python": platform.python_version()}


def run_bench(cfg: BenchConfig, corpus: str | None = None, log: Callable[[str], None] = lambda s: None,
              checkpoint: str | None = None) -> dict:
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
    if "kernels" in cfg.sections:
        rows += kernel_rows(cfg, checkpoint, corpus, log)
    if "memory" in cfg.sections:
        rows += memory_rows(cfg, log)
    if "serve" in cfg.sections:
        from charrnn.benchmark.serving import serve_rows  # (it needs the serve extra, which the other rows do not)

        rows += serve_rows(cfg, vocab, log)
    return {"machine": machine(), "config": asdict(cfg), "corpus": {"name": name, "chars": len(text)},
            "rows": [r.to_dict() for r in rows], "seconds": time.perf_counter() - t0}
