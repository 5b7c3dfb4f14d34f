"""What a checkpoint holds of a training run, and what may change when it carries on.

`payload(trainer)` is everything needed to continue a run bit for bit: the weights, the
optimizer, the counters the schedule is computed from, every random-number generator, the
data cursor and the carried hidden state. `restore(trainer, ckpt)` puts it back (`Trainer.resume`).
The rules for carrying on live here too, in one place:

    FIXED_ON_RESUME     training settings a resumed run cannot change (the data layout and
                        the carried state depend on them)
    MODEL_FIELDS_FREE   model settings a new run started from old weights may change

Anything else may be overridden on resume (the budget, the learning rate, eval_every ...);
a changed budget re-anchors the schedule (`budget.Budget.extend`).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
import torch

from charrnn.training import distributed
from charrnn.training.checkpoint import check_resumable
from charrnn.training.config import TrainConfig, layer
from charrnn.util.errors import UsageError
from charrnn.text.tokens import sample_starts  # sampled, so a 1 GB corpus costs a few MB of reading

FIXED_ON_RESUME = ("batch_size", "seq_len", "val_fraction")
MODEL_FIELDS_FREE = ("dropout",)


def data_fingerprint(train_tokens: np.ndarray, val_tokens: np.ndarray) -> dict:
    """Sizes and a hash of the token arrays, so a resumed run can tell whether its data changed. A big
    array is hashed by evenly spaced blocks (`sample_starts`): starting a run never reads the whole corpus."""
    h = hashlib.blake2b(digest_size=16)
    for part in (train_tokens, val_tokens):
        starts, size = sample_starts(len(part))
        for start in starts:
            h.update(memoryview(np.ascontiguousarray(part[start : start + size])).cast("B"))
    return {"train_chars": len(train_tokens), "val_chars": len(val_tokens), "blake2b": h.hexdigest()}


def resume_config(ckpt: dict, overrides: dict | None) -> TrainConfig:
    """The checkpoint's training settings with `overrides` applied, or a UsageError for a fixed one."""
    check_resumable(ckpt)
    base, overrides = ckpt["train_config"], overrides or {}
    changed = [k for k in FIXED_ON_RESUME if k in overrides and overrides[k] != base.get(k)]
    if changed:
        raise UsageError(f"{', '.join(changed)} cannot change when resuming (the data layout and carried state depend "
                         "on it): start a new run from these weights with init_from instead", *changed, "init_from")
    return TrainConfig.from_dict(layer(base, overrides))  # (a new budget replaces the whole old one)


def payload(t) -> dict:
    """The checkpoint dict of `t`, a `Trainer` (its layout: payload.py)."""
    return {
        "model_config": t.mcfg.to_dict(),
        "vocab": t.vocab.to_dict(),
        "model": t.model.state_dict(),
        "train_config": t.cfg.to_dict(),
        "optimizer": t.optimizer.state_dict(),
        "step": t.step,
        "epoch": t.epoch,
        "metrics": list(t.history),  # every log and evaluation record, in order (metrics.jsonl)
        "best_val_bpc": t.best_val_bpc,
        "meta": dict(t.meta),
        "extra": {
            "cursor": t.batcher.cursor,
            "elapsed": t.elapsed,
            "state": [s.cpu() for s in distributed.gather_streams(t.state, t.dist)],  # (L, B, H), all streams
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "scaler": t.scaler.state_dict(),
            "data": dict(t.data),
            "schedule_anchor": list(t.budget.anchor),
            "average": None if t.average is None else [a.cpu() for a in t.average],
        },
    }


def restore(t, ckpt: dict) -> None:
    """Make `t`, a `Trainer`, continue exactly where `ckpt` stopped (its model config must be the checkpoint's;
    `resume_config` has checked that it is resumable)."""
    extra = ckpt["extra"]
    t.model.load_state_dict(ckpt["model"])
    t.optimizer.load_state_dict(ckpt["optimizer"])
    t.optimizer.param_groups[0]["weight_decay"] = t.cfg.weight_decay  # an override on resume wins
    if extra.get("scaler"):
        t.scaler.load_state_dict(extra["scaler"])
    t.step, t.epoch, t.clock.elapsed = int(ckpt["step"]), int(ckpt["epoch"]), float(extra["elapsed"])
    t.good_step = t.step
    t.best_val_bpc = ckpt.get("best_val_bpc")
    t.history = list(extra.get("history") or ckpt.get("metrics") or [])  # (older files kept both)
    t.batcher.cursor = int(extra["cursor"])
    state = tuple(s[:, t.rows].to(t.device) for s in extra["state"])  # this rank's streams of (L, B, H)
    fresh = t.model.init_state(t.local_batch, t.device)
    if [s.shape for s in state] == [s.shape for s in fresh]:
        t.state = state
    torch.set_rng_state(extra["torch_rng"])
    if torch.cuda.is_available() and extra.get("cuda_rng"):
        for i in range(min(len(extra["cuda_rng"]), torch.cuda.device_count())):
            torch.cuda.set_rng_state(extra["cuda_rng"][i], i)
    _restore_schedule(t, ckpt)
    if extra.get("average"):
        t.average = [a.to(t.device) for a in extra["average"]]
    train_bpc = None
    for r in t.history:  # replay the validations, so the overfitting watch knows the run's past
        train_bpc = r.get("bpc", train_bpc)
        if "val_bpc" in r:
            t.watch.update(r["step"], r["val_bpc"], train_bpc)
    if extra.get("data") and extra["data"] != t.data:
        t.reporter.on_warning("the training text differs from the one this run was trained on "
                              f"({extra['data']['train_chars']:,} -> {t.data['train_chars']:,} train chars, "
                              "or changed content): resuming, but not as an exact continuation")


def _restore_schedule(t, ckpt: dict) -> None:
    """Keep the schedule where it was; if the budget changed, go on from there (`Budget.extend`)."""
    stored = ckpt["train_config"]
    old = replace(t.budget, steps=stored.get("steps"), epochs=stored.get("epochs"), seconds=stored.get("time"),
                  anchor=tuple(ckpt["extra"].get("schedule_anchor") or (0.0, 0.0)))
    same = (old.steps, old.epochs, old.seconds) == (t.budget.steps, t.budget.epochs, t.budget.seconds)
    t.budget = old if same else old.extend(t.step, t.elapsed, t.budget)
