"""Memory bounded by the work's size (issue 33, items 1, 6, 7 and 10): a prompt is read once, at batch 1, in blocks
that hold no logits but the last position's; a line of millions of characters is read the same way in chat; and
what a batch of streams or a beam search needs is estimated in one place (`runtime.memory`) before it starts."""

from __future__ import annotations

import tracemalloc

import pytest
import torch
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.generation.beam import BeamSearch, beam_search
from charrnn.generation.chat import Conversation
from charrnn.generation.sampling import check_batch_memory, prime_model, read_ids, text_shape
from charrnn.generation.settings import Sampling
from charrnn.model.rnn import CharRNN, ModelConfig
from charrnn.runtime import memory
from charrnn.training.checkpoint import load_model
from charrnn.util.errors import UsageError

runner = CliRunner()


def spy_on_reading(monkeypatch, model: CharRNN) -> dict[str, list]:
    """Record the input shape of every nn.LSTM call and the output shape of every output-layer call."""
    seen: dict[str, list] = {"rnn": [], "head": []}
    rnn, head = model.rnn.forward, model.head.forward
    monkeypatch.setattr(model.rnn, "forward", lambda x, hx=None: seen["rnn"].append(tuple(x.shape)) or rnn(x, hx))
    monkeypatch.setattr(model.head, "forward", lambda x: (out := head(x), seen["head"].append(tuple(out.shape)))[0])
    return seen


def word_sized_model() -> CharRNN:
    """The issue's word model's vocabulary (8,140), at a tiny width: logits per prompt position are what cost."""
    torch.manual_seed(0)
    return CharRNN(ModelConfig(vocab_size=8140, hidden=16, embed=8, layers=2)).eval()


def test_a_prompt_is_read_once_at_batch_1_with_logits_for_its_last_position_only(monkeypatch):
    model = word_sized_model()
    ids = torch.randint(0, 8140, (10_000,)).tolist()
    with torch.inference_mode():
        whole, (h, c) = model(torch.tensor([ids]))  # (1, P, V): the old way, at batch 1
    seen = spy_on_reading(monkeypatch, model)
    logits, state = prime_model(model, ids, batch=16)  # -N 16 (or 16 choices of a request)
    assert seen["head"] == [(1, 8140)]  # one row of logits: never (16, 10,000, 8,140), 5.2 GB
    assert all(shape[0] == 1 and shape[1] <= memory.MAX_READ_BLOCK for shape in seen["rnn"])
    assert sum(shape[1] for shape in seen["rnn"]) == len(ids)  # every token read exactly once
    assert logits.shape == (16, 8140) and state[0].shape == (2, 16, 16) and state[1].shape == (2, 16, 16)
    assert torch.equal(logits[0], logits[15]) and torch.equal(state[1][:, 0], state[1][:, 15])  # one state, copied
    torch.testing.assert_close(logits[:1], whole[:, -1], rtol=1e-4, atol=1e-4)  # the same reading, block by block
    torch.testing.assert_close(state[0][:, :1], h, rtol=1e-4, atol=1e-4)


def test_blocks_carry_the_state_and_stay_under_the_budget(monkeypatch):
    """However small the budget, the blocks read agree with one call (the state is carried across them)."""
    model = word_sized_model()
    ids = torch.randint(0, 8140, (500,)).tolist()
    full, _ = read_ids(model, ids)
    monkeypatch.setattr(memory, "READ_BUDGET", 10 * (8 + 2 * 6 * 16))  # 10 tokens a block
    seen = spy_on_reading(monkeypatch, model)
    blocked, _ = read_ids(model, ids)
    assert len(seen["rnn"]) == 50 and max(s[1] for s in seen["rnn"]) == 10
    torch.testing.assert_close(blocked, full, rtol=1e-4, atol=1e-4)


def test_short_prompts_still_step_one_token_at_a_time(monkeypatch, tiny_run):
    """The usual case (a name, a line) keeps its fast path: no nn.LSTM call at all."""
    m = load_model(tiny_run)
    seen = spy_on_reading(monkeypatch, m.model)
    logits, _ = prime_model(m.model, m.vocab.encode("\nthe quick"), batch=3)
    assert seen["rnn"] == [] and logits.shape == (3, len(m.vocab))


def test_a_chat_line_of_millions_of_characters_is_read_in_blocks(monkeypatch, tiny_run):
    m = load_model(tiny_run)
    chat = Conversation(m.model, m.vocab)
    seen = spy_on_reading(monkeypatch, m.model)
    assert chat.read("the quick brown fox " * 100_000) == []  # 2 M characters: oneDNN refuses one call that long
    assert len(seen["rnn"]) == 2_000_000 // memory.MAX_READ_BLOCK + 1 and seen["head"] == [(1, len(m.vocab))]
    assert chat.logits.shape == (1, len(m.vocab)) and torch.isfinite(chat.logits).all()
    assert len("".join(chat.reply())) > 0  # and the conversation goes on


def test_sample_and_beam_read_a_long_prime_file(tmp_path, tiny_run):
    """The CLI class of sample and beam: a prime file far longer than STEP_PRIME, several samples, no traceback."""
    prime = tmp_path / "prime.txt"
    prime.write_text("the lazy dog. " * 3000)  # 42,000 characters
    for argv in (["sample", "-N", "4"], ["beam", "--width", "4"]):
        result = runner.invoke(app, [argv[0], str(tiny_run), "--prime-file", str(prime), "-n", "20", *argv[1:],
                                     "--threads", "1", "--precision", "fp32"])
        assert result.exit_code == 0, result.stderr
        assert "Traceback" not in result.stderr and len(result.stdout) > 20


# ---- one estimate before allocation --------------------------------------------------------------------


