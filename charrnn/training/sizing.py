"""Right-sizing: the model `charrnn train` builds when no shape flag is given.

A character model trained for a few minutes is limited by how many characters it gets to see,
not by its size: a bigger model learns more per character but sees fewer in the same time. The
sweep in `bench/sweep.py` (results in bench/sweep/results.jsonl) fitted one rule to the best
model at each budget:

    take the largest shape of LADDER that still sees CHARS_PER_PARAM characters per parameter,

"characters seen" being the chars/s this machine trains that shape at (timed here, cached)
times the budget's seconds, or steps x B x T, or epochs x the training text. A run that reads
its text MANY_PASSES times or more is limited by the text, not the time: its bar is
MANY_PASSES_CHARS_PER_PARAM, and it prefers the shape below, with that shape's dropout. No
shape with more than MAX_PARAMS_PER_CHAR parameters per training character is taken (it would
learn the text by heart). Each shape brings its own peak lr, decaying to DECAY_TO of it; under
a time budget validations are spaced to take about EVAL_SHARE of it (`eval_spacing`).

    sizing = choose_size(n_train=1_003_854, train=TrainConfig(time=300), vocab_size=65, rate=probe)
    sizing.settings()   # {'layers': 2, 'hidden': 256, 'embed': 64, 'dropout': 0.1, 'lr': 0.03, 'min_lr_ratio': 0.01}
    sizing.describe()   # 'model: LSTM 2×256 (embed 64), 877k parameters, dropout 0.1, lr 0.03 decaying to 0.0003 — for ...'

Settings the user gives override the part of the choice they name; a preset, a resumed or
fine-tuned run and torchrun skip it. Whatever chose the shape, `check_model_fits` refuses one
that cannot fit in memory before a run builds it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from charrnn.training.budget import DEFAULT_EPOCHS, describe
from charrnn.model.config import ModelConfig
from charrnn.training.config import TrainConfig

SHAPE_KEYS = ("layers", "hidden", "embed", "dropout")  # what the choice sets, and the shape's lr (cell, B, T keep theirs)
LARGE_VOCAB = 4096  # distinct characters above which a run is warned what its vocabulary costs


@dataclass(frozen=True)
class Shape:
    layers: int
    hidden: int
    embed: int
    lr: float = TrainConfig.lr  # the peak learning rate the sweep found best for this shape at short budgets
    dropout: float = 0.2  # its dropout when the run reads the text MANY_PASSES times or more

    def config(self, vocab_size: int, cell: str = "lstm") -> ModelConfig:
        return ModelConfig(vocab_size=vocab_size, cell=cell, layers=self.layers, hidden=self.hidden, embed=self.embed)

    def __str__(self) -> str:
        return f"{self.layers}×{self.hidden}"


def check_model_fits(m: ModelConfig, c: TrainConfig, device: str, reporter, token_is_char: bool = True) -> None:
    """Refuse a run that cannot fit in memory before building it (`runtime.memory.training_bytes`); warn what a
    huge vocabulary costs."""
    from charrnn.runtime.memory import check_memory, fmt_bytes, training_bytes

    need = training_bytes(m, c.batch_size, c.seq_len)
    shape = f"a {m.cell} {m.layers}x{m.hidden} model (embed {m.embed}, vocabulary {m.vocab_size:,}, " \
            f"{m.num_params():,} parameters) trained on batch {c.batch_size} x seq {c.seq_len}"
    check_memory(need, shape, "use a smaller hidden, layers, embed, batch_size or seq_len", device,
                 "hidden", "layers", "embed", "batch_size", "seq_len")
    if m.vocab_size > LARGE_VOCAB and token_is_char:  # (a word vocabulary is meant to be large)
        in_vocab = m.vocab_size * (m.embed + m.hidden + 1)
        reporter.on_warning(
            f"the corpus has {m.vocab_size:,} distinct characters: the embedding and output layers hold "
            f"{in_vocab:,} of the model's {m.num_params():,} parameters, each step computes {m.vocab_size:,} "
            f"logits per character, and training needs about {fmt_bytes(need)} at its peak. Most of those characters "
            f"are rare (`charrnn corpus stats` lists them): fold the rare ones into one character, or train on "
            f"the text's UTF-8 bytes (--tokens byte: 256 ids), to train many times faster")


# The shapes tried, smallest first. The narrow ones learn fastest with a higher lr (Shakespeare 60 s, 2×256:
# 2.130 bits/char at 3e-2, 2.227 at 6e-3); 2×384 does not. Read many times, 2×256 did best with dropout 0.1,
# the wider ones with 0.2. Past 2×768, ask for a shape (--preset large).
LADDER = (Shape(2, 128, 32, 2e-2, 0.1), Shape(2, 256, 64, 3e-2, 0.1), Shape(2, 384, 128), Shape(2, 512, 128),
          Shape(2, 768, 128))
CHARS_PER_PARAM = 3.0  # the best shapes saw 4.5-6 characters per parameter, the next larger ones 1.0-2.0
MANY_PASSES = 15.0  # a run that reads its text this many times or more is limited by the text, not the time:
MANY_PASSES_CHARS_PER_PARAM = 0.5  # ... there the larger model with dropout won (0.9 chars/param at 20 passes)
MAX_PARAMS_PER_CHAR = 30.0  # 20 KB of Shakespeare in 30 s: 2×128 (12 per char) 2.764 bits/char, 2×256 (48) 3.045
PROBE_STEPS = 3  # timed training steps per shape (after one untimed), at the run's B and T
DECAY_TO = 0.01  # the cosine's floor, not charrnn's 5%: 0.017-0.032 bits/char lower at 10,500 steps of 2×256
# Validation spends about EVAL_SHARE of a time budget (charrnn's every 200 steps took 11% of Linux at 300 s),
# reading ~EVAL_SPEEDUP times faster than training trains (forward only: 5.4x-8x measured, bf16).
EVAL_SHARE = 0.05
EVAL_SPEEDUP = 5.0
MIN_EVALS = 5  # but at least this many validations in a run, for best.pt and the overfitting watch
EVAL_ROUND = 100  # steps between validations are a multiple of this


@dataclass(frozen=True)
class Sizing:
    shape: Shape
    dropout: float
    params: int
    n_train: int  # training characters (tokens)
    chars_seen: float  # characters the run will train on (every pass counted)
    budget: str  # '300 s', '2,000 steps', '10 epochs'
    rate: float | None  # chars/s of this shape here (None: not needed, the budget is steps or epochs)
    eval_every: int | None = None  # steps between validations, where the choice spaces them (`eval_spacing`)

    @property
    def epochs(self) -> float:
        return self.chars_seen / max(1, self.n_train)

    def settings(self) -> dict:
        """What the run takes from the choice: the shape, its dropout, its lr, the schedule's floor and
        (when spaced) the steps between validations."""
        return {"layers": self.shape.layers, "hidden": self.shape.hidden, "embed": self.shape.embed,
                "dropout": self.dropout, "lr": self.shape.lr, "min_lr_ratio": DECAY_TO,
                **({"eval_every": self.eval_every} if self.eval_every else {})}

    def describe(self, model: ModelConfig | None = None, given: set = frozenset(), unit: str = "characters",
                 lr: float | None = None, floor: float | None = None) -> str:
        """The first log line: what was chosen and why. `model`: the model the run ends up with (the
        choice under the user's own settings, which `given` names); `lr`, `floor`: its peak lr and
        min_lr_ratio, where they are not the choice's."""
        m = {"cell": "lstm", **self.settings(), **(model.to_dict() if model else {})}
        lr = m["lr"] if lr is None else lr
        floor = m["min_lr_ratio"] if floor is None else floor
        params = model.num_params() if model else self.params
        drop = (f"dropout {m['dropout']:g}" if m["dropout"] else "no dropout") + f", lr {lr:g} decaying to {lr * floor:.2g}"
        speed = f" at ~{_short(self.rate)} chars/s here" if self.rate else ""
        passes = f"{self.epochs:.2g}" if self.epochs < 100 else f"{self.epochs:,.0f}"  # not '3.3e+02'
        evals = f", validating every {self.eval_every} steps" if self.eval_every else ""
        yours = [k for k in SHAPE_KEYS if k in given]
        kept = f"; yours: {', '.join('--' + k for k in yours)}" if yours else ""
        return (f"model: {m['cell'].upper()} {m['layers']}×{m['hidden']} (embed {m['embed']}), {_short(params)} "
                f"parameters, {drop} — for {_short(self.n_train)} training {unit} and {self.budget}{speed}, "
                f"~{passes} passes over the text{evals}{kept} (shape flags override it)")


def _short(n: float) -> str:
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}" if n < 10 * size else f"{n / size:.0f}{unit}"
    return f"{n:.0f}"


