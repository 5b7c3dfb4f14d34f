"""Training: truncated back-propagation through time over B parallel streams.

One step reads a (B, T) block from `StreamBatcher`, runs it forward from the state
the previous step ended in, back-propagates through those T steps only, clips the
global gradient norm and takes an AdamW step. The state is then detached (the graph
is cut, the values carried) and fed to the next step; it is reset only when the
streams wrap around at the end of an epoch.

`Trainer` knows nothing about terminals: it reports through a `Reporter`, which the
CLI implements with a progress bar (or log lines when stderr is not a terminal).
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from charrnn.checkpoint import atomic_write_text, save_checkpoint
from charrnn import distributed
from charrnn.corpus import StreamBatcher
from charrnn.errors import CharrnnError, UsageError
from charrnn.evaluate import LN2, evaluate
from charrnn.model import CharRNN, ModelConfig, detach_state
from charrnn.sampling import sample_text
from charrnn.vocab import Vocab

DEFAULT_EPOCHS = 10  # when no --steps, --epochs or --time is given


@dataclass
class TrainConfig:
    batch_size: int = 16  # B: parallel streams per step (global: split across torchrun processes)
    seq_len: int = 128  # T: characters per step that gradients flow through
    lr: float = 4e-3  # peak learning rate (AdamW)
    min_lr_ratio: float = 0.05  # the cosine decay ends at lr * min_lr_ratio
    warmup: int = 30  # steps of linear warm-up
    weight_decay: float = 0.0  # AdamW decoupled weight decay (matrices only)
    clip: float = 5.0  # global gradient-norm clip; 0 = off
    steps: int | None = None  # stop after this many steps
    epochs: float | None = None  # ... or this many passes over the training text
    time: float | None = None  # ... or this many seconds of wall-clock time
    eval_every: int = 200  # steps between validation passes (and checkpoint saves)
    eval_chars: int = 1_000_000  # validate on at most this many held-out characters
    val_fraction: float = 0.1  # the last part of the corpus held out for validation
    log_every: int = 10  # steps between progress records
    sample_every: int = 200  # steps between live samples shown while training; 0 = off
    sample_length: int = 200  # characters per live sample
    sample_prime: str = ""  # live samples continue this text ('' = start after a line break)
    sample_temp: float = 0.8  # live samples' temperature (their seed is `seed`, so only the model changes)
    device: str = "auto"  # auto | cpu | cuda | mps
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (bf16 autocast where the hardware has it)
    threads: int = 0  # CPU threads for torch; 0 = one per available core
    seed: int = 1337

    def __post_init__(self) -> None:
        checks = [
            (self.batch_size >= 1, "--batch-size must be at least 1"),
            (self.seq_len >= 1, "--seq-len must be at least 1"),
            (self.lr > 0, "--lr must be positive"),
            (self.clip >= 0, "--clip must be >= 0 (0 turns clipping off)"),
            (self.steps is None or self.steps >= 1, "--steps must be at least 1"),
            (self.epochs is None or self.epochs > 0, "--epochs must be positive"),
            (self.time is None or self.time > 0, "--time must be positive"),
            (self.eval_every >= 1, "--eval-every must be at least 1"),
            (self.sample_every >= 0, "--sample-every must be >= 0 (0 turns live samples off)"),
            (self.sample_length >= 1 and self.sample_temp >= 0, "sample_length must be >= 1 and sample_temp >= 0"),
            (0.0 <= self.val_fraction < 1.0, "--val-fraction must be in [0, 1)"),
            (self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:"),
             "--device must be auto, cpu, cuda or mps"),
            (self.precision in ("auto", "fp32", "bf16", "fp16"), "--precision must be auto, fp32, bf16 or fp16"),
            (self.threads >= 0, "--threads must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise UsageError(message)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# ---- devices and precision ------------------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CharrnnError("--device cuda was asked for but no CUDA GPU is available: use --device cpu")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise CharrnnError("--device mps was asked for but MPS is not available: use --device cpu")
    return torch.device(name)


def cpu_has_fast_bf16() -> bool:
    """True when this CPU runs bf16 matrix products natively (AVX512-BF16 or AMX)."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, p, lambda: False)() for p in probes)


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for this precision on this device (None = plain fp32)."""
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "cpu" and cpu_has_fast_bf16():
            return torch.bfloat16
        return None
    if precision == "fp16" and device.type != "cuda":
        raise UsageError("--precision fp16 needs a CUDA GPU; use bf16 or fp32 on this device")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS
        return max(1, os.cpu_count() or 1)


# ---- schedule ---------------------------------------------------------------------------------------


def lr_at(cfg: TrainConfig, step: int, progress: float) -> float:
    """Linear warm-up over `warmup` steps, then cosine decay to lr * min_lr_ratio as progress goes 0 -> 1.

    `progress` is the fraction of the budget spent (steps, epochs or seconds, whichever runs out
    first), so a `--time` run decays its learning rate to fit its wall-clock budget.
    """
    warm = min(1.0, (step + 1) / max(1, cfg.warmup))
    p = min(max(progress, 0.0), 1.0)
    decay = cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p))
    return cfg.lr * warm * decay


# ---- reporting -------------------------------------------------------------------------------------


class Reporter:
    """What the trainer tells the outside world. Subclass and override what you need."""

    def on_start(self, trainer: "Trainer") -> None: ...
    def on_log(self, record: dict) -> None: ...
    def on_eval(self, record: dict) -> None: ...
    def on_save(self, path: Path) -> None: ...
    def on_sample(self, record: dict) -> None: ...
    def on_warning(self, message: str) -> None: ...
    def on_end(self, result: "TrainResult") -> None: ...


@dataclass
class TrainResult:
    steps: int
    epoch: float
    seconds: float
    best_val_bpc: float | None
    last_val_bpc: float | None
    stopped_by: str  # "steps" | "epochs" | "time" | "SIGINT" | "SIGTERM" | "nan"
    out_dir: Path | None
    history: list[dict] = field(default_factory=list)


# ---- the trainer -----------------------------------------------------------------------------------


class Trainer:
    """Owns the model, optimizer, data cursor and carried state of one run."""

    def __init__(
        self,
        model_config: ModelConfig,
        train_config: TrainConfig,
        vocab: Vocab,
        train_tokens: np.ndarray,
        val_tokens: np.ndarray,
        out_dir: str | Path | None = None,
        reporter: Reporter | None = None,
        meta: dict | None = None,
    ):
        self.mcfg, self.cfg, self.vocab = model_config, train_config, vocab
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.reporter = reporter or Reporter()
        self.meta = meta or {}  # e.g. corpus name, stored in checkpoints
        self.dist = distributed.setup(resolve_device(train_config.device), train_config.batch_size)
        self.device = distributed.device_for(self.dist, resolve_device(train_config.device))
        self.amp_dtype = resolve_precision(train_config.precision, self.device)
        if not self.dist.is_main:
            self.reporter, self.out_dir = Reporter(), None  # only rank 0 writes and reports
        if self.device.type == "cpu":
            torch.set_num_threads(train_config.threads or default_threads())
        torch.manual_seed(train_config.seed)
        self.model = CharRNN(model_config).to(self.device)
        self.net = self.model  # what training calls: the model, or its DDP wrapper
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            self.net = DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.optimizer = self._make_optimizer()
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.batcher = StreamBatcher(train_tokens, train_config.batch_size, train_config.seq_len)
        self.val_tokens = val_tokens[: train_config.eval_chars] if train_config.eval_chars else val_tokens
        self.rows = self.dist.shard(train_config.batch_size)  # this rank's streams
        self.local_batch = self.rows.stop - self.rows.start
        self.state = self.model.init_state(self.local_batch, self.device)
        self.step = 0
        self.epoch = 0
        self.elapsed = 0.0  # training seconds, summed across resumes
        self.best_val: float | None = None  # nats/char
        self.history: list[dict] = []  # every log and eval record (written to metrics.jsonl)
        self._stop_signal: int | None = None

    def _make_optimizer(self) -> torch.optim.Optimizer:
        decay = [p for n, p in self.model.named_parameters() if p.dim() >= 2 and "embedding" not in n]
        other = [p for n, p in self.model.named_parameters() if not (p.dim() >= 2 and "embedding" not in n)]
        groups = [{"params": decay, "weight_decay": self.cfg.weight_decay}, {"params": other, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=self.cfg.lr, betas=(0.9, 0.99))

    # -- budget ------------------------------------------------------------------------------------

    @property
    def total_steps(self) -> int | None:
        """The step budget implied by --steps / --epochs (None if only --time is set)."""
        budgets = []
        if self.cfg.steps:
            budgets.append(self.cfg.steps)
        if self.cfg.epochs:
            budgets.append(math.ceil(self.cfg.epochs * self.batcher.steps_per_epoch))
        if not budgets and not self.cfg.time:
            budgets.append(DEFAULT_EPOCHS * self.batcher.steps_per_epoch)
        return min(budgets) if budgets else None

    def progress(self) -> float:
        """Fraction of the budget used: the largest of steps, epochs and time fractions."""
        fractions = []
        if self.total_steps:
            fractions.append(self.step / self.total_steps)
        if self.cfg.time:
            fractions.append(self.elapsed / self.cfg.time)
        return max(fractions)

    def _agree(self) -> None:
        """Under torchrun, make every rank see the same signal and the same elapsed time."""
        if self.dist.enabled:
            sig, self.elapsed = distributed.all_reduce([self._stop_signal or 0, self.elapsed], self.device, self.dist, op="max")
            self._stop_signal = int(sig) or None

    def _stop_reason(self) -> str | None:
        self._agree()
        if self._stop_signal is not None:
            return signal.Signals(self._stop_signal).name
        if self.cfg.time and self.elapsed >= self.cfg.time:
            return "time"
        if self.total_steps and self.step >= self.total_steps:
            return "steps" if self.cfg.steps and self.step >= self.cfg.steps else "epochs"
        return None

    # -- one step ----------------------------------------------------------------------------------

    def train_step(self) -> dict:
        """One TBPTT step; returns the loss (nats/char) and the pre-clip gradient norm."""
        x, y, wrapped = self.batcher.next_batch()  # (B, T), (B, T)
        if wrapped:
            self.epoch += 1
            self.state = self.model.init_state(self.local_batch, self.device)  # the text restarts
        x = x[self.rows].to(self.device, non_blocking=True)  # (B/W, T): this rank's streams
        y = y[self.rows].to(self.device, non_blocking=True)
        lr = lr_at(self.cfg, self.step, self.progress())
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None):
            logits, state = self.net(x, self.state)  # (B, T, V)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))
        self.state = detach_state(tuple(s.float() for s in state))
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        max_norm = self.cfg.clip if self.cfg.clip > 0 else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm))
        loss_value = float(loss.detach())
        # the gradient norm is the same on every rank after DDP's all-reduce, so all ranks agree
        finite = math.isfinite(grad_norm) and (self.dist.enabled or math.isfinite(loss_value))
        if finite:
            self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step += 1
        return {"loss": loss_value, "grad_norm": grad_norm, "lr": lr, "finite": finite}

    # -- validation and saving ---------------------------------------------------------------------

    def validate(self) -> float | None:
        """Validation loss in nats/char over the held-out text (None if there is none)."""
        if len(self.val_tokens) < 2:
            return None
        result = evaluate(self.model, self.val_tokens, batch_size=64, seq_len=256, device=self.device,
                          autocast_dtype=self.amp_dtype, shard=(self.dist.rank, self.dist.world))
        nll, chars = distributed.all_reduce([result.nll_nats, result.chars], self.device, self.dist)
        return nll / max(chars, 1)

    def checkpoint_payload(self) -> dict:
        return {
            "model_config": self.mcfg.to_dict(),
            "vocab": self.vocab.to_dict(),
            "model": self.model.state_dict(),
            "train_config": self.cfg.to_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "metrics": [r for r in self.history if "val_bpc" in r],
            "best_val_bpc": None if self.best_val is None else self.best_val / LN2,
            "meta": dict(self.meta),
            "extra": {
                "cursor": self.batcher.cursor,
                "elapsed": self.elapsed,
                "state": [s.cpu() for s in distributed.gather_streams(self.state, self.dist)],  # (L, B, H), all streams
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
        }

    def save(self, name: str) -> Path | None:
        payload = self.checkpoint_payload()  # every rank joins the state gather
        if self.out_dir is None:
            return None
        path = self.out_dir / name
        save_checkpoint(path, payload)
        atomic_write_text(self.out_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in self.history))
        self.reporter.on_save(path)
        return path

    def _eval_and_save(self) -> dict:
        t0 = time.perf_counter()
        val = self.validate()
        record = {"step": self.step, "epoch": round(self.epoch_float, 4), "time": round(self.elapsed, 2),
                  "val_loss": val, "val_bpc": None if val is None else val / LN2,
                  "eval_seconds": round(time.perf_counter() - t0, 3)}
        improved = val is not None and (self.best_val is None or val < self.best_val)
        if improved:
            self.best_val = val
        self.history.append(record)
        self.reporter.on_eval(record)
        if improved or val is None:
            self.save("best.pt")
        self.save("last.pt")
        return record

    def live_sample(self) -> dict:
        """A short sample from the current model, for watching it learn (`sample_every`).

        It draws from its own generator seeded with `seed` and puts the model back in
        training mode, so training takes exactly the same path with or without it.
        """
        c = self.cfg
        text = sample_text(self.model, self.vocab, c.sample_length, prime=c.sample_prime,
                           temperature=c.sample_temp, seed=c.seed, unk="skip")
        self.model.train()
        record = {"step": self.step, "epoch": round(self.epoch_float, 4), "time": round(self.elapsed, 2), "sample": text}
        self.reporter.on_sample(record)
        return record

    @property
    def epoch_float(self) -> float:
        return self.epoch + self.batcher.cursor / max(1, self.batcher.stream_len - 1)

    # -- the loop ----------------------------------------------------------------------------------

    def _install_signal_handlers(self) -> dict:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def handler(signum, _frame):
            if self._stop_signal is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C: stop now
            self._stop_signal = signum

        return {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}

    def run(self) -> TrainResult:
        """Train until the budget is spent or a signal arrives; save best.pt and last.pt."""
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        previous = self._install_signal_handlers()
        self.reporter.on_start(self)
        chars_per_step = self.cfg.batch_size * self.cfg.seq_len
        bad_steps, window_t, window_steps = 0, time.perf_counter(), 0
        last_val = None
        stopped_by = None
        try:
            while (stopped_by := self._stop_reason()) is None:
                t0 = time.perf_counter()
                out = self.train_step()
                self.elapsed += time.perf_counter() - t0
                window_steps += 1
                if not out["finite"]:
                    bad_steps += 1
                    self.reporter.on_warning(f"step {self.step}: loss or gradient is not finite; update skipped")
                    if bad_steps >= 10:
                        stopped_by = "nan"
                        break
                else:
                    bad_steps = 0
                if self.step % self.cfg.log_every == 0 or self.step == 1:
                    if self.dist.enabled:  # the mean loss over all streams, as one process would see it
                        out["loss"] = distributed.all_reduce([out["loss"]], self.device, self.dist)[0] / self.dist.world
                    now = time.perf_counter()
                    record = {"step": self.step, "epoch": round(self.epoch_float, 4), "time": round(self.elapsed, 2),
                              "loss": out["loss"], "bpc": out["loss"] / LN2, "grad_norm": out["grad_norm"],
                              "lr": out["lr"], "chars_per_sec": window_steps * chars_per_step / max(now - window_t, 1e-9)}
                    self.history.append(record)
                    self.reporter.on_log(record)
                    window_t, window_steps = now, 0
                if self.step % self.cfg.eval_every == 0:
                    t0 = time.perf_counter()
                    last_val = self._eval_and_save()["val_bpc"]
                    self.elapsed += time.perf_counter() - t0
                    window_t = time.perf_counter()
                if self.cfg.sample_every and self.step % self.cfg.sample_every == 0:
                    t0 = time.perf_counter()
                    self.live_sample()
                    dt = time.perf_counter() - t0
                    self.elapsed += dt
                    window_t += dt  # sampling time does not count against training speed
            if stopped_by == "nan":
                # every bad update was skipped, so the weights in memory are the last good ones
                self.reporter.on_warning("training stopped: 10 non-finite steps in a row; "
                                         "last.pt holds the last good weights (try a lower --lr)")
                self.save("last.pt")
            elif stopped_by.startswith("SIG"):
                self.save("last.pt")
            elif self.step % self.cfg.eval_every != 0:
                last_val = self._eval_and_save()["val_bpc"]
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
            distributed.cleanup(self.dist)
        result = TrainResult(
            steps=self.step, epoch=self.epoch_float, seconds=self.elapsed,
            best_val_bpc=None if self.best_val is None else self.best_val / LN2,
            last_val_bpc=last_val, stopped_by=stopped_by, out_dir=self.out_dir, history=self.history,
        )
        self.reporter.on_end(result)
        return result


# ---- the whole thing in one call -----------------------------------------------------------------


def train_on_text(
    text: str,
    model_config: dict | None = None,
    train_config: TrainConfig | None = None,
    out_dir: str | Path | None = None,
    reporter: Reporter | None = None,
    meta: dict | None = None,
) -> tuple[Trainer, TrainResult]:
    """Build the vocabulary from `text`, hold out its tail for validation, and train.

    `model_config` holds ModelConfig fields other than vocab_size (cell, layers, hidden, ...).
    Returns the trainer (its `.model` is the trained model) and the result. For a corpus too
    big for memory, use `charrnn.tokens.prepare_corpus` and `train_on_tokens`.
    """
    vocab = Vocab.from_text(text)
    return train_on_tokens(vocab, vocab.encode_array(text), model_config, train_config, out_dir, reporter, meta)


def train_on_tokens(
    vocab: Vocab,
    tokens: np.ndarray,
    model_config: dict | None = None,
    train_config: TrainConfig | None = None,
    out_dir: str | Path | None = None,
    reporter: Reporter | None = None,
    meta: dict | None = None,
) -> tuple[Trainer, TrainResult]:
    """Train on token ids `tokens` (N,), e.g. the memory map of a `Corpus`; its tail is held out for validation.

    Batches are sliced from `tokens` as training goes, so a memory map is never read whole.
    """
    train_config = train_config or TrainConfig()
    n_val = int(len(tokens) * train_config.val_fraction)
    train_tokens, val_tokens = tokens[: len(tokens) - n_val], tokens[len(tokens) - n_val :]
    try:
        mcfg = ModelConfig(vocab_size=len(vocab), **(model_config or {}))
    except ValueError as e:
        raise UsageError(str(e)) from None
    trainer = Trainer(mcfg, train_config, vocab, train_tokens, val_tokens, out_dir, reporter, meta)
    return trainer, trainer.run()
