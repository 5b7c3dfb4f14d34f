"""Step kernels against the fp32 step they stand in for, and how one is chosen."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from charrnn.runtime.cache import TuneCache
from charrnn.generation.settings import Sampling
from charrnn.cli import app
from charrnn.training.checkpoint import load_model
from charrnn.inspect.evaluation import evaluate
from charrnn.model.rnn import CharRNN, ModelConfig
from charrnn.generation.sampling import GumbelNoise, pick, prime_ids_for, prime_model, sample_ids, sample_text
from charrnn.inspect.evaluation import kernel_bits_per_char
from charrnn.model.kernels import KERNELS, choose_kernel, kernels_for, make_kernel

runner = CliRunner()


def make(cell: str = "lstm", V: int = 30, layers: int = 2, hidden: int = 48) -> CharRNN:
    torch.manual_seed(0)
    return CharRNN(ModelConfig(vocab_size=V, cell=cell, layers=layers, hidden=hidden, embed=12)).eval()


def reference_logits(model: CharRNN, tokens: torch.Tensor) -> list[torch.Tensor]:
    """Logits of CharRNN.step (today's exact path) for tokens (T, B), from the zero state."""
    state, out = model.init_state(tokens.shape[1]), []
    with torch.inference_mode():
        for t in tokens:
            logits, state = model.step(t, state)
            out.append(logits)
    return out


@pytest.mark.parametrize("batch", [1, 4])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_each_kernel_against_the_fp32_step(cell, batch):
    model = make(cell)
    tokens = torch.randint(0, 30, (40, batch), generator=torch.Generator().manual_seed(1))
    ref = reference_logits(model, tokens)
    for name in kernels_for(model):
        kernel = make_kernel(model, name, batch)
        got = [kernel.step(t).clone() for t in tokens]
        if name == "fp32":
            assert all(torch.equal(a, b) for a, b in zip(got, ref)), "fp32 must be CharRNN.step bit for bit"
        else:
            worst = max((a - b).abs().max().item() for a, b in zip(got, ref))
            assert 0 < worst < 0.05, (name, worst)


@pytest.mark.parametrize("batch", [1, 3])
def test_bf16_kernel_is_the_bf16_step_bit_for_bit(batch):
    """`--precision bf16` writes what CharRNN.step(dtype=bf16) writes (charrnn serve --precision bf16)."""
    model = make()
    tokens = torch.randint(0, 30, (40, batch), generator=torch.Generator().manual_seed(2))
    state, kernel = model.init_state(batch), make_kernel(model, "bf16", batch)
    with torch.inference_mode():
        for t in tokens:
            ref, state = model.step(t, state, torch.bfloat16)
            assert torch.equal(kernel.step(t), ref)


def test_lstm_has_every_kernel_gru_two():
    assert kernels_for(make("lstm")) == KERNELS
    assert "int8" not in kernels_for(make("lstm", hidden=40))  # int8 needs widths in blocks of 16
    assert kernels_for(make("gru")) == ("fp32", "bf16")
    with pytest.raises(ValueError):
        make_kernel(make("gru"), "int8")


@pytest.mark.parametrize("name", KERNELS)
def test_state_in_state_out_and_reorder(name):
    model = make()
    kernel = make_kernel(model, name, 1)
    for t in (3, 5, 7):
        kernel.step(torch.tensor([t]))
    h, c = kernel.state()
    assert h.shape == c.shape == (2, 1, 48)
    kernel.reorder(torch.tensor([0, 0, 0]))  # one beam becomes three
    h3, c3 = kernel.state()
    assert h3.shape == (2, 3, 48) and torch.equal(c3[:, 2:], c)
    logits = kernel.step(torch.tensor([1, 1, 1]))
    assert torch.equal(logits[0], logits[2])
    other = make_kernel(model, name, 2)
    other.reset((h3[:, :2], c3[:, :2]))  # reset to any batch
    assert torch.equal(other.step(torch.tensor([1, 1])), logits[:2])


@pytest.mark.parametrize("name", KERNELS)
def test_same_seed_same_text_for_each_kernel_at_any_thread_count(name):
    model = make(V=40)
    before = torch.get_num_threads()
    try:
        runs = []
        for threads in (1, 2, 1):
            torch.set_num_threads(threads)
            runs.append(torch.cat(list(sample_ids(model, [1, 2], Sampling(120, temperature=1.0, seed=5), kernel=name))))
        assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], runs[2])
    finally:
        torch.set_num_threads(before)


