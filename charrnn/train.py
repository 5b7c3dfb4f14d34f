"""Training: truncated back-propagation through time over B parallel streams.

One step reads a (B, T) block from `StreamBatcher`, runs it forward from the state
the previous step ended in, back-propagates through those T steps only, clips the
global gradient norm and takes an AdamW step. The state is then detached (the graph
is cut, the values carried) and fed to the next step; it is reset only when the
streams wrap around at the end of an epoch.

Losses are reported in bits per character of the text for every kind of token (`tokenkind`):
a step's loss in nats per token times its tokens over the characters its targets stand for
(`vocab.char_counts`), bits per token beside them. For characters the two are the same.

`Trainer` knows nothing about terminals: it reports through a `Reporter`, which the
CLI implements with a progress bar (or log lines when stderr is not a terminal). Its
helpers each live beside it: the budget and schedule (`budget`), what a checkpoint holds
and what may change on resume (`trainstate`), Ctrl-C handling (`stopsignals`).
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from charrnn import distributed, trainspeed, trainstate
from charrnn.batcher import StreamBatcher
from charrnn.budget import Budget, lr_at
from charrnn.checkpoint import SaveError, load_checkpoint
from charrnn.config import ModelConfig, TrainConfig, fit_to_text
from charrnn.corpus import split_train_val, token_index_at_char
from charrnn.errors import CharrnnError, UsageError
from charrnn.evaluation import LN2, evaluate
from charrnn.model import CharRNN, detach_state
from charrnn.overfit import OverfitWatch
from charrnn.runclock import RunClock
from charrnn.runfolder import RunFolder
from charrnn.runtime import check_threads, resolve_device, torch_threads
from charrnn.sampling import sample_text
from charrnn.stopsignals import StopSignals
from charrnn.tokenkind import DEFAULT_MAX_VOCAB
from charrnn.vocab import Vocab
from charrnn.vocabbuild import vocab_for_text

__all__ = ["Reporter", "TrainConfig", "TrainResult", "Trainer", "train_on_text", "train_on_tokens"]

MAX_BAD_STEPS = 10  # non-finite steps in a row before a run gives up
UNUSED_ID_BIAS = -15.0  # output bias of ids the text never uses (e^-15 each: ~0 probability, still learnable)
LARGE_VOCAB = 4096  # distinct characters above which a run is warned what its vocabulary costs


def training_memory(m: ModelConfig, c: TrainConfig) -> int:
    """Bytes a training run needs at its peak, estimated from the configs alone (fp32).

    Weights, gradients and AdamW's two moments (16 bytes per parameter), plus what one step
    keeps for back-propagation: per character of the (B, T) block its embedding, every layer's
    gates and states, and the logits with their softmax and gradient (3 x V).
    """
    gates = {"lstm": 4, "gru": 3, "rnn": 1}[m.cell]
    per_char = m.embed + m.layers * (gates + 2) * m.hidden + 3 * m.vocab_size
    return 16 * m.num_params() + 4 * c.batch_size * c.seq_len * per_char


def check_model_fits(m: ModelConfig, c: TrainConfig, device: str, reporter: "Reporter", kind: str = "char") -> None:
    """Refuse a run that cannot fit in memory before building it; warn what a huge vocabulary costs."""
    from charrnn.runtime import check_memory, fmt_bytes

    need = training_memory(m, c)
    shape = f"a {m.cell} {m.layers}x{m.hidden} model (embed {m.embed}, vocabulary {m.vocab_size:,}, " \
            f"{m.num_params():,} parameters) trained on batch {c.batch_size} x seq {c.seq_len}"
    check_memory(need, shape, "use a smaller --hidden, --layers, --embed, --batch-size or --seq-len", device)
    if m.vocab_size > LARGE_VOCAB and kind == "char":  # (a word vocabulary is meant to be large)
        in_vocab = m.vocab_size * (m.embed + m.hidden + 1)
        reporter.on_warning(
            f"the corpus has {m.vocab_size:,} distinct characters: the embedding and output layers hold "
            f"{in_vocab:,} of the model's {m.num_params():,} parameters, each step computes {m.vocab_size:,} "
            f"logits per character, and training needs about {fmt_bytes(need)} at its peak. Most of those characters "
            f"are rare (`charrnn corpus stats` lists them): fold the rare ones into one character, or train on "
            f"the text's UTF-8 bytes (--tokens byte: 256 ids), to train many times faster")


class Diverged(Exception):
    """The weights (or their validation loss) are no longer finite: they must not be saved."""


class Reporter:
    """What the trainer tells the outside world. Subclass and override what you need."""

    def on_start(self, trainer: "Trainer") -> None: ...
    def on_step(self, trainer: "Trainer") -> None: ...  # after every step: keep it cheap
    def on_log(self, record: dict) -> None: ...
    def on_eval(self, record: dict) -> None: ...
    def on_save(self, path: Path) -> None: ...
    def on_sample(self, record: dict) -> None: ...
    def on_warning(self, message: str) -> None: ...
    def on_tune(self, message: str) -> None: ...  # what precision / thread count was chosen, and why
    def on_end(self, result: "TrainResult") -> None: ...


@dataclass
class TrainResult:
    steps: int
    epoch: float
    seconds: float
    best_val_bpc: float | None
    last_val_bpc: float | None
    stopped_by: str  # "steps" | "epochs" | "time" | "patience" | "SIGINT" | "SIGTERM" | "nan" | "until_step" | "save_error"
    out_dir: Path | None
    history: list[dict] = field(default_factory=list)
    error: str | None = None  # what went wrong when stopped_by is "save_error"


def make_optimizer(model: CharRNN, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW, with weight decay on the weight matrices only (not biases, not the embedding)."""
    params = dict(model.named_parameters())
    decays = {n: p.dim() >= 2 and "embedding" not in n for n, p in params.items()}
    groups = [{"params": [params[n] for n, d in decays.items() if d], "weight_decay": cfg.weight_decay},
              {"params": [params[n] for n, d in decays.items() if not d], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.99))


