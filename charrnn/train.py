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

import hashlib
import json
import math
import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from charrnn.checkpoint import (
    SaveError, atomic_write_text, checkpoint_bytes, load_checkpoint, prune_snapshots, remove_stale_temps,
    write_checkpoint_bytes,
)
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
    batch_size: int = 32  # B: parallel streams per step (global: split across torchrun processes)
    seq_len: int = 64  # T: characters per step that gradients flow through
    lr: float = 6e-3  # peak learning rate (AdamW)
    min_lr_ratio: float = 0.05  # the cosine decay ends at lr * min_lr_ratio
    warmup: int = 30  # steps of linear warm-up
    weight_decay: float = 0.1  # AdamW decoupled weight decay (matrices only; 0.1: -0.005 bits/char at 130 s on Shakespeare)
    clip: float = 5.0  # global gradient-norm clip; 0 = off
    steps: int | None = None  # stop after this many steps
    epochs: float | None = None  # ... or this many passes over the training text
    time: float | None = None  # ... or this many seconds of wall-clock time
    eval_every: int = 200  # steps between validation passes (and checkpoint saves)
    save_every: int = 0  # steps between extra snapshots step-000500.pt (0 = none)
    keep: int = 3  # snapshots kept; older ones are deleted (best.pt and last.pt never are)
    eval_chars: int = 250_000  # validate on the first this-many held-out characters (0 = all; `charrnn eval` for the whole tail)
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
            (self.save_every >= 0, "--save-every must be >= 0 (0 turns snapshots off)"),
            (self.keep >= 0, "--keep must be >= 0"),
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


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch uses n CPU threads inside the block (0 = one per core), the previous count after."""
    saved = torch.get_num_threads()
    torch.set_num_threads(n or default_threads())
    try:
        yield
    finally:
        torch.set_num_threads(saved)


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
    stopped_by: str  # "steps" | "epochs" | "time" | "SIGINT" | "SIGTERM" | "nan" | "until_step" | "save_error"
    out_dir: Path | None
    history: list[dict] = field(default_factory=list)
    error: str | None = None  # what went wrong when stopped_by is "save_error"


# Changing these on resume would break the data layout or the carried state.
FIXED_ON_RESUME = ("batch_size", "seq_len", "val_fraction")


FINGERPRINT_BLOCKS, FINGERPRINT_BLOCK = 64, 1 << 16  # sampled, so a 1 GB corpus costs a few MB of reading


def data_fingerprint(train_tokens: np.ndarray, val_tokens: np.ndarray) -> dict:
    """Sizes and a hash of the token arrays, so a resumed run can tell whether its data changed.

    Arrays up to 64 blocks of 64K ids are hashed whole; larger ones (memory maps of big
    corpora) by 64 evenly spaced blocks, so starting a run never reads the whole corpus.
    """
    h = hashlib.blake2b(digest_size=16)
    for part in (train_tokens, val_tokens):
        n = len(part)
        if n <= FINGERPRINT_BLOCKS * FINGERPRINT_BLOCK:
            starts = [0] if n else []
            size = n
        else:
            starts = np.linspace(0, n - FINGERPRINT_BLOCK, FINGERPRINT_BLOCKS).astype(np.int64).tolist()
            size = FINGERPRINT_BLOCK
        for start in starts:
            h.update(memoryview(np.ascontiguousarray(part[start : start + size])).cast("B"))
    return {"train_chars": len(train_tokens), "val_chars": len(val_tokens), "blake2b": h.hexdigest()}


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
        self.data = data_fingerprint(train_tokens, self.val_tokens)
        self._stop_signal: int | None = None
        self._until_step: int | None = None

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
        if self._until_step is not None and self.step >= self._until_step:
            return "until_step"
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
        else:  # a non-finite carried state would poison every following step: start the streams afresh
            self.state = self.model.init_state(self.local_batch, self.device)
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
                "scaler": self.scaler.state_dict(),
                "best_val": self.best_val,
                "history": list(self.history),
                "data": dict(self.data),
            },
        }

    def load_state(self, ckpt: dict) -> None:
        """Continue exactly where `ckpt` stopped.

        Restores the weights, the optimizer (Adam moments and step counts), the counters the
        learning-rate schedule is computed from (step, epoch, elapsed time), best_val, the
        history, every random-number generator, the data cursor and the carried hidden state.
        The model config must be the checkpoint's (see `Trainer.resume`).
        """
        extra = ckpt.get("extra") or {}
        if "optimizer" not in ckpt or "cursor" not in extra:
            raise CharrnnError("this checkpoint is inference-only (exported): it has no optimizer or data position "
                               "to resume from; start a new run from its weights with --init-from")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.optimizer.param_groups[0]["weight_decay"] = self.cfg.weight_decay  # an override on resume wins
        if extra.get("scaler"):
            self.scaler.load_state_dict(extra["scaler"])
        self.step, self.epoch, self.elapsed = int(ckpt["step"]), int(ckpt["epoch"]), float(extra["elapsed"])
        best_bpc = ckpt.get("best_val_bpc")
        self.best_val = extra.get("best_val", None if best_bpc is None else best_bpc * LN2)
        self.history = list(extra.get("history", ckpt.get("metrics", [])))
        self.batcher.cursor = int(extra["cursor"])
        state = tuple(s[:, self.rows].to(self.device) for s in extra["state"])  # this rank's streams of (L, B, H)
        fresh = self.model.init_state(self.local_batch, self.device)
        if [s.shape for s in state] == [s.shape for s in fresh]:
            self.state = state
        torch.set_rng_state(extra["torch_rng"])
        if torch.cuda.is_available() and extra.get("cuda_rng"):
            n = min(len(extra["cuda_rng"]), torch.cuda.device_count())
            for i in range(n):
                torch.cuda.set_rng_state(extra["cuda_rng"][i], i)
        if extra.get("data") and extra["data"] != self.data:
            self.reporter.on_warning("the training text differs from the one this run was trained on "
                                     f"({extra['data']['train_chars']:,} -> {self.data['train_chars']:,} train chars, "
                                     "or changed content): resuming, but not as an exact continuation")

    @classmethod
    def resume(
        cls,
        checkpoint: str | Path | dict,
        train_tokens: np.ndarray,
        val_tokens: np.ndarray,
        out_dir: str | Path | None = None,
        reporter: Reporter | None = None,
        overrides: dict | None = None,
    ) -> "Trainer":
        """A trainer that continues a checkpoint's run exactly (tokens encoded with its vocabulary).

        The training settings, the budget (--steps/--epochs/--time) included, come from the
        checkpoint, so the learning-rate schedule carries on unchanged; `overrides` replaces
        some of them (e.g. {"steps": 20000} to train longer). `out_dir` defaults to the
        checkpoint's own folder.
        """
        path = None if isinstance(checkpoint, dict) else Path(checkpoint)
        ckpt = load_checkpoint(path) if path is not None else checkpoint
        if "train_config" not in ckpt:
            raise CharrnnError("this checkpoint is inference-only (exported): it cannot be resumed; "
                               "start a new run from its weights with --init-from")
        base = ckpt["train_config"]
        changed = [k for k in FIXED_ON_RESUME if k in (overrides or {}) and overrides[k] != base.get(k)]
        if changed:
            flags = ", ".join("--" + k.replace("_", "-") for k in changed)
            raise UsageError(f"{flags} cannot change when resuming (the data layout and carried state depend on it): "
                             "start a new run from these weights with --init-from instead")
        cfg = TrainConfig.from_dict({**base, **(overrides or {})})
        if out_dir is None and path is not None:
            out_dir = path.parent
        trainer = cls(ModelConfig(**ckpt["model_config"]), cfg, Vocab.from_dict(ckpt["vocab"]),
                      train_tokens, val_tokens, out_dir, reporter, meta=ckpt.get("meta"))
        trainer.load_state(ckpt)
        return trainer

    def snapshot_name(self) -> str:
        return f"step-{self.step:06d}.pt"

    def save(self, *names: str) -> list[Path]:
        """Write the current state under each name (serialised once), then metrics.jsonl.

        Raises SaveError if the disk is full or the folder unwritable; files already there stay intact.
        """
        if not names:
            return []
        payload = self.checkpoint_payload()  # under torchrun every rank joins the gather of the carried state
        if self.out_dir is None:
            return []
        remove_stale_temps(self.out_dir)  # left by a process killed in the middle of a save
        data = checkpoint_bytes(payload)
        paths = []
        for name in names:
            write_checkpoint_bytes(self.out_dir / name, data)
            paths.append(self.out_dir / name)
        try:
            atomic_write_text(self.out_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in self.history))
        except OSError as e:
            raise SaveError(f"could not write {self.out_dir / 'metrics.jsonl'}: {e.strerror or e}") from None
        if any(n.startswith("step-") for n in names):
            prune_snapshots(self.out_dir, self.cfg.keep)
        for path in paths:
            self.reporter.on_save(path)
        return paths

    def _check_out_dir(self) -> None:
        """Fail before training, not after an hour of it, if the run folder cannot be written."""
        if self.out_dir is None:
            return
        try:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".write-test.", suffix=".tmp", dir=self.out_dir)
            os.close(fd)
            os.unlink(probe)
            remove_stale_temps(self.out_dir)
            if self.cfg.save_every:  # a kill between saving a snapshot and pruning can leave one too many
                prune_snapshots(self.out_dir, self.cfg.keep)
        except OSError as e:
            raise CharrnnError(f"cannot write to the run folder {self.out_dir}: {e.strerror or e}") from None

    def _eval_and_save(self, snapshot: bool = False) -> dict:
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
        names = (["best.pt"] if improved or val is None else []) + ["last.pt"]
        self.save(*names, *([self.snapshot_name()] if snapshot else []))
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

    def run(self, until_step: int | None = None) -> TrainResult:
        """Train until the budget is spent or a signal arrives; save best.pt and last.pt.

        `until_step` pauses the run at that step (saving last.pt) without changing the budget or
        the learning-rate schedule, so that `Trainer.resume` can carry on from there.
        A failed save (disk full, folder unwritable) stops training: stopped_by "save_error",
        the message in `result.error`, the checkpoints written before it intact.
        """
        self._check_out_dir()
        self._until_step = until_step
        previous = self._install_signal_handlers()
        self.reporter.on_start(self)
        chars_per_step = self.cfg.batch_size * self.cfg.seq_len
        bad_steps, window_t, window_steps = 0, time.perf_counter(), 0
        last_val = None
        stopped_by = None
        error = None
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
                snapshot = bool(self.cfg.save_every) and self.step % self.cfg.save_every == 0
                if self.step % self.cfg.eval_every == 0 or snapshot:
                    t0 = time.perf_counter()
                    if self.step % self.cfg.eval_every == 0:
                        last_val = self._eval_and_save(snapshot)["val_bpc"]
                    else:
                        self.save("last.pt", self.snapshot_name())
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
            elif stopped_by.startswith("SIG") or stopped_by == "until_step":
                self.save("last.pt")
            elif self.step % self.cfg.eval_every != 0:
                last_val = self._eval_and_save()["val_bpc"]
        except SaveError as e:
            stopped_by, error = "save_error", (
                f"{e}; training stopped at step {self.step}: free some space or fix the folder's permissions, "
                f"then continue with `charrnn train --resume {self.out_dir}`")
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
            distributed.cleanup(self.dist)
        result = TrainResult(
            steps=self.step, epoch=self.epoch_float, seconds=self.elapsed,
            best_val_bpc=None if self.best_val is None else self.best_val / LN2,
            last_val_bpc=last_val, stopped_by=stopped_by, out_dir=self.out_dir, history=self.history, error=error,
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
