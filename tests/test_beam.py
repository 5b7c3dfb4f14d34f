"""Beam search: golden checks on argmax paths (greedy, brute force), rescoring, options, CLI and pipe."""

import itertools
import json
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from charrnn.generation.sampling import prime_ids_for
from charrnn.generation.beam import beam_search
from charrnn.model.kernels import choose_kernel
from charrnn.training.checkpoint import load_model
from charrnn.cli import app
from charrnn.model.rnn import CharRNN, ModelConfig
from charrnn.generation.sampling import sample_text
from charrnn.text.vocab import Vocab

from .conftest import REPO, env_without_threads

runner = CliRunner()
ABC = Vocab("abc")


def random_model(cell: str, vocab_size: int = 3, seed: int = 0) -> CharRNN:
    """A tiny model with random weights, scaled up so that its predictions are far from uniform."""
    torch.manual_seed(seed)
    model = CharRNN(ModelConfig(vocab_size=vocab_size, cell=cell, layers=2, hidden=16, embed=4))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.8)
    return model.eval()


def rescore(model: CharRNN, vocab: Vocab, prime: str, texts: list[str]) -> torch.Tensor:
    """Each text's total log-probability after `prime`, from one full forward over prime + text
    (the fused nn.LSTM path, not the single-step cell that beam search uses). (N,) nats."""
    start = prime_ids_for(vocab, prime)  # the prime as the model reads it (after a line break)
    ids = torch.tensor([start + vocab.encode(t) for t in texts])  # (N, P + T)
    with torch.no_grad():
        logits, _ = model(ids[:, :-1])  # (N, P + T - 1, V)
    logp = torch.log_softmax(logits.double(), dim=-1).gather(2, ids[:, 1:, None])[..., 0]  # (N, P + T - 1)
    return logp[:, len(start) - 1 :].sum(dim=1)


def exhaustive_best(model, vocab, prime, length, allowed=lambda text: True):
    texts = ["".join(p) for p in itertools.product(vocab.chars, repeat=length) if allowed("".join(p))]
    scores = rescore(model, vocab, prime, texts)
    i = int(scores.argmax())
    return texts[i], float(scores[i])


def _mv(run):
    m = load_model(run)
    return m.model, m.vocab


def has_repeat(text: str, n: int) -> bool:
    grams = [text[i : i + n] for i in range(len(text) - n + 1)]
    return len(grams) != len(set(grams))


# ---- the search itself -------------------------------------------------------------------------


@pytest.mark.parametrize("prime", ["the ", "", "lazy"])
def test_width_1_is_greedy_sampling(tiny_run, prime):
    m = load_model(tiny_run)
    beams = beam_search(m.model, m.vocab, prime, width=1, length=150)
    assert beams[0].text == sample_text(m.model, m.vocab, 150, prime=prime, temperature=0)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_wide_beam_equals_exhaustive_search(cell):
    model = random_model(cell)
    beams = beam_search(model, ABC, "ab", width=81, length=4, top=81)  # 3^4 = 81: nothing is pruned
    text, score = exhaustive_best(model, ABC, "ab", 4)
    assert beams[0].text == text
    assert beams[0].logprob == pytest.approx(score, abs=1e-4)
    assert len({b.text for b in beams}) == 81  # one live beam at the start: no duplicates


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_reported_scores_are_the_models_own_log_probabilities(tiny_run, cell):
    cases = [(*_mv(tiny_run), "the "), (random_model(cell, 3, 1), ABC, "c")]
    for model, vocab, prime in cases:
        beams = beam_search(model, vocab, prime, width=5, length=40, top=5)
        again = rescore(model, vocab, prime, [b.text for b in beams])
        for b, lp in zip(beams, again.tolist()):
            assert b.logprob == pytest.approx(lp, abs=2e-3)
            assert b.bits_per_char == pytest.approx(-lp / len(b.text) / 0.6931471805599453, rel=1e-4)
        assert [b.logprob for b in beams] == sorted((b.logprob for b in beams), reverse=True)