def today_sample(model: CharRNN, vocab, prime: str, length: int, temperature: float, seed: int) -> str:
    """The sampling loop as it was before step kernels: CharRNN.step, Gumbel noise from one generator."""
    generator = torch.Generator().manual_seed(seed)
    with torch.inference_mode():
        logits, state = prime_model(model, prime_ids_for(vocab, prime))
        noise, out = GumbelNoise(generator, tuple(logits.shape)), []
        for i in range(length):
            ids = pick(logits, temperature, 0, 1.0, noise)
            out.append(vocab.chars[int(ids)])
            if i + 1 < length:
                logits, state = model.step(ids, state)
    return "".join(out)


def test_precision_fp32_output_is_unchanged(tiny_run):
    m = load_model(tiny_run)
    expected = today_sample(m.model, m.vocab, "the ", 300, 1.0, seed=11)
    assert sample_text(m.model, m.vocab, 300, "the ", temperature=1.0, seed=11, kernel="fp32") == expected
    result = runner.invoke(app, ["sample", str(tiny_run), "-n", "300", "--prime", "the ", "--seed", "11",
                                 "--precision", "fp32", "--continuation-only"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout.rstrip("\n") == expected.rstrip("\n")


def test_sample_cli_precision_choices(tiny_run):
    for name in KERNELS:
        result = runner.invoke(app, ["sample", str(tiny_run), "-n", "50", "--seed", "2", "--precision", name])
        assert result.exit_code == 0, result.stderr
        m = load_model(tiny_run)
        assert result.stdout.rstrip("\n") == sample_text(m.model, m.vocab, 50, seed=2, kernel=name).rstrip("\n")
    bad = runner.invoke(app, ["sample", str(tiny_run), "--precision", "fp8"])
    assert bad.exit_code == 2 and "--precision" in bad.stderr


def test_choose_kernel_forced_cached_and_idle(tmp_path):
    model = make()
    cache = TuneCache(tmp_path / "tune.json")
    forced = choose_kernel(model, 1, "int8", threads=1, cache=cache)
    assert (forced.kernel, forced.threads, forced.verdict) == ("int8", 1, None)
    assert choose_kernel(model, 1, "auto", steps=1, cache=cache).verdict is None  # nothing to step: no timing
    first = choose_kernel(model, 1, "auto", threads=1, steps=50, cache=cache, window=0.002)
    assert first.kernel in KERNELS and not first.verdict.cached and set(first.verdict.rates) == set(KERNELS)
    again = choose_kernel(model, 1, "auto", threads=1, steps=50, cache=cache, window=0.002)
    assert again.verdict.cached and again.kernel == first.kernel
    with pytest.raises(Exception, match="precision int8 is not available"):
        choose_kernel(make("gru"), 1, "int8", cache=cache)


def test_kernel_bits_per_char_is_evaluation_through_the_step_path():
    model = make(V=30, hidden=32)
    tokens = np.random.default_rng(0).integers(0, 30, 400)
    exact = evaluate(model, tokens, batch_size=1).bits_per_char
    assert kernel_bits_per_char(model, tokens, "fp32") == pytest.approx(exact, abs=1e-5)
    assert kernel_bits_per_char(model, tokens, "fp32", streams=4) == pytest.approx(
        evaluate(model, tokens, batch_size=4).bits_per_char, abs=1e-5)
    for name in ("bf16", "int8"):
        assert abs(kernel_bits_per_char(model, tokens, name) - exact) < 0.01