def test_a_million_beams_over_500_tokens_is_refused_before_it_starts(tiny_run):
    """beam --width 1000000 -n 500 ran for over ten minutes: refused in one line, naming the flags."""
    m = load_model(tiny_run)
    with pytest.raises(UsageError, match="beam-steps") as e:
        check_batch_memory(m.model, Sampling(width=10**6, length=500), vocab=m.vocab)
    assert e.value.settings == ("width", "length")
    with pytest.raises(UsageError, match="beam-steps"):
        BeamSearch(m.vocab, Sampling(width=10**6, length=500))  # the library refuses it too
    result = runner.invoke(app, ["beam", str(tiny_run), "--width", "1000000", "-n", "500", "--threads", "1"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("error: a beam search of --width 1,000,000 over 500 tokens")
    assert result.stderr.rstrip().endswith("lower --width or --length")


def test_chat_beam_and_the_servers_width_still_pass(tiny_run):
    m = load_model(tiny_run)
    check_batch_memory(m.model, Sampling(width=32, length=10_000), vocab=m.vocab)  # the server's caps
    check_batch_memory(m.model, Sampling(width=5, length=500, stop=("\n\n",)), vocab=m.vocab)  # chat --beam 5


def test_the_search_estimate_counts_scores_top_k_and_texts():
    """Per beam: its kernel row, SEARCH_PER_TOKEN bytes per vocabulary entry, and its text (more for wide characters)."""
    m = ModelConfig(vocab_size=65, hidden=64, embed=16, layers=1)
    beam = memory.search_bytes(m, 1, 0)
    assert beam >= memory.kernel_bytes(m, 1) + 34 * 65  # scores, masks and the top-k's (value, index) pairs
    assert memory.search_bytes(m, 10**6, 0) == 10**6 * beam  # linear in width
    assert memory.search_bytes(m, 1, 500) - beam == memory.TEXT_PER_CHAR * 500  # the text every beam keeps
    assert memory.search_bytes(m, 1, 500, chars_per_token=5, char_bytes=2) - beam == memory.TEXT_PER_CHAR * 5000


def test_what_a_search_keeps_in_python_stays_inside_its_estimate(tiny_run):
    """tracemalloc sees every Python object a real search makes (texts, lists, indices): under the estimate's share."""
    m = load_model(tiny_run)
    width, length = 1000, 40
    tracemalloc.start()
    beam_search(m.model, m.vocab, "the ", Sampling(width=width, length=length))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    chars, char_bytes = text_shape(m.vocab)
    assert peak <= width * (memory.BEAM_OBJECTS + memory.TEXT_PER_CHAR * char_bytes * chars * length)


def test_timing_every_kernel_at_a_huge_batch_is_counted(tiny_run, monkeypatch, tmp_path):
    """precision auto times each step kernel side by side at the batch: counted, and refused with its own words."""
    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path))  # nothing timed here yet
    m = load_model(tiny_run)
    row = memory.kernel_bytes(m.model.config, 1)
    need = memory.search_bytes(m.model.config, 100_000, 0, *text_shape(m.vocab))
    monkeypatch.setattr(memory, "available_memory", lambda: need + 1)  # the search fits, timing 4 kernels does not
    settings = Sampling(width=100_000, length=10)
    check_batch_memory(m.model, settings, keep=False, vocab=m.vocab)  # fp32: nothing timed
    with pytest.raises(UsageError, match="timing every step kernel at width 100,000") as e:
        check_batch_memory(m.model, settings, keep=False, vocab=m.vocab, precision="auto")
    assert "precision" in e.value.settings and 4 * 100_000 * row > need


def test_sampling_estimate_counts_kept_text_and_the_draw():
    m = ModelConfig(vocab_size=8140, hidden=128, embed=32, layers=2)
    row = memory.sampling_bytes(m, 1000, 0) // 1000
    assert row >= memory.kernel_bytes(m, 1) + memory.DRAW_PER_TOKEN * 8140
    assert memory.sampling_bytes(m, 1000, 500) - memory.sampling_bytes(m, 1000, 0) == 1000 * 500 * 8


def test_the_training_estimate_lives_in_runtime_memory():
    """sizing.check_model_fits asks runtime.memory: one home for every estimate."""
    m = ModelConfig(vocab_size=65, hidden=256, embed=64, layers=2)
    per_char = 64 + 2 * 6 * 256 + 3 * 65
    assert memory.training_bytes(m, 32, 64) == 16 * m.num_params() + 4 * 32 * 64 * per_char
    assert memory.logits_block(6000, 64, 256) == 4_000_000 // (64 * 6000)  # evaluation's blocks


def test_the_validation_precision_probe_holds_no_more_logits_than_the_budget(monkeypatch, tmp_path):
    """Item 7: the probe that picks validation's precision times one block of the layout validation reads, its
    logits inside LOGITS_BUDGET (a 1M-word vocabulary took 17 GB here, in a run that then needed 2 GB)."""
    import numpy as np

    from charrnn.runtime.cache import TuneCache
    from charrnn.training.speed import eval_precision

    model = word_sized_model()
    seen = spy_on_reading(monkeypatch, model)
    monkeypatch.setattr(memory, "LOGITS_BUDGET", 8140 * 20)  # room for 20 positions' logits: fewer than one block
    monkeypatch.setattr("charrnn.training.speed.LOGITS_BUDGET", 8140 * 20)
    tokens = np.random.default_rng(0).integers(0, 8140, 50_000)
    verdict = eval_precision(model, tokens, cache=TuneCache(tmp_path / "tune.json"))
    assert verdict.choice in ("fp32", "bf16") and not verdict.cached and seen["head"]
    assert all(rows * cols * vocab <= 8140 * 20 for rows, cols, vocab in seen["head"])
