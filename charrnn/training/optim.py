"""The optimizer and one update: AdamW, global-norm clipping, mixed precision, skipped bad steps.

    loss --backward--> gradients --unscale--> clip to `clip` --> AdamW step
                                                   |
                                                   `-- norm not finite: no step (the weights stay)

With fp16 a `GradScaler` multiplies the loss before backward so small gradients survive,
and an overflow (an infinite gradient norm) is a normal event: the scaler skips that update
itself and lowers its scale. Only a non-finite *loss* is a bad step then. In fp32 and bf16
(no scaler) a non-finite loss or gradient norm skips the update.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from charrnn.model.rnn import CharRNN


def decays(name: str, shape) -> bool:
    """Whether AdamW decays this parameter: the weight matrices do; biases and the embedding do not."""
    return len(shape) >= 2 and "embedding" not in name


def make_optimizer(model: CharRNN, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """AdamW in two groups: the parameters that decay (`decays`), then the rest."""
    params = dict(model.named_parameters())
    groups = [{"params": [p for n, p in params.items() if decays(n, p.shape)], "weight_decay": weight_decay},
              {"params": [p for n, p in params.items() if not decays(n, p.shape)], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.99))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


class Update(NamedTuple):
    loss: float  # the loss that was back-propagated (nats per token)
    grad_norm: float  # the global gradient norm before clipping
    finite: bool  # the update was taken (or, with fp16, skipped by the scaler as a normal overflow)
    overflow: bool  # fp16 only: the scaler skipped this update and lowered its scale


def update(loss: torch.Tensor, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
           scaler: torch.amp.GradScaler, clip: float, trust_loss: bool = False) -> Update:
    """Back-propagate `loss`, clip the global gradient norm to `clip` (0: no clipping) and step. `trust_loss`:
    treat the loss as finite (under DDP every rank must decide alike, on the all-reduced gradient norm)."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)
    grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip if clip > 0 else float("inf")))
    loss_value = float(loss.detach())
    finite = trust_loss or math.isfinite(loss_value)
    overflow = False
    if scaler.is_enabled():  # fp16: the scaler skips an overflowing update itself and lowers its scale
        overflow = finite and not math.isfinite(grad_norm)
        scaler.step(optimizer)
    else:
        finite = finite and math.isfinite(grad_norm)
        if finite:
            optimizer.step()
    scaler.update()
    return Update(loss_value, grad_norm, finite, overflow)