def chars_seen(train: TrainConfig, n_train: int, rate: float | None) -> float:
    """Characters a run with this budget trains on: the smallest of what each part of the budget allows."""
    limits = [train.steps * train.batch_size * train.seq_len] if train.steps else []
    limits += [train.epochs * n_train] if train.epochs else []
    limits += [train.time * rate] if train.time and rate else []
    return float(min(limits or [DEFAULT_EPOCHS * n_train]))


def enough(seen: float, params: int, n_train: int) -> bool:
    """Does a shape with `params` parameters see enough characters? (CHARS_PER_PARAM, or
    MANY_PASSES_CHARS_PER_PARAM when the run reads its text MANY_PASSES times or more)."""
    many = seen >= MANY_PASSES * max(1, n_train)
    return seen >= params * (MANY_PASSES_CHARS_PER_PARAM if many else CHARS_PER_PARAM)


def choose_size(n_train: int, train: TrainConfig, vocab_size: int, rate: Callable[[Shape], float] | None = None,
                cell: str = "lstm") -> Sizing:
    """The largest shape of LADDER that sees enough characters per parameter (`enough`) and has at most
    MAX_PARAMS_PER_CHAR parameters per training character, or the shape below it (never the smallest)
    when that one reads the text MANY_PASSES times and the largest does not.

    `rate(shape)` -> training chars/s of that shape on this machine; needed only for a time budget, and
    called for the shapes the walk reaches (smallest first), so a slow probe stops early.
    """
    needs_rate = bool(train.time) and rate is not None
    budget = describe(train.steps, train.epochs, train.time) or f"{DEFAULT_EPOCHS} epochs (no budget given)"
    walked: list[Sizing] = []
    for shape in LADDER:
        params = shape.config(vocab_size, cell).num_params()
        if walked and params > MAX_PARAMS_PER_CHAR * n_train:  # too big for the text: not worth timing
            break
        r = rate(shape) if needs_rate else None
        seen = chars_seen(train, n_train, r)
        if walked and not enough(seen, params, n_train):
            break
        walked.append(Sizing(shape, 0.0, params, n_train, seen, budget, r))
    chosen = walked[-1]
    if chosen.epochs < MANY_PASSES and len(walked) > 2 and walked[-2].epochs >= MANY_PASSES:
        # with dropout, the shape below learns more (Shakespeare 300 s: 2×256 reading it 24 times 2.024 bits/char,
        # 2×384 10 times 2.074); never the smallest (at 120 s 2×128 with dropout: 2.198, 2×256 without: 2.084)
        chosen = walked[-2]
    return replace(chosen, dropout=chosen.shape.dropout if chosen.epochs >= MANY_PASSES else 0.0)


