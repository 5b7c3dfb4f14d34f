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
PROBE_WINDOW, PROBE_ROUNDS = 0.05, 2  # a shape's settings take turns: 2 windows of 50 ms each, after one step
PROBE_SHARE, PROBE_SECONDS = 0.05, 3.0  # the probe spends at most 5% of a time budget (3 s without one)
HOPELESS = 3.0  # a setting this many times slower than another's best is dropped at once
NOISY = 1.5  # figures this far apart were taken in different moments (a core busy or not): not trusted
RECHECK = 1.25  # a cached figure its re-timing puts further off is measured again (at 1.5, a busy core's 84k
#                 passed for the idle 127k it was cached at, and the run trained at 0.62x its estimate)
DECAY_TO = 0.01  # the cosine's floor, not charrnn's 5%: 0.017-0.032 bits/char lower at 10,500 steps of 2×256
# Validation spends about EVAL_SHARE of a time budget (charrnn's every 200 steps took 11% of Linux at 300 s),
# reading ~EVAL_SPEEDUP times faster than training trains (forward only: 5.4x-8x measured, bf16).
EVAL_SHARE = 0.05
EVAL_SPEEDUP = 5.0
MIN_EVALS = 5  # but at least this many validations in a run, for best.pt and the overfitting watch
EVAL_ROUND = 100  # steps between validations are a multiple of this
# A text read MANY_PASSES times or more is learnt by heart within the budget (a 40 KB list of names: best at step
# 200, then 108 passes down to 4.03 bits/char): such a run validates once a pass over its text (at least every
# 10 steps) and stops once PATIENCE validations in a row have not improved on the best (best.pt keeps it).
PATIENCE = 5


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
    patience: int | None = None  # validations without a new best before it stops (a text read many times)

    @property
    def epochs(self) -> float:
        return self.chars_seen / max(1, self.n_train)

    def settings(self) -> dict:
        """What the run takes from the choice: the shape, its dropout, its lr, the schedule's floor and
        (when spaced) the steps between validations."""
        return {"layers": self.shape.layers, "hidden": self.shape.hidden, "embed": self.shape.embed,
                "dropout": self.dropout, "lr": self.shape.lr, "min_lr_ratio": DECAY_TO,
                **({"eval_every": self.eval_every} if self.eval_every else {}),
                **({"patience": self.patience} if self.patience else {})}

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
        if self.patience and "patience" not in given:
            evals += f" and stopping once {self.patience} validations in a row find no new best"
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
        if needs_rate and r is None:  # the probe's time is spent: the shapes timed so far
            break
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
    """Steps between validations: once a pass over the text for a run that reads it MANY_PASSES times (so
    it is seen learning it by heart, and stopped: PATIENCE); else, under a time budget, so that they take about
    EVAL_SHARE of it (at least MIN_EVALS in the run, a multiple of EVAL_ROUND). None where `train.eval_every`
    already validates that way, or there is no time budget to spend. (Linux at 300 s, 2×384: one every ~500 of
    the ~5,400 steps.)"""
    per_step = train.batch_size * train.seq_len
    if sizing.epochs >= MANY_PASSES:
        every = max(10, math.ceil(sizing.n_train / per_step / 10) * 10)
        return every if every < train.eval_every else None
    if not (train.time and sizing.rate) or val_chars <= 0:
        return None
    steps = sizing.chars_seen / per_step
    seconds_each = val_chars / (EVAL_SPEEDUP * sizing.rate)
    evals = max(float(MIN_EVALS), EVAL_SHARE * train.time / seconds_each)
    every = int(math.ceil(steps / evals / EVAL_ROUND)) * EVAL_ROUND
    return every if every > train.eval_every else None


# ---- the probe: this machine's training speed for a shape --------------------------------------------


