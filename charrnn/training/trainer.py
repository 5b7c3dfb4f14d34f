"""Training: truncated back-propagation through time over B parallel streams.

One step reads a (B, T) block from `StreamBatcher`, runs it forward from the state
the previous step ended in, back-propagates through those T steps only, clips the
global gradient norm and takes an AdamW step. The state is then detached (the graph
is cut, the values carried) and fed to the next step; it is reset only when the
streams wrap around at the end of an epoch.

Losses are reported in bits per character of the text for every kind of token (`tokenkind`):
a step's loss in nats per token times its tokens over the characters its targets stand for
(`vocab.char_counts`), bits per token beside them. For characters the two are the same.

`Trainer` knows nothing about terminals: it reports through a `Reporter`. Its helpers live
beside it: the order of events in a run (`loop`), one clipped update (`optim`), the budget and
schedule (`budget`), what a checkpoint holds (`state`), the precision and threads (`speed`).
"""

from __future__ import annotations

import math
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from charrnn.training import distributed, optim
from charrnn.training import speed as trainspeed
from charrnn.training import state as trainstate
from charrnn.training.streams import StreamBatcher, check_ids
from charrnn.training.budget import Budget, lr_at
from charrnn.training.checkpoint import load_checkpoint
from charrnn.model.config import ModelConfig
from charrnn.training.config import TrainConfig
from charrnn.text.corpus import token_index_at_char
from charrnn.inspect.evaluation import LN2, evaluate
from charrnn.model.rnn import CharRNN, detach_state
from charrnn.training.overfit import OverfitWatch
from charrnn.training.clock import RunClock
from charrnn.training.runfolder import RunFolder
from charrnn.runtime.threads import check_threads
from charrnn.runtime.device import resolve_device
from charrnn.generation.sampling import sample_text
from charrnn.training.sizing import check_model_fits
from charrnn.training.loop import Diverged, Reporter, TrainingRun, TrainResult
from charrnn.text.vocab import Vocab

__all__ = ["Reporter", "TrainConfig", "TrainResult", "Trainer"]

UNUSED_ID_BIAS = -15.0  # output bias of ids the text never uses (e^-15 each: ~0 probability, still learnable)


def silence_unused_ids(model: CharRNN, vocab: Vocab, *token_arrays: np.ndarray) -> None:
    """Start the output bias of ids that never occur in the text at UNUSED_ID_BIAS.

    A byte vocabulary has all 256 ids whatever the text, and English uses about 80: from a zero bias
    the others take a share of every prediction that training only slowly drives out (War and Peace,
    1x64, 600 steps: 3.13 bits/char, 2.95 with this). A vocabulary built from the text is left alone.
    """
    if not vocab.fixed_ids:
        return
    seen = np.zeros(len(vocab), dtype=bool)
    for tokens in token_arrays:
        for a in range(0, len(tokens), 1 << 22):
            seen |= np.bincount(np.asarray(tokens[a : a + (1 << 22)]), minlength=len(vocab)) > 0
    with torch.no_grad():
        model.head.bias[torch.from_numpy(~seen).to(model.head.bias.device)] = UNUSED_ID_BIAS