def test_width_5_scores_at_least_greedy(tiny_run):
    m = load_model(tiny_run)
    for model, vocab, prime in [(m.model, m.vocab, "the "), (m.model, m.vocab, "dog"), (random_model("lstm", 3, 2), ABC, "a")]:
        greedy = beam_search(model, vocab, prime, width=1, length=60)[0]
        wide = beam_search(model, vocab, prime, width=5, length=60)[0]
        assert wide.logprob >= greedy.logprob - 1e-4
        assert float(rescore(model, vocab, prime, [wide.text])[0]) >= float(rescore(model, vocab, prime, [greedy.text])[0]) - 1e-3


def test_stop_finishes_beams_at_the_stop_string(tiny_run):
    m = load_model(tiny_run)
    plain = beam_search(m.model, m.vocab, "the ", width=5, length=60)[0].text
    stop = plain[10:13]  # the unstopped best writes it, so some beam must finish on it
    beams = beam_search(m.model, m.vocab, "the ", width=5, length=60, stop=[stop, "\n\n"], top=5)
    assert any(b.finished for b in beams)
    for b in beams:
        if b.finished:  # ends at the first stop string it writes, which is kept
            assert b.text.endswith(stop) and b.text.find(stop) == len(b.text) - len(stop)
        else:
            assert stop not in b.text
    best = beams[0]
    assert best.finished and len(best.text) <= 13  # found without running on to --length
    ranked = beam_search(m.model, m.vocab, "the ", width=5, length=60, stop=[stop], top=5, length_penalty=1.0)
    scores = [b.score(1.0) for b in ranked]
    assert scores == sorted(scores, reverse=True)


def test_no_repeat_forbids_repeated_sequences(tiny_run):
    m = load_model(tiny_run)
    plain = beam_search(m.model, m.vocab, "the ", width=3, length=120, top=3)
    assert any(has_repeat(b.text, 6) for b in plain)  # the model loops over its one sentence
    guarded = beam_search(m.model, m.vocab, "the ", width=3, length=120, top=3, no_repeat=6)
    assert guarded and not any(has_repeat(b.text, 6) for b in guarded)
    # exactness holds under the constraint: brute force over the texts with no repeated pair
    model = random_model("lstm", 3, 3)
    beams = beam_search(model, ABC, "b", width=81, length=4, no_repeat=2)
    text, score = exhaustive_best(model, ABC, "b", 4, allowed=lambda t: not has_repeat(t, 2))
    assert beams[0].text == text and beams[0].logprob == pytest.approx(score, abs=1e-4)


def test_settled_prefix_streams_the_best_text_in_order(tiny_run):
    m = load_model(tiny_run)
    pieces: list[str] = []
    beams = beam_search(m.model, m.vocab, "the ", width=5, length=150, on_settled=pieces.append)
    assert "".join(pieces) == beams[0].text
    assert len(pieces) > 2 and len(pieces[-1]) < len(beams[0].text)  # most of it arrived before the end


# ---- command line --------------------------------------------------------------------------------


def test_beam_cli_stdout_is_exactly_the_best_text(tiny_run):
    result = runner.invoke(app, ["beam", str(tiny_run), "--width", "4", "-n", "80", "--prime", "the "])
    assert result.exit_code == 0, result.stderr
    m = load_model(tiny_run)
    cli_kernel = choose_kernel(m.model, 4, "auto", steps=80).kernel  # what the CLI chose (measured once, cached)
    assert result.stdout == "the " + beam_search(m.model, m.vocab, "the ", width=4, length=80, kernel=cli_kernel)[0].text
    exact = runner.invoke(app, ["beam", str(tiny_run), "-w", "4", "-n", "80", "--prime", "the ", "--precision", "fp32",
                                "--continuation-only"])
    assert exact.stdout == beam_search(m.model, m.vocab, "the ", width=4, length=80)[0].text


