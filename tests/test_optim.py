"""One optimizer update (charrnn.training.optim): decay groups, clipping, and skipped bad steps."""

import math

import pytest
import torch

from charrnn.model.config import ModelConfig
from charrnn.model.rnn import CharRNN
from charrnn.training.optim import make_optimizer, set_lr, update


@pytest.fixture
def model():
    torch.manual_seed(0)
    return CharRNN(ModelConfig(vocab_size=11, layers=1, hidden=8, embed=4))


def loss_of(model: CharRNN, scale: float = 1.0) -> torch.Tensor:
    x = torch.randint(0, 11, (2, 5))
    logits, _ = model(x)
    return logits.float().pow(2).mean() * scale


def weights(model: CharRNN) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_weight_decay_only_on_matrices_not_biases_or_embedding(model):
    opt = make_optimizer(model, lr=1e-3, weight_decay=0.1)
    decayed, plain = opt.param_groups
    names = {id(p): n for n, p in model.named_parameters()}
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert all(p.dim() >= 2 and "embedding" not in names[id(p)] for p in decayed["params"])
    assert {names[id(p)] for p in plain["params"]} >= {"embedding.weight", "head.bias"}
    set_lr(opt, 0.5)
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.5]


def test_a_finite_update_reports_the_norm_before_clipping_and_moves_the_weights(model):
    opt = make_optimizer(model, lr=1e-2, weight_decay=0.0)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    before = weights(model)
    done = update(loss_of(model, 1000.0), model, opt, scaler, clip=0.5)
    assert done.finite and not done.overflow
    assert done.grad_norm > 0.5  # the norm as it was, not the clipped 0.5
    total = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in model.parameters()))
    assert total == pytest.approx(0.5, rel=1e-4)  # what the step used was clipped
    assert any(not torch.equal(a, b) for a, b in zip(before, weights(model)))


def test_a_non_finite_loss_leaves_the_weights_as_they_were(model):
    opt = make_optimizer(model, lr=1e-2, weight_decay=0.1)
    scaler = torch.amp.GradScaler("cuda", enabled=False)
    before = weights(model)
    done = update(loss_of(model) * float("nan"), model, opt, scaler, clip=1.0)
    assert not done.finite and math.isnan(done.loss)
    assert all(torch.equal(a, b) for a, b in zip(before, weights(model)))
    # trusted (as under DDP, where ranks decide on the shared gradient norm): the NaN norm still skips it
    done = update(loss_of(model) * float("nan"), model, opt, scaler, clip=1.0, trust_loss=True)
    assert not done.finite
    assert all(torch.equal(a, b) for a, b in zip(before, weights(model)))