def eval_spacing(sizing: Sizing, train: TrainConfig, val_chars: int) -> int | None:
    """Steps between validations so that they take about EVAL_SHARE of a time budget (at least MIN_EVALS
    in the run, a multiple of EVAL_ROUND), or None where `train.eval_every` already validates that seldom,
    or there is no time budget to spend. (Linux at 300 s, 2×384: one every ~500 of the ~5,400 steps.)
    """
    if not (train.time and sizing.rate) or val_chars <= 0:
        return None
    steps = sizing.chars_seen / (train.batch_size * train.seq_len)
    seconds_each = val_chars / (EVAL_SPEEDUP * sizing.rate)
    evals = max(float(MIN_EVALS), EVAL_SHARE * train.time / seconds_each)
    every = int(math.ceil(steps / evals / EVAL_ROUND)) * EVAL_ROUND
    return every if every > train.eval_every else None


# ---- the probe: this machine's training speed for a shape --------------------------------------------


def step_rate(mcfg: ModelConfig, batch: int, seq_len: int, device: str = "cpu", steps: int = PROBE_STEPS,
              dtype=None) -> float:
    """Training chars/s of `mcfg` at B x T (in `dtype` autocast, None: fp32): one untimed step, then
    `steps` timed ones (forward, backward, clip, AdamW), on random characters. A throwaway model;
    costs ~0.1-1 s."""
    import torch
    import torch.nn.functional as F

    from charrnn.model.rnn import CharRNN

    gen = torch.Generator().manual_seed(0)
    model = CharRNN(mcfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(mcfg.vocab_size, (batch, seq_len + 1), generator=gen).to(device)  # (B, T+1)

    def step() -> None:
        with torch.autocast(torch.device(device).type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits, _ = model(x[:, :-1])  # (B, T, V)
        loss = F.cross_entropy(logits.float().reshape(-1, mcfg.vocab_size), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        float(loss.detach())  # waits for a GPU

    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch * seq_len / (time.perf_counter() - t0)


def probe(vocab_size: int, train: TrainConfig, device: str, threads: int, cell: str = "lstm",
          cache=None) -> Callable[[Shape], float]:
    """`rate(shape)`: chars/s measured once per shape, machine, threads, B and T, then cached (tune.json)."""
    import torch

    from charrnn.runtime.timing import LOW_PRECISION_MARGIN, choose
    from charrnn.runtime.cache import TuneCache, cache_disabled
    from charrnn.runtime.device import resolve_precision
    from charrnn.runtime.threads import torch_threads
    from charrnn.training.speed import DTYPES as CPU_DTYPES

    DTYPES = {**CPU_DTYPES, "fp16": torch.float16}  # the CPU's two, and a GPU's fp16
    dev = torch.device(device)
    if dev.type == "cpu" and train.precision == "auto":  # the run times fp32 and bf16 and keeps the faster: so do we
        precisions = ["fp32", "bf16"]
    else:  # what the run will train in (a GPU's autocast, or the precision asked for)
        fixed = resolve_precision(train.precision, dev)
        precisions = [next((k for k, v in DTYPES.items() if v == fixed), "fp32")]
    cache = cache or TuneCache()
    seen: dict[Shape, float] = {}

    def rate(shape: Shape) -> float:
        if shape not in seen:
            mcfg = shape.config(vocab_size, cell)
            key = TuneCache.key({"what": "sizing probe", "device": device, "cell": cell, "layers": shape.layers,
                                 "hidden": shape.hidden, "embed": shape.embed, "vocab": vocab_size,
                                 "batch": train.batch_size, "seq_len": train.seq_len, "threads": threads,
                                 "precisions": precisions},
                                torch.__version__)
            hit = None if cache_disabled() else cache.get(key)
            if hit and isinstance(hit.get("rate"), (int, float)) and math.isfinite(hit["rate"]) and hit["rate"] > 0:
                seen[shape] = float(hit["rate"])
            else:
                with torch_threads(threads):
                    rates = {p: step_rate(mcfg, train.batch_size, train.seq_len, device, dtype=DTYPES[p]) for p in precisions}
                seen[shape] = rates[choose(rates, "fp32", LOW_PRECISION_MARGIN)]  # as the run will choose
                cache.put(key, {"rate": seen[shape], "rates": rates})
        return seen[shape]

    return rate


# ---- the run: the choice under the user's own settings ---------------------------------------------


def right_size(run, n_tokens: int, vocab_size: int):
    """(`run`, a RunConfig with B and T fitted to the text, with the automatic shape under what the user set;
    the Sizing), or (run, None) when nothing is left to choose: a preset, every shape key given, or torchrun
    (its processes would each time the shapes and could disagree)."""
    from charrnn.runtime.device import resolve_device
    from charrnn.runtime.threads import default_threads
    from charrnn.training.distributed import launched_by_torchrun

    if run.preset or all(k in run.given for k in SHAPE_KEYS) or launched_by_torchrun():
        return run, None
    train = run.train
    n_train = n_tokens - int(n_tokens * train.val_fraction)
    device = resolve_device(train.device)
    rate = probe(vocab_size, train, str(device), train.threads or default_threads(), run.model.cell) \
        if device.type != "mps" else None
    sizing = choose_size(n_train, train, vocab_size, rate, run.model.cell)
    named = bool({"layers", "hidden"} & run.given)
    if not named and "eval_every" not in run.given:  # spaced for the chosen shape's speed
        val_chars = n_tokens - n_train
        sizing = replace(sizing, eval_every=eval_spacing(sizing, train, min(val_chars, train.eval_chars or val_chars)))
    chosen = sizing.settings()
    if named:  # the lr and its floor go with the chosen shape, not with one the user named
        del chosen["lr"], chosen["min_lr_ratio"]
    return run.under_given(chosen), sizing