class Trainer:
    """Owns the model, optimizer, data cursor and carried state of one run, and what one step does."""

    def __init__(self, model_config: ModelConfig, train_config: TrainConfig, vocab: Vocab, train_tokens: np.ndarray,
                 val_tokens: np.ndarray, out_dir: str | Path | None = None, reporter: Reporter | None = None,
                 meta: dict | None = None):
        self.mcfg, self.cfg, self.vocab = model_config, train_config, vocab
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.reporter = reporter or Reporter()
        self.meta = meta or {}  # e.g. corpus name, stored in checkpoints
        device = resolve_device(train_config.device)
        self.dist = distributed.setup(device, train_config.batch_size)
        self.device = distributed.device_for(self.dist, device)
        self.speed = trainspeed.SpeedPlan(model_config, train_config, self.device, self.dist.enabled,
                                          on_tune=lambda message: self.reporter.on_tune(message))
        if self.device.type == "cpu":
            check_threads(train_config.threads)
        if not self.dist.is_main:
            self.reporter, self.out_dir = Reporter(), None  # only rank 0 writes and reports
        check_model_fits(model_config, train_config, self.device.type, self.reporter, vocab.token_is_char)
        torch.manual_seed(train_config.seed)
        self.model = CharRNN(model_config).to(self.device)
        silence_unused_ids(self.model, vocab, train_tokens, val_tokens)  # (resume and --init-from load weights over it)
        self.net = distributed.wrap(self.model, self.dist, self.device)  # what training calls: the model or its DDP wrapper
        self.optimizer = optim.make_optimizer(self.model, train_config.lr, train_config.weight_decay)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.speed.amp_dtype == torch.float16)
        self.batcher = StreamBatcher(train_tokens, train_config.batch_size, train_config.seq_len, vocab_size=len(vocab))
        self.budget = Budget(train_config.steps, train_config.epochs, train_config.time, self.batcher.steps_per_epoch)
        counts = vocab.char_counts  # (V,) characters each id stands for
        self.char_counts = None if (counts == 1).all() else torch.from_numpy(counts)  # None: one per token
        eval_end = token_index_at_char(val_tokens, counts, train_config.eval_chars) if train_config.eval_chars else None
        self.val_tokens = val_tokens[:eval_end]  # the first eval_chars characters of the held-out text
        check_ids(self.val_tokens, len(vocab), "held-out")
        self.rows = self.dist.shard(train_config.batch_size)  # this rank's streams
        self.local_batch = self.rows.stop - self.rows.start
        self.state = self.model.init_state(self.local_batch, self.device)
        self.step = 0
        self.epoch = 0
        self.clock = RunClock()  # the budget's seconds, and chars/s
        self.val_chars_per_token = 1.0  # characters per token of the held-out text (set by `validate`)
        self.best_val_bpc: float | None = None
        self.history: list[dict] = []  # every log and eval record (written to metrics.jsonl)
        self.data = trainstate.data_fingerprint(train_tokens, self.val_tokens)
        self.watch = OverfitWatch(train_config.patience)
        self.saved_step: int | None = None  # the step last.pt was last written at, this session
        self.good_step = 0  # the last step whose update was finite (skipped steps leave the weights as they were)
        self.average: list[torch.Tensor] | None = None  # the weights' moving average (`average`), once it started

    @classmethod
    def resume(cls, checkpoint: str | Path | dict, train_tokens: np.ndarray, val_tokens: np.ndarray,
               out_dir: str | Path | None = None, reporter: Reporter | None = None,
               overrides: dict | None = None) -> "Trainer":
        """A trainer that continues `checkpoint` (a path or a loaded dict) exactly (tokens encoded with its vocabulary).

        The training settings, the budget included, come from the checkpoint; `overrides` replaces some of
        them (e.g. {"steps": 20000} to train longer: the schedule goes on from where it was, `Budget.extend`).
        `out_dir` defaults to the checkpoint's own folder.
        """
        path = None if isinstance(checkpoint, dict) else Path(checkpoint)
        ckpt = checkpoint if path is None else load_checkpoint(path)
        cfg = trainstate.resume_config(ckpt, overrides)
        trainer = cls(ModelConfig(**ckpt["model_config"]), cfg, Vocab.from_dict(ckpt["vocab"]), train_tokens,
                      val_tokens, path.parent if out_dir is None and path else out_dir, reporter, ckpt.get("meta"))
        trainstate.restore(trainer, ckpt)
        return trainer

    def run(self, until_step: int | None = None) -> TrainResult:
        """Train until the budget is spent or a signal arrives; save best.pt and last.pt (`loop.TrainingRun`).

        `until_step` pauses the run at that step (saving last.pt) without changing the budget or the
        schedule, so that `Trainer.resume` can carry on from there. A failed save stops training:
        stopped_by "save_error", the message in `result.error`, the checkpoints written before it intact.
        """
        return TrainingRun(self, until_step)()

    # -- where the run is ----------------------------------------------------------------------------

    @property
    def total_steps(self) -> int | None:
        return self.budget.total_steps

    def progress(self) -> float:
        return self.budget.progress(self.step, self.elapsed)

    @property
    def epoch_float(self) -> float:
        return self.epoch + self.batcher.cursor / max(1, self.batcher.stream_len - 1)

    def record(self, **fields) -> dict:
        """A record of where the run is (step, epoch, time), with `fields`: a log, a validation, a sample."""
        return {"step": self.step, "epoch": round(self.epoch_float, 4), "time": round(self.elapsed, 2), **fields}

    @property
    def elapsed(self) -> float:
        return self.clock.elapsed

    def chars_per_second(self) -> float:
        return self.clock.chars_per_second()

    def final_eval_reserve(self) -> float:
        last = next((r["eval_seconds"] for r in reversed(self.history) if r.get("eval_seconds")), None)
        return self.clock.eval_reserve(self.cfg.time, len(self.val_tokens), self.cfg.batch_size * self.cfg.seq_len, last)

    # -- one step ------------------------------------------------------------------------------------

    def train_step(self) -> dict:
        """One TBPTT step; returns the loss (nats/token), the characters its targets stand for, the
        pre-clip gradient norm, the lr, and whether the update was taken (`finite`) or skipped as a
        normal fp16 overflow (`overflow`)."""
        x, y, wrapped = self.batcher.next_batch()  # (B, T), (B, T)
        chars = y.numel() if self.char_counts is None else int(self.char_counts[y].sum())  # all streams, every rank
        if wrapped:
            self.epoch += 1
            self.state = self.model.init_state(self.local_batch, self.device)  # the text restarts
        x = x[self.rows].to(self.device, non_blocking=True)  # (B/W, T): this rank's streams
        y = y[self.rows].to(self.device, non_blocking=True)
        lr = lr_at(self.cfg.lr, self.cfg.warmup, self.cfg.min_lr_ratio, self.step,
                   self.budget.schedule_progress(self.step, self.elapsed))
        optim.set_lr(self.optimizer, lr)
        self.model.train()
        amp = self.speed.amp_dtype
        ar, tar = self.cfg.activation_reg, self.cfg.temporal_reg
        with torch.autocast(self.device.type, dtype=amp or torch.float32, enabled=amp is not None):
            logits, state, *penalised = self.net(x, self.state, activations=bool(ar or tar))  # (B, T, V), ...
        ce = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))
        loss = ce + ar * penalised[0][0] + tar * penalised[0][1] if penalised else ce
        self.state = detach_state(tuple(s.float() for s in state))
        # (under DDP every rank decides on the all-reduced gradient norm, the same everywhere)
        done = optim.update(loss, self.model, self.optimizer, self.scaler, self.cfg.clip, trust_loss=self.dist.enabled)
        if not done.finite:  # a non-finite carried state would poison every following step: start the streams afresh
            self.state = self.model.init_state(self.local_batch, self.device)
        elif self.cfg.average and self.progress() >= self.cfg.average_from:
            self._average()
        self.step += 1
        ce_loss = float(ce.detach()) if penalised else done.loss  # the log reports the text's loss, not the penalties
        return {"loss": ce_loss, "chars": chars, "grad_norm": done.grad_norm, "lr": lr, "finite": done.finite,
                "overflow": done.overflow}

    # -- validation, saving, samples --------------------------------------------------------------------

    def _average(self) -> None:
        """Move the weights' average 1 - `average` of the way to the weights (started at the weights themselves)."""
        params = [p.detach() for p in self.model.parameters()]
        if self.average is None:
            self.average = [p.clone() for p in params]
        else:
            torch._foreach_lerp_(self.average, params, 1.0 - self.cfg.average)

    @contextmanager
    def averaged(self):
        """The model holds the averaged weights inside the block (when there are any), its own after."""
        if self.average is None:
            yield
            return
        params = [p.detach() for p in self.model.parameters()]
        own = [p.clone() for p in params]
        torch._foreach_copy_(params, self.average)
        try:
            yield
        finally:
            torch._foreach_copy_(params, own)

    def validate(self) -> float | None:
        """Validation loss in nats per character of the held-out text (None if there is none), of the averaged
        weights once there are any; `val_chars_per_token` keeps the ratio that turns it into nats per token."""
        if len(self.val_tokens) < 2:
            return None
        with self.averaged():
            dtype = self.speed.eval_dtype(self.model, self.val_tokens)
            result = evaluate(self.model, self.val_tokens, batch_size=64, seq_len=256, device=self.device,
                              autocast_dtype=dtype, shard=(self.dist.rank, self.dist.world),
                              char_counts=self.vocab.char_counts)
        nll, tokens, chars = distributed.all_reduce([result.nll_nats, result.tokens, result.chars], self.device, self.dist)
        self.val_chars_per_token = chars / max(tokens, 1)
        return nll / max(chars, 1)

    def snapshot_name(self) -> str:
        return f"step-{self.step:06d}.pt"

    def save(self, *names: str) -> list[Path]:
        """Write the current state under each name (serialised once), then metrics.jsonl, or raise SaveError
        (disk full, folder unwritable) with the files already there intact."""
        if not names:
            return []
        self.check_finite()
        payload = trainstate.payload(self)  # under torchrun every rank joins the gather of the carried state
        if self.out_dir is None:
            return []
        paths = RunFolder(self.out_dir, self.cfg.keep).save(names, payload, self.history)
        if "last.pt" in names:
            self.saved_step = self.step
        for path in paths:
            self.reporter.on_save(path)
        return paths

    def check_finite(self, val: float | None = None) -> None:
        """Raise Diverged if a weight, or the validation loss `val`, is NaN or infinite: never saved as good."""
        if not all(bool(torch.isfinite(p).all()) for p in self.model.parameters()):
            raise Diverged(f"the weights are no longer finite (NaN or Inf) at step {self.step}")
        if val is not None and not math.isfinite(val):
            raise Diverged(f"the validation loss is {val} at step {self.step}: the weights no longer predict anything")

    def validate_and_save(self, snapshot: bool = False) -> float | None:
        """Validate, record it, save last.pt (best.pt when it improved, step-N.pt for `snapshot`); the bits/char."""
        self.speed.steady()
        t0 = time.perf_counter()
        val = self.validate()
        self.check_finite(val)
        per_token = None if val is None else val * self.val_chars_per_token  # nats per token
        bpc = None if val is None else val / LN2
        record = self.record(val_loss=per_token, val_bpc=bpc, val_bpt=None if val is None else per_token / LN2,
                             eval_seconds=round(time.perf_counter() - t0, 3))
        improved = bpc is not None and (self.best_val_bpc is None or bpc < self.best_val_bpc)
        if improved:
            self.best_val_bpc = bpc
        self.history.append(record)
        self.reporter.on_eval(record)
        last_train = next((r["bpc"] for r in reversed(self.history) if "bpc" in r), None)
        warning, _ = self.watch.update(self.step, bpc, last_train)
        if warning:
            self.reporter.on_warning(warning)
        best = ["best.pt"] if improved or bpc is None else []
        if best and self.average is not None:  # best.pt holds the average that validated, last.pt the weights
            with self.averaged():
                self.save(*best)
            best = []
        self.save(*best, "last.pt", *([self.snapshot_name()] if snapshot else []))
        return bpc

    def live_sample(self) -> dict:
        """A short sample from the current model, for watching it learn (`sample_every`). It draws from its own
        generator seeded with `seed`, so training takes exactly the same path with or without it."""
        c = self.cfg
        self.speed.steady()
        text = sample_text(self.model, self.vocab, c.sample_length, prime=c.sample_prime,
                           temperature=c.sample_temp, seed=c.seed, unk="skip")
        self.model.train()  # (sampling put it in eval mode)
        record = self.record(sample=text)
        self.reporter.on_sample(record)
        return record
