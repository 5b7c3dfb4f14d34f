"""How a training run on the CPU picks its precision and thread count: by timing its own steps.

Precision `auto` and threads 0 are decided for this model, batch, sequence length and machine, not
from CPU flags (a CPU that reports AVX512-BF16 may still multiply bf16 no faster than fp32). The
first steps take turns in fp32 and bf16 autocast, at one thread and at one per core
(`runtime.timing.StepTuner`); they are real updates, so nothing is thrown away. The precision
verdict is cached per thread count (`runtime.cache.TuneCache`). Validation gets its own verdict
(`eval_precision`): a forward pass is not a training step. GPUs keep their autocast; a forced
precision or thread count is never second-guessed; torchrun's processes keep fp32 (they must agree).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from charrnn.runtime.timing import StepTuner, Verdict, interleaved_rates, precision_verdict
from charrnn.runtime.cache import TuneCache, cached_or_measured
from charrnn.runtime.memory import LOGITS_BUDGET, logits_block
from charrnn.model.config import ModelConfig
from charrnn.training.config import TrainConfig
from charrnn.runtime import threads as cpu
from charrnn.runtime.device import resolve_precision

DTYPES = {"fp32": None, "bf16": torch.bfloat16}
EVIDENCE_STEPS = 50  # settled steps whose speed checks the figure the sizing chose the shape by (20 read an idle
#                      run's early steps at 0.66x its whole run)


def workload(mcfg: ModelConfig, what: str, batch: int, seq_len: int, threads: int) -> dict:
    return {"what": what, "cell": mcfg.cell, "layers": mcfg.layers, "hidden": mcfg.hidden, "embed": mcfg.embed,
            "vocab": mcfg.vocab_size, "batch": batch, "seq_len": seq_len, "threads": threads}


def train_key(mcfg: ModelConfig, cfg: TrainConfig, threads: int) -> str:
    return TuneCache.key(workload(mcfg, "train step", cfg.batch_size, cfg.seq_len, threads), torch.__version__)


def make_tuner(mcfg: ModelConfig, cfg: TrainConfig, device: torch.device, distributed: bool) -> StepTuner | None:
    """The tuner for this run, or None when nothing is left to choose (forced, GPU, torchrun, one core)."""
    if device.type != "cpu" or distributed or (cfg.precision != "auto" and cfg.threads):
        return None
    cache = TuneCache()
    candidates, known = {}, {}
    for t in cpu.candidates(cfg.threads):
        if cfg.precision != "auto":
            candidates[t] = [cfg.precision]
            continue
        cached = cache.verdict(train_key(mcfg, cfg, t), DTYPES)
        if cached:
            known[t], candidates[t] = cached, [cached.choice]
        else:
            candidates[t] = ["fp32", "bf16"]
    tuner = StepTuner(candidates, known)
    return tuner if tuner.trying else None


def remember(tuner: StepTuner, mcfg: ModelConfig, cfg: TrainConfig) -> None:
    """Keep the precision verdicts measured in this run (per thread count) for the next one.

    Only firm ones: a verdict where a precision was dropped after one slow step may be a fluke."""
    if cfg.precision != "auto":  # a forced precision was never compared: it is no verdict
        return
    cache = TuneCache()
    for t, verdict in tuner.precision_verdicts.items():
        if verdict.firm and not verdict.cached:
            cache.put(train_key(mcfg, cfg, t), verdict.to_dict())


@torch.no_grad()
def eval_precision(model, tokens: np.ndarray, batch_size: int = 64, seq_len: int = 256,
                   cache: TuneCache | None = None) -> Verdict:
    """fp32 or bf16 autocast for evaluating `model` on the CPU at the current thread count: a forward pass
    over one block of `tokens` timed in each, in turn (~0.5 s), unless the cache holds the verdict."""
    c = model.config
    key = TuneCache.key(workload(c, "evaluation", batch_size, seq_len, torch.get_num_threads()), torch.__version__)

    def measure() -> Verdict:
        # a block of the layout validation reads, no more logits than one of its blocks may hold (LOGITS_BUDGET:
        # a 1M-word vocabulary would otherwise take 17 GB here, in a run that then needs 2 GB)
        width = logits_block(c.vocab_size, 1, 64)
        rows = max(1, min(batch_size, (len(tokens) - 1) // width, LOGITS_BUDGET // (width * c.vocab_size)))
        x = torch.from_numpy(np.asarray(tokens[: rows * width], dtype=np.int64)).view(rows, width)  # (B, T)
        was_training = model.training
        model.eval()

        def forward(dtype):
            with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
                model(x)

        rates = interleaved_rates({p: (lambda d=d: forward(d), x.numel()) for p, d in DTYPES.items()}, 0.05, 3)
        model.train(was_training)
        return precision_verdict(rates)

    if len(tokens) < 65:
        return Verdict("fp32")
    return cached_or_measured(cache or TuneCache(), key, measure, DTYPES)


class SpeedPlan:
    """A run's precision and CPU thread count, as its steps go: `amp_dtype` is the autocast dtype training
    steps run in now (None: fp32); `tuner` tries settings on the first steps (None: nothing left to choose)."""

    def __init__(self, mcfg: ModelConfig, cfg: TrainConfig, device: torch.device, distributed: bool,
                 on_tune: Callable[[str], None] = lambda message: None):
        self.mcfg, self.cfg, self.device, self.distributed, self.on_tune = mcfg, cfg, device, distributed, on_tune
        self.amp_dtype = resolve_precision(cfg.precision, device)  # CPU `auto`: fp32 until measured
        self.tuner = make_tuner(mcfg, cfg, device, distributed)
        if self.tuner is None and device.type == "cpu" and not distributed and cfg.precision == "auto" and cfg.threads:
            hit = TuneCache().get(train_key(mcfg, cfg, cfg.threads))  # its verdict for --threads cached: keep it
            self.amp_dtype = DTYPES.get(hit.get("choice")) if hit else None
        self._eval_dtype: torch.dtype | None | str = "undecided"
        self._remembered = False
        self._expect: Callable[[float, tuple[str, int]], None] | None = None
        self._evidence = [0, 0.0, 0]  # steps, seconds and characters of settled steps, once the tuner has chosen

    def expect(self, check: Callable[[float, tuple[str, int]], None]) -> None:
        """Call `check(chars per second, (precision, threads))` once EVIDENCE_STEPS settled steps have run: the run's
        own speed, free evidence for a figure measured before it (the sizing's)."""
        self._expect = check

    def step(self, train_step: Callable[[], dict]) -> dict:
        """One training step, in the setting the tuner asks for, timed for it."""
        tuner = self.tuner
        if tuner is not None:
            self.amp_dtype = DTYPES[tuner.setting.precision]
            cpu.set_threads(tuner.setting.threads)
        settled = tuner is None or not tuner.trying
        t0 = time.perf_counter()
        out = train_step()
        seconds = time.perf_counter() - t0
        if tuner is not None:
            message = tuner.record(seconds)
            if message:
                if not self._remembered:
                    remember(tuner, self.mcfg, self.cfg)
                    self._remembered = True
                self.on_tune(message)
        if settled and self._expect is not None:
            self._gather(seconds, out["chars"])
        return out

    def _gather(self, seconds: float, chars: int) -> None:
        """Count a settled step toward the evidence; hand it over once there is enough (the first two are warm-up)."""
        e = self._evidence
        e[0] += 1
        if e[0] > 2:
            e[1], e[2] = e[1] + seconds, e[2] + chars
        if e[0] == EVIDENCE_STEPS + 2:
            precision = next(k for k, v in {**DTYPES, "fp16": torch.float16}.items() if v == self.amp_dtype)
            self._expect(e[2] / max(e[1], 1e-9), (precision, torch.get_num_threads()))
            self._expect = None

    def steady(self) -> None:
        """Validation and samples run at the best thread count so far, never in a trial setting
        (a 2-thread validation while another process holds a core can take minutes)."""
        if self.tuner is not None:
            cpu.set_threads(self.tuner.steady.threads)

    def eval_dtype(self, model, val_tokens: np.ndarray) -> torch.dtype | None:
        """Validation's autocast dtype: as training's, except that CPU `auto` measures its own (once, cached)."""
        if self.device.type != "cpu" or self.cfg.precision != "auto" or self.distributed:
            return self.amp_dtype
        if self._eval_dtype == "undecided":
            verdict = eval_precision(model, val_tokens)
            self._eval_dtype = DTYPES[verdict.choice]
            self.on_tune(f"validation precision: {verdict.describe()}")
        return self._eval_dtype