@pytest.mark.parametrize("kernel", ["bf16", "bf16-packed", "int8"])
def test_reduced_precision_search_scores_stay_close_to_fp32(tiny_run, kernel):
    m = load_model(tiny_run)
    for a, b in zip(beam_search(m.model, m.vocab, "the ", width=5, length=60, top=5),
                    beam_search(m.model, m.vocab, "the ", width=5, length=60, top=5, kernel=kernel)):
        assert abs(a.logprob - b.logprob) < 0.05 * abs(a.logprob) + 0.5  # same neighbourhood, not bit-equal


def test_beam_cli_precision(tiny_run):
    exact = runner.invoke(app, ["beam", str(tiny_run), "-w", "3", "-n", "40", "--precision", "fp32", "--json"])
    low = runner.invoke(app, ["beam", str(tiny_run), "-w", "3", "-n", "40", "--precision", "int8", "--json"])
    assert json.loads(exact.stdout)["precision"] == "fp32" and json.loads(low.stdout)["precision"] == "int8"
    bad = runner.invoke(app, ["beam", str(tiny_run), "--precision", "fp8"])
    assert bad.exit_code == 2 and "--precision" in bad.stderr


def test_beam_cli_json_and_top(tiny_run):
    result = runner.invoke(app, ["beam", str(tiny_run), "-w", "4", "-n", "50", "--top", "3", "--json"])
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    m = load_model(tiny_run)
    expected = beam_search(m.model, m.vocab, width=4, length=50, top=3,
                           kernel=choose_kernel(m.model, 4, "auto", steps=50).kernel)
    assert [b["text"] for b in report["beams"]] == [b.text for b in expected]
    assert {"logprob", "bits_per_char", "finished"} <= set(report["beams"][0])
    text_only = runner.invoke(app, ["beam", str(tiny_run), "-w", "4", "-n", "50", "--top", "3"])
    assert text_only.stdout == report["beams"][0]["text"].rstrip("\n") + "\n"  # the ranking after it starts a line
    assert text_only.stderr.count("bits/char") == 3
    ranks = [line for line in text_only.output.splitlines() if " nats " in line]  # stdout and stderr as 2>&1 mixes them
    assert [line[:3] for line in ranks] == ["#1 ", "#2 ", "#3 "]  # each on its own line, not glued to the text


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["--width", "0"], 2, "--width"),
        (["--top", "9"], 2, "--top"),
        (["--prime", "QZ@"], 1, "not in the model's vocabulary"),
        (["--length", "-1"], 2, "--length"),
    ],
)
def test_beam_cli_errors(tiny_run, args, code, message):
    result = runner.invoke(app, ["beam", str(tiny_run), *args])
    assert result.exit_code == code
    assert message in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_beam_cli_missing_checkpoint(in_tmp):
    result = runner.invoke(app, ["beam"])
    assert result.exit_code == 1 and "no trained model found" in result.stderr


def test_beam_pipe_into_head_ends_quietly(tiny_run):
    cmd = f'"{sys.executable}" -m charrnn beam "{tiny_run}" -w 3 -n 20000 | head -c 10'
    proc = subprocess.run(["bash", "-c", cmd], capture_output=True, env=env_without_threads(), timeout=120)
    assert len(proc.stdout) == 10
    assert b"Traceback" not in proc.stderr and b"Error" not in proc.stderr, proc.stderr.decode()


def test_beam_speed_bench_runs_at_tiny_size(tiny_run):
    import importlib.util

    spec = importlib.util.spec_from_file_location("beam_speed", REPO / "bench" / "beam_speed.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.measure(*_mv(tiny_run), widths=(1, 3), length=30, repeats=1)
    assert [r["method"] for r in rows] == ["greedy sample", "beam", "beam"]
    assert all(r["chars_per_sec"] > 0 for r in rows)