def silence_unused_ids(model: CharRNN, vocab: Vocab, *token_arrays: np.ndarray) -> int:
    """Start the output bias of ids that never occur in the text at UNUSED_ID_BIAS; returns how many.

    A byte vocabulary has all 256 ids whatever the text, and an English text uses about 80 of
    them. From a zero bias the other 176 would take a share of every prediction that training
    only slowly drives out (measured on War and Peace, 1x64 LSTM, 600 steps: 3.13 bits/char
    against 2.95 with this, the character model's figure). A character or word vocabulary is
    built from the text itself, so every id occurs and nothing changes.
    """
    if vocab.kind != "byte":
        return 0
    seen = np.zeros(len(vocab), dtype=bool)
    for tokens in token_arrays:
        for a in range(0, len(tokens), 1 << 22):
            seen |= np.bincount(np.asarray(tokens[a : a + (1 << 22)]), minlength=len(vocab)) > 0
    with torch.no_grad():
        model.head.bias[torch.from_numpy(~seen).to(model.head.bias.device)] = UNUSED_ID_BIAS
    return int((~seen).sum())


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
        # precision and CPU threads: chosen by timing the first steps where there is a choice (trainspeed)
        self.speed = trainspeed.SpeedPlan(model_config, train_config, self.device, self.dist.enabled,
                                          on_tune=lambda message: self.reporter.on_tune(message))
        if self.device.type == "cpu":
            check_threads(train_config.threads)
        if not self.dist.is_main:
            self.reporter, self.out_dir = Reporter(), None  # only rank 0 writes and reports
        check_model_fits(model_config, train_config, self.device.type, self.reporter, vocab.kind)
        torch.manual_seed(train_config.seed)
        self.model = CharRNN(model_config).to(self.device)
        silence_unused_ids(self.model, vocab, train_tokens, val_tokens)  # (resume and --init-from load weights over it)
        self.net = distributed.wrap(self.model, self.dist, self.device)  # what training calls: the model or its DDP wrapper
        self.optimizer = make_optimizer(self.model, train_config)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.speed.amp_dtype == torch.float16)
        self.batcher = StreamBatcher(train_tokens, train_config.batch_size, train_config.seq_len, vocab_size=len(vocab))
        self.budget = Budget(train_config.steps, train_config.epochs, train_config.time, self.batcher.steps_per_epoch)
        counts = vocab.char_counts  # (V,) characters each id stands for
        self.char_counts = None if (counts == 1).all() else torch.from_numpy(counts)  # None: one per token
        eval_end = token_index_at_char(val_tokens, counts, train_config.eval_chars) if train_config.eval_chars else None
        self.val_tokens = val_tokens[:eval_end]  # the first eval_chars characters of the held-out text
        if len(self.val_tokens) and int(np.max(self.val_tokens)) >= len(vocab):
            raise CharrnnError(f"the held-out token ids go beyond the {len(vocab)}-id vocabulary: "
                               "the token cache is damaged; delete it ($CHARRNN_CACHE/tokens) and run again")
        self.rows = self.dist.shard(train_config.batch_size)  # this rank's streams
        self.local_batch = self.rows.stop - self.rows.start
        self.state = self.model.init_state(self.local_batch, self.device)
        self.step = 0
        self.epoch = 0
        self.clock = RunClock()  # the budget's seconds, and chars/s (runclock)
        self.val_chars_per_token = 1.0  # characters per token of the held-out text (set by `validate`)
        self.best_val_bpc: float | None = None
        self.history: list[dict] = []  # every log and eval record (written to metrics.jsonl)
        self.data = trainstate.data_fingerprint(train_tokens, self.val_tokens)
        self.watch = OverfitWatch(train_config.patience)
        self.saved_step: int | None = None  # the step last.pt was last written at, this session
        self.good_step = 0  # the last step whose update was finite (skipped steps leave the weights as they were)
        self._until_step: int | None = None

    @classmethod
    def resume(cls, checkpoint: str | Path | dict, train_tokens: np.ndarray, val_tokens: np.ndarray,
               out_dir: str | Path | None = None, reporter: Reporter | None = None,
               overrides: dict | None = None) -> "Trainer":
        """A trainer that continues a checkpoint's run exactly (tokens encoded with its vocabulary).

        The training settings, the budget included, come from the checkpoint, so the schedule
        carries on unchanged; `overrides` replaces some of them (e.g. {"steps": 20000} to train
        longer: the schedule then goes on from where it was, see `budget.Budget.extend`).
        `out_dir` defaults to the checkpoint's own folder.
        """
        path = None if isinstance(checkpoint, dict) else Path(checkpoint)
        ckpt = load_checkpoint(path) if path is not None else checkpoint
        cfg = trainstate.resume_config(ckpt, overrides)
        if out_dir is None and path is not None:
            out_dir = path.parent
        trainer = cls(ModelConfig(**ckpt["model_config"]), cfg, Vocab.from_dict(ckpt["vocab"]),
                      train_tokens, val_tokens, out_dir, reporter, meta=ckpt.get("meta"))
        trainstate.restore(trainer, ckpt)
        return trainer

    # -- where the run is ----------------------------------------------------------------------------

    @property
    def total_steps(self) -> int | None:
        """The step budget implied by --steps / --epochs (None if only --time is set)."""
        return self.budget.total_steps

    def progress(self) -> float:
        """Fraction of the budget used: the largest of the steps, epochs and time fractions."""
        return self.budget.progress(self.step, self.elapsed)

    @property
    def epoch_float(self) -> float:
        return self.epoch + self.batcher.cursor / max(1, self.batcher.stream_len - 1)

    def last_train_bpc(self) -> float | None:
        """The newest training-loss record, in bits/char (None before the first)."""
        return next((r["bpc"] for r in reversed(self.history) if "bpc" in r), None)

    @property
    def elapsed(self) -> float:
        """Seconds of this run (training, validation, saving, samples), summed across resumes."""
        return self.clock.elapsed

    @elapsed.setter
    def elapsed(self, seconds: float) -> None:
        self.clock.elapsed = seconds

    def chars_per_second(self) -> float:
        """Average training throughput of this session in characters of text (training steps only)."""
        return self.clock.chars_per_second()

    def final_eval_reserve(self) -> float:
        """Seconds a time budget keeps back for the validation at the end: the last one's duration."""
        last = next((r["eval_seconds"] for r in reversed(self.history) if r.get("eval_seconds")), None)
        return self.clock.eval_reserve(self.cfg.time, len(self.val_tokens), self.cfg.batch_size * self.cfg.seq_len, last)

    def _stop_reason(self, signals: StopSignals) -> str | None:
        sig = signals.signum or 0
        if self.dist.enabled:  # every rank sees the same signal and the same elapsed time
            sig, self.elapsed = distributed.all_reduce([sig, self.elapsed], self.device, self.dist, op="max")
            signals.signum = int(sig) or None
        if signals.received:
            return signals.received
        if self._until_step is not None and self.step >= self._until_step:
            return "until_step"
        if self.watch.patience and self.watch.since_best >= self.watch.patience:
            return "patience"
        return self.budget.spent(self.step, self.elapsed, self.final_eval_reserve())

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
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        amp = self.speed.amp_dtype
        with torch.autocast(self.device.type, dtype=amp or torch.float32, enabled=amp is not None):
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
        finite_loss = self.dist.enabled or math.isfinite(loss_value)
        overflow = False
        if self.scaler.is_enabled():  # fp16: the scaler skips an overflowing update itself and lowers its scale
            finite = finite_loss
            overflow = finite and not math.isfinite(grad_norm)
            self.scaler.step(self.optimizer)
        else:
            finite = finite_loss and math.isfinite(grad_norm)
            if finite:
                self.optimizer.step()
        if not finite:  # a non-finite carried state would poison every following step: start the streams afresh
            self.state = self.model.init_state(self.local_batch, self.device)
        self.scaler.update()
        self.step += 1
        return {"loss": loss_value, "chars": chars, "grad_norm": grad_norm, "lr": lr, "finite": finite,
                "overflow": overflow}

    # -- validation and saving -----------------------------------------------------------------------

    def validate(self) -> float | None:
        """Validation loss in nats per character of the held-out text (None if there is none).

        `val_chars_per_token` keeps the ratio that turns it into nats per token.
        """
        if len(self.val_tokens) < 2:
            return None
        result = evaluate(self.model, self.val_tokens, batch_size=64, seq_len=256, device=self.device,
                          autocast_dtype=self.speed.eval_dtype(self.model, self.val_tokens), shard=(self.dist.rank, self.dist.world),
                          char_counts=self.vocab.char_counts)
        nll, tokens, chars = distributed.all_reduce([result.nll_nats, result.tokens, result.chars], self.device, self.dist)
        self.val_chars_per_token = chars / max(tokens, 1)
        return nll / max(chars, 1)

    def snapshot_name(self) -> str:
        return f"step-{self.step:06d}.pt"

    def save(self, *names: str) -> list[Path]:
        """Write the current state under each name (serialised once), then metrics.jsonl.

        Raises SaveError if the disk is full or the folder unwritable; files already there stay intact.
        """
        if not names:
            return []
        self._check_finite()
        payload = trainstate.payload(self)  # under torchrun every rank joins the gather of the carried state
        if self.out_dir is None:
            return []
        paths = RunFolder(self.out_dir, self.cfg.keep).save(names, payload, self.history)
        if "last.pt" in names:
            self.saved_step = self.step
        for path in paths:
            self.reporter.on_save(path)
        return paths

    def _check_finite(self, val: float | None = None) -> None:
        """Raise Diverged if a weight, or the validation loss `val`, is NaN or infinite: never saved as good."""
        if not all(bool(torch.isfinite(p).all()) for p in self.model.parameters()):
            raise Diverged(f"the weights are no longer finite (NaN or Inf) at step {self.step}")
        if val is not None and not math.isfinite(val):
            raise Diverged(f"the validation loss is {val} at step {self.step}: the weights no longer predict anything")

    def _diverged_message(self, reason: str) -> str:
        kept = (f"last.pt holds step {self.saved_step}, the last state saved" if self.saved_step is not None
                else "nothing was saved in this session (the folder's checkpoints are as they were)")
        return f"training stopped: {reason}; these weights were not saved: {kept}. Try a lower --lr"

    def _eval_and_save(self, snapshot: bool = False) -> float | None:
        """Validate, record it, save last.pt (and best.pt when it improved); the bits/char or None."""
        self.speed.steady()
        t0 = time.perf_counter()
        val = self.validate()
        self._check_finite(val)
        per_token = None if val is None else val * self.val_chars_per_token  # nats per token
        bpc = None if val is None else val / LN2
        record = {"step": self.step, "epoch": round(self.epoch_float, 4), "time": round(self.elapsed, 2),
                  "val_loss": per_token, "val_bpc": bpc, "val_bpt": None if val is None else per_token / LN2,
                  "eval_seconds": round(time.perf_counter() - t0, 3)}
        improved = bpc is not None and (self.best_val_bpc is None or bpc < self.best_val_bpc)
        if improved:
            self.best_val_bpc = bpc
        self.history.append(record)
        self.reporter.on_eval(record)
        warning, _ = self.watch.update(self.step, bpc, self.last_train_bpc())
        if warning:
            self.reporter.on_warning(warning)
        names = (["best.pt"] if improved or bpc is None else []) + ["last.pt"]
        self.save(*names, *([self.snapshot_name()] if snapshot else []))
        return bpc

    def live_sample(self) -> dict:
        """A short sample from the current model, for watching it learn (`sample_every`).

        It draws from its own generator seeded with `seed` and puts the model back in
        training mode, so training takes exactly the same path with or without it.
        """
        c = self.cfg
        self.speed.steady()
        text = sample_text(self.model, self.vocab, c.sample_length, prime=c.sample_prime,
                           temperature=c.sample_temp, seed=c.seed, unk="skip")
        self.model.train()  # (sampling put it in eval mode)
        record = {"step": self.step, "epoch": round(self.epoch_float, 4), "time": round(self.elapsed, 2), "sample": text}
        self.reporter.on_sample(record)
        return record

    # -- the loop ------------------------------------------------------------------------------------

    def _log(self, out: dict) -> None:
        if self.dist.enabled:  # the mean loss over all streams, as one process would see it
            out["loss"] = distributed.all_reduce([out["loss"]], self.device, self.dist)[0] / self.dist.world
        _, seconds, chars, tokens_seen = self.clock.take_window()
        tokens = self.cfg.batch_size * self.cfg.seq_len  # per step
        record = {"step": self.step, "epoch": round(self.epoch_float, 4), "time": round(self.elapsed, 2),
                  "loss": out["loss"], "bpc": out["loss"] * tokens / max(out["chars"], 1) / LN2, "bpt": out["loss"] / LN2,
                  "grad_norm": out["grad_norm"], "lr": out["lr"], "chars_per_sec": chars / max(seconds, 1e-9),
                  "tokens_per_sec": tokens_seen / max(seconds, 1e-9)}
        self.history.append(record)
        self.reporter.on_log(record)

    def _after_step(self, out: dict) -> None:
        """Log, validate and save, and show a live sample, each when its interval comes round."""
        c = self.cfg
        if self.step % c.log_every == 0 or self.step == 1:
            self._log(out)
        snapshot = bool(c.save_every) and self.step % c.save_every == 0
        if self.step % c.eval_every == 0 or snapshot:
            with self.clock.timed():
                if self.step % c.eval_every == 0:
                    self.last_val = self._eval_and_save(snapshot)
                else:
                    self.save("last.pt", self.snapshot_name())
        if c.sample_every and self.step % c.sample_every == 0:
            with self.clock.timed():
                self.live_sample()

    def _loop(self, signals: StopSignals) -> str:
        """Train step after step until the budget is spent or a signal arrives; why it stopped."""
        bad_steps = 0
        while (stopped_by := self._stop_reason(signals)) is None:
            with self.clock.timed(training=True):
                out = self.speed.step(self.train_step)
            self.clock.count(out["chars"], self.cfg.batch_size * self.cfg.seq_len)
            bad_steps = 0 if out["finite"] else bad_steps + 1
            if out["finite"]:
                self.good_step = self.step
            if not out["finite"]:
                self.reporter.on_warning(f"step {self.step}: loss or gradient is not finite; update skipped")
                if bad_steps >= MAX_BAD_STEPS:
                    return "nan"
            self.reporter.on_step(self)
            self._after_step(out)
        return stopped_by

    def _finish(self, stopped_by: str) -> None:
        """The saves that end a run: last.pt always; a validation (and best.pt) if the run has none yet."""
        if stopped_by == "nan":
            # every bad update was skipped, so the weights in memory are those after the last finite one;
            # they are saved only if they still validate to a finite loss
            self._check_finite(self.validate())
            self.save("last.pt")
            self.reporter.on_warning(f"training stopped: {MAX_BAD_STEPS} non-finite steps in a row; last.pt holds "
                                     f"the weights after step {self.good_step}, the last finite update (try a lower --lr)")
        elif stopped_by.startswith("SIG") or stopped_by == "until_step":
            self.save("last.pt")  # first, so a second Ctrl-C during the validation below loses nothing
            if stopped_by.startswith("SIG") and self.best_val_bpc is None and len(self.val_tokens) >= 2:
                self.last_val = self._eval_and_save()  # stopped before the first validation: make best.pt
        elif self.step % self.cfg.eval_every != 0:
            self.last_val = self._eval_and_save()

    def run(self, until_step: int | None = None) -> TrainResult:
        """Train until the budget is spent or a signal arrives; save best.pt and last.pt.

        `until_step` pauses the run at that step (saving last.pt) without changing the budget or
        the learning-rate schedule, so that `Trainer.resume` can carry on from there.
        A failed save (disk full, folder unwritable) stops training: stopped_by "save_error",
        the message in `result.error`, the checkpoints written before it intact.
        CPU threads are set to `threads` for the run and put back after it.
        """
        lock = RunFolder(self.out_dir).lock() if self.out_dir is not None else None  # one writer per folder
        try:
            return self._run_locked(until_step)
        finally:
            if lock is not None:
                lock.release()

    def _run_locked(self, until_step: int | None) -> TrainResult:
        if self.out_dir is not None:  # fail before training, not after an hour of it
            RunFolder(self.out_dir, self.cfg.keep).check_writable(prune=bool(self.cfg.save_every))
        self._until_step = until_step
        self.last_val: float | None = None
        error = None
        self.reporter.on_start(self)
        threads = torch_threads(self.cfg.threads) if self.device.type == "cpu" else nullcontext()
        with StopSignals() as signals, threads:
            try:
                stopped_by = self._loop(signals)
                self._finish(stopped_by)
            except SaveError as e:
                stopped_by, error = "save_error", (
                    f"{e}; training stopped at step {self.step}: once that is fixed, "
                    f"continue with `charrnn train --resume {self.out_dir}`")
            except Diverged as e:
                stopped_by, error = "nan", self._diverged_message(str(e))
            finally:
                distributed.cleanup(self.dist)
        result = TrainResult(
            steps=self.step, epoch=self.epoch_float, seconds=self.elapsed, best_val_bpc=self.best_val_bpc,
            last_val_bpc=self.last_val, stopped_by=stopped_by, out_dir=self.out_dir, history=self.history, error=error,
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
    kind: str = "char",
    max_vocab: int = DEFAULT_MAX_VOCAB,
) -> tuple[Trainer, TrainResult]:
    """Build the vocabulary from `text`, hold out its tail for validation, and train.

    `model_config` holds ModelConfig fields other than vocab_size (cell, layers, hidden, ...).
    `kind` is the token kind: char, word (`max_vocab` ids) or byte (see `tokenkind`).
    Returns the trainer (its `.model` is the trained model) and the result. For a corpus too
    big for memory, use `charrnn.tokens.prepare_corpus` and `train_on_tokens`.
    """
    vocab = vocab_for_text(text, kind, max_vocab)
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
    trainer = new_trainer(vocab, tokens, model_config, train_config, out_dir, reporter, meta)
    return trainer, trainer.run()


def new_trainer(
    vocab: Vocab,
    tokens: np.ndarray,
    model_config: dict | None = None,
    train_config: TrainConfig | None = None,
    out_dir: str | Path | None = None,
    reporter: Reporter | None = None,
    meta: dict | None = None,
) -> Trainer:
    """The trainer `train_on_tokens` runs: model built, nothing written yet."""
    train_config, refit = fit_to_text(train_config or TrainConfig(), len(tokens))
    if refit and reporter is not None:
        reporter.on_warning(refit)
    train_tokens, val_tokens = split_train_val(tokens, train_config.val_fraction, vocab.char_counts)
    try:
        mcfg = ModelConfig(vocab_size=len(vocab), **(model_config or {}))
    except ValueError as e:
        raise UsageError(str(e)) from None
    return Trainer(mcfg, train_config, vocab, train_tokens, val_tokens, out_dir, reporter, meta)
