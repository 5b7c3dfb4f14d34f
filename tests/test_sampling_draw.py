"""The draw in `pick` (Gumbel-max with noise drawn in blocks) samples the softmax it should."""

from __future__ import annotations

import pytest
import torch

from charrnn.model.rnn import CharRNN, ModelConfig
from charrnn.generation.settings import Sampling
from charrnn.generation.sampling import GumbelNoise, pick, sample_ids


def draws(logits: torch.Tensor, n: int, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    batch = logits.expand(n, -1)  # (n, V): n independent draws in one call
    return pick(batch, temperature, top_k, top_p, GumbelNoise(g, tuple(batch.shape)))


@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.0])
def test_draw_frequencies_match_the_tempered_softmax(temperature):
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0, 0.5]])
    n = 40_000
    freq = torch.bincount(draws(logits, n, temperature), minlength=5).float() / n
    expected = torch.softmax(logits[0] / temperature, dim=-1)
    assert torch.allclose(freq, expected, atol=0.01)  # ~4 standard errors at n = 40k


def test_top_k_and_top_p_draw_only_inside_the_kept_set():
    logits = torch.tensor([[3.0, 2.9, 0.0, -1.0, -2.0]])
    assert set(draws(logits, 5_000, top_k=2).tolist()) == {0, 1}
    assert set(draws(logits, 5_000, top_p=0.6).tolist()) == {0, 1}  # p(0) ~ 0.51 < 0.6: two kept


def test_noise_continues_across_blocks_and_repeats_for_a_seed():
    def stream(block: int) -> torch.Tensor:
        noise = GumbelNoise(torch.Generator().manual_seed(3), (2, 7), block=block)
        return torch.stack([noise.next() for _ in range(10)])  # (10, 2, 7)

    a, b = stream(4), stream(4)
    assert torch.equal(a, b)
    assert torch.isfinite(a).all()
    assert not torch.equal(a[0], a[4])  # a new block is new noise


def test_a_long_sample_is_identical_on_the_fast_and_reference_paths():
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=30, layers=2, hidden=32, embed=8))
    settings = Sampling(600, temperature=1.0, top_k=10, seed=11, n=2)
    fast = torch.stack(list(sample_ids(model, [1, 2], settings, fast=True)))  # (600, 2): > 2 noise blocks
    slow = torch.stack(list(sample_ids(model, [1, 2], settings, fast=False)))
    assert torch.equal(fast, slow)


def test_a_shorter_sample_is_a_prefix_of_a_longer_one_with_the_same_seed():
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=30, layers=1, hidden=16, embed=8))
    short = torch.cat(list(sample_ids(model, [1], Sampling(100, temperature=0.9, seed=4))))
    long = torch.cat(list(sample_ids(model, [1], Sampling(700, temperature=0.9, seed=4))))
    assert torch.equal(long[:100], short)
