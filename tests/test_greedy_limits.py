"""Tiny top_p or temperature (issue 33, item 8): their limit is the greedy choice, never token 0 forever.

`--top-p 1e-50` rounded to 0 in float32 and masked every candidate; `--temp 1e-46` made l / T infinite.
The library's `draw` (which the server calls too) and the CLI are checked."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.generation.sampling import GumbelNoise, draw, filter_logits, pick, sample_text
from charrnn.training.checkpoint import load_model

runner = CliRunner()


def noisy_logits() -> tuple[torch.Tensor, torch.Tensor]:
    """(B, V) logits whose best token is never 0, and a step of Gumbel noise for them."""
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(6, 50, generator=g) * 3
    logits[:, 0] = logits.min() - 1  # token 0 (a line break, a NUL byte) is the least likely: the old failure's pick
    noise = GumbelNoise(g, tuple(logits.shape)).next()
    return logits, noise


@pytest.mark.parametrize("temperature, top_k, top_p", [
    (1.0, 0, 1e-50), (1.0, 0, 1e-300), (0.8, 5, 1e-50), (1e-46, 5, 1.0), (1e-46, 0, 1.0), (1e-300, 0, 0.9),
    (5e-324, 3, 1e-300), (1e-31, 5, 0.5),
])
def test_the_limits_draw_the_greedy_choice(temperature, top_k, top_p):
    logits, noise = noisy_logits()
    assert torch.equal(draw(logits, temperature, top_k, top_p, noise), logits.argmax(dim=-1))


def test_a_tiny_top_p_keeps_the_most_likely_token_only():
    logits, _ = noisy_logits()
    kept = torch.isfinite(filter_logits(logits, 1.0, 0, 1e-300))  # (B, V)
    assert kept.sum(dim=-1).tolist() == [1] * 6 and torch.equal(kept.int().argmax(dim=-1), logits.argmax(dim=-1))


def test_ordinary_settings_still_draw():
    """The greedy limit is for the limits only: at T 0.8 / top_p 0.9 the draws still vary."""
    logits = torch.zeros(2000, 5)
    picks = pick(logits, 0.8, 0, 0.9, GumbelNoise(torch.Generator().manual_seed(0), (2000, 5)))
    assert len(set(picks.tolist())) == 5


def test_sampling_at_the_limits_writes_the_greedy_text(parrot_run):
    m = load_model(parrot_run)
    greedy = sample_text(m.model, m.vocab, 80, "the ", temperature=0, seed=1)
    assert greedy.startswith("quick brown fox")  # it knows the text: greedy is not token 0 repeated
    for settings in (dict(top_p=1e-50), dict(temperature=1e-46, top_k=5), dict(top_p=1e-300, temperature=0.5)):
        assert sample_text(m.model, m.vocab, 80, "the ", seed=1, **settings) == greedy, settings


def test_the_cli_at_the_limits_prints_the_greedy_text(parrot_run):
    def sample(*args: str) -> str:
        result = runner.invoke(app, ["sample", str(parrot_run), "--prime", "the ", "-n", "60", "--seed", "4", *args])
        assert result.exit_code == 0 and "Traceback" not in result.stderr, result.stderr
        return result.stdout

    greedy = sample("--temp", "0")
    assert "quick brown" in greedy
    assert sample("--top-p", "1e-50") == greedy
    assert sample("--temp", "1e-46", "--top-k", "5") == greedy