def trainer_step(mcfg: ModelConfig, batch: int, seq_len: int, device: str = "cpu"):
    """`step(dtype)`: one training step of a throwaway `mcfg` at B x T on random tokens (forward, backward, clip,
    AdamW; in `dtype` autocast, None: fp32), what a run's step costs."""
    import torch
    import torch.nn.functional as F

    from charrnn.model.rnn import CharRNN

    model = CharRNN(mcfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(mcfg.vocab_size, (batch, seq_len + 1), generator=torch.Generator().manual_seed(0)).to(device)

    def step(dtype=None) -> None:
        with torch.autocast(torch.device(device).type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits, _ = model(x[:, :-1])  # (B, T, V)
        loss = F.cross_entropy(logits.float().reshape(-1, mcfg.vocab_size), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        float(loss.detach())  # waits for a GPU

    return step


def timed_windows(mcfg: ModelConfig, train: TrainConfig, device: str, settings: list[tuple[str, int]],
                  rounds: int = PROBE_ROUNDS, clock: Callable[[], float] = time.perf_counter) -> dict:
    """{(precision, threads): chars/s of each timed window}: the settings take turns, `rounds` windows of
    PROBE_WINDOW seconds each, after one untimed step. A setting whose window runs HOPELESS times slower
    than another's best (two threads while another process holds a core: 0.02x) is dropped at once."""
    import torch

    from charrnn.runtime.threads import set_threads, torch_threads

    dtypes = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
    step, per_step = trainer_step(mcfg, train.batch_size, train.seq_len, device), train.batch_size * train.seq_len
    rates: dict = {s: [] for s in settings}
    with torch_threads(settings[0][1]):
        for r in range(rounds):
            for s in [s for s in settings if s in rates]:
                set_threads(s[1])
                if r == 0:
                    step(dtypes[s[0]])
                t0, n = clock(), 0
                while (seconds := clock() - t0) < PROBE_WINDOW or n == 0:
                    step(dtypes[s[0]])
                    n += 1
                rates[s].append(n * per_step / max(seconds, 1e-9))
                if any(HOPELESS * rates[s][-1] < max(v) for o, v in rates.items() if o != s and v):
                    del rates[s]
    return rates


class Probe:
    """`probe(shape)`: this machine's training chars/s for a shape, as the run will train it (its precision and
    thread count chosen as the run chooses them), or None once the probe's SECONDS are spent (the walk then stops).

    A figure is evidence, not a fact. Measured: the settings take turns in short windows (`timed_windows`), and a
    figure whose windows disagree by more than NOISY, or that dropped a setting, was timed in a busy moment and is
    used for this run but not cached. Cached (tune.json): the first one used is re-timed, one window per setting
    (a setting slow in the cached moment, two threads beside a busy core, may be the fastest now); off by more than
    RECHECK, every cached figure of this probe is measured again. And the run itself checks the chosen shape's
    figure against its own steps (`correct`).
    """

    def __init__(self, vocab_size: int, train: TrainConfig, device: str = "cpu", cell: str = "lstm", cache=None,
                 seconds: float | None = None, on_timing: Callable[[str], None] = lambda message: None,
                 windows=timed_windows, clock: Callable[[], float] = time.perf_counter):
        from charrnn.runtime.cache import TuneCache, cache_disabled
        from charrnn.runtime.threads import candidates

        self.vocab_size, self.train, self.device, self.cell, self.windows = vocab_size, train, device, cell, windows
        self.store = None if cache_disabled() else (cache or TuneCache())
        self.trust = self.store is not None  # cached figures are read (until one fails its re-timing)
        cpu = device == "cpu"
        self.precisions = ["fp32", "bf16"] if cpu and train.precision == "auto" else \
            ["fp32" if train.precision == "auto" else train.precision]
        self.threads = candidates(train.threads) if cpu else [1]
        self.clock, self.on_timing = clock, on_timing
        self.deadline = clock() + (seconds if seconds is not None else
                                   PROBE_SHARE * train.time if train.time else PROBE_SECONDS)
        self.seen: dict[Shape, float] = {}
        self.checked = False  # a cached figure was re-timed (and held), or there was none

    def key(self, shape: Shape) -> str:
        import torch

        from charrnn.runtime.cache import TuneCache

        return TuneCache.key({"what": "sizing probe", "device": self.device, "cell": self.cell,
                              "layers": shape.layers, "hidden": shape.hidden, "embed": shape.embed,
                              "vocab": self.vocab_size, "batch": self.train.batch_size, "seq_len": self.train.seq_len,
                              "threads": self.threads, "precisions": self.precisions}, torch.__version__)

    def __call__(self, shape: Shape) -> float | None:
        if shape not in self.seen:
            if self.seen and self.clock() > self.deadline:
                return None
            self.seen[shape] = self.cached(shape) or self.measure(shape)
        return self.seen[shape]

    def cached(self, shape: Shape) -> float | None:
        hit = self.store.get(self.key(shape)) if self.trust else None
        if not hit or not _positive(hit.get("rate")) or not isinstance(hit.get("setting"), list):
            return None
        if not self.checked:  # the first cached figure of the run is re-timed, one window per setting
            self.on_timing(f"checking {shape}'s speed")
            _, rate, _ = self.timed(shape, rounds=1)
            if not 1 / RECHECK <= rate / hit["rate"] <= RECHECK:
                self.trust = False  # measured in another moment: none of its figures is used, each is measured again
                return None
            self.checked = True
        return float(hit["rate"])

    def measure(self, shape: Shape) -> float:
        self.on_timing(f"timing {shape}")
        setting, rate, steady = self.timed(shape)
        if steady and self.store is not None:
            self.store.put(self.key(shape), {"rate": rate, "setting": list(setting)})
        return rate

    def timed(self, shape: Shape, rounds: int = PROBE_ROUNDS) -> tuple[tuple[str, int], float, bool]:
        """(the setting the run would choose, its chars/s, whether every window agreed) from `rounds` windows of
        each setting."""
        from charrnn.runtime.timing import LOW_PRECISION_MARGIN, THREAD_MARGIN, choose

        settings = [(p, t) for t in self.threads for p in self.precisions]
        model = shape.config(self.vocab_size, self.cell)
        windows = self.windows(model, self.train, self.device, settings, rounds=rounds)
        best = {s: max(v) for s, v in windows.items()}
        per_threads = {}
        for t in self.threads:
            tried = {p: best[(p, t)] for p in self.precisions if (p, t) in best}
            if tried:
                p = choose(tried, "fp32", LOW_PRECISION_MARGIN)  # as the run will choose its precision
                per_threads[t] = (p, tried[p])
        t = choose({t: r for t, (_, r) in per_threads.items()}, min(per_threads), THREAD_MARGIN)  # ... and threads
        setting, rate = (per_threads[t][0], t), per_threads[t][1]
        steady = len(windows) == len(settings) and all(max(v) <= NOISY * min(v) for v in windows.values())
        return setting, rate, steady

    def correct(self, shape: Shape, actual: float, setting: tuple[str, int]) -> str | None:
        """The run's own chars/s for `shape`, trained at `setting` (precision, threads): when it is off the figure
        used by more than NOISY, the figure is replaced (cached) and a line says so; None when it held."""
        expected = self.seen.get(shape)
        if not expected or 1 / NOISY <= actual / expected <= NOISY:
            return None
        if self.store is not None:
            self.store.put(self.key(shape), {"rate": actual, "setting": list(setting)})
        return (f"this machine trains {shape} at {_short(actual)} chars/s, {actual / expected:.2g}× the "
                f"~{_short(expected)} it was sized for (the load differs from when it was timed): the passes above "
                "are off by as much; the figure is corrected for the next run")


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


# ---- the run: the choice under the user's own settings ---------------------------------------------


def right_size(run, n_tokens: int, vocab_size: int, on_timing: Callable[[str], None] = lambda message: None):
    """(`run`, a RunConfig with B and T fitted to the text, with the automatic shape under what the user set;
    the Sizing; the Probe that timed it), or (run, None, None) when nothing is left to choose: a preset, every
    shape key given, or torchrun (its processes would each time the shapes and could disagree)."""
    from charrnn.runtime.device import resolve_device
    from charrnn.training.distributed import launched_by_torchrun

    if run.preset or all(k in run.given for k in SHAPE_KEYS) or launched_by_torchrun():
        return run, None, None
    train = run.train
    n_train = n_tokens - int(n_tokens * train.val_fraction)
    device = resolve_device(train.device)
    probe = Probe(vocab_size, train, str(device), run.model.cell, on_timing=on_timing) if device.type != "mps" else None
    sizing = choose_size(n_train, train, vocab_size, probe, run.model.cell)
    named = bool({"layers", "hidden"} & run.given)
    if not named and "eval_every" not in run.given:  # spaced for the chosen shape's speed
        val_chars = n_tokens - n_train
        sizing = replace(sizing, eval_every=eval_spacing(sizing, train, min(val_chars, train.eval_chars or val_chars)))
    if not named and sizing.epochs >= MANY_PASSES and n_tokens > n_train:  # learnt by heart: stop when it is
        sizing = replace(sizing, patience=PATIENCE)
    chosen = sizing.settings()
    if named:  # the lr and its floor go with the chosen shape, not with one the user named
        del chosen["lr"], chosen["min_lr_ratio"]
    return run.under_given(chosen), sizing, probe
