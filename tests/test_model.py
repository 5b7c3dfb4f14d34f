import math

import pytest
import torch
import torch.nn.functional as F

from charrnn.model.rnn import CharRNN, ModelConfig, detach_state
from charrnn.generation.settings import Sampling
from charrnn.generation.sampling import sample_ids, sample_text
from charrnn import TrainConfig, train_on_text
from charrnn.text.vocab import Vocab

from tests.conftest import TINY_TEXT

CELLS = ["lstm", "gru", "rnn"]


def make(cell="lstm", V=20, **kw):
    torch.manual_seed(0)
    return CharRNN(ModelConfig(vocab_size=V, cell=cell, layers=2, hidden=32, embed=8, **kw))


@pytest.mark.parametrize("cell", CELLS)
def test_loss_at_init_is_ln_vocab(cell):
    V = 65
    model = make(cell, V=V)
    x = torch.randint(0, V, (8, 64))
    logits, _ = model(x)
    loss = F.cross_entropy(logits.reshape(-1, V), x.reshape(-1))
    assert abs(loss.item() - math.log(V)) < 0.1


@pytest.mark.parametrize("cell", CELLS)
def test_chunked_tbptt_forward_equals_full_forward(cell):
    model = make(cell).eval()
    x = torch.randint(0, 20, (3, 40))
    full, _ = model(x)
    state, chunks = None, []
    for t0 in range(0, 40, 7):
        out, state = model(x[:, t0 : t0 + 7], state)
        state = detach_state(state)
        chunks.append(out)
    assert torch.allclose(torch.cat(chunks, 1), full, atol=1e-6)


@pytest.mark.parametrize("cell", CELLS)
def test_single_step_path_equals_full_forward(cell):
    model = make(cell).eval()
    x = torch.randint(0, 20, (3, 25))
    with torch.no_grad():
        full, _ = model(x)
        state, outs = model.init_state(3), []
        for t in range(25):
            logits, state = model.step(x[:, t], state)
            outs.append(logits)
    assert torch.allclose(torch.stack(outs, 1), full, atol=1e-5)


@pytest.mark.parametrize("cell", CELLS)
def test_fast_sampling_matches_reference_path(cell):
    model = make(cell)
    fast = torch.cat(list(sample_ids(model, [1, 2, 3], Sampling(200, temperature=0.9, seed=5), fast=True)))
    slow = torch.cat(list(sample_ids(model, [1, 2, 3], Sampling(200, temperature=0.9, seed=5), fast=False)))
    assert torch.equal(fast, slow)


def test_training_steps_with_clipped_gradients_and_logs_the_norm_before_clipping():
    from charrnn.model.rnn import ModelConfig as MC
    from charrnn.training.trainer import Trainer

    vocab = Vocab.from_text(TINY_TEXT)
    ids = vocab.encode_array(TINY_TEXT)
    cfg = TrainConfig(batch_size=4, seq_len=16, lr=1.0, clip=0.01, threads=1, precision="fp32")
    trainer = Trainer(MC(vocab_size=len(vocab), hidden=16, embed=8), cfg, vocab, ids, ids[:100])
    seen = []
    step = trainer.optimizer.step
    trainer.optimizer.step = lambda *a, **k: (seen.append(float(torch.sqrt(sum(p.grad.pow(2).sum() for p in trainer.model.parameters())))), step(*a, **k))
    out = trainer.train_step()
    assert out["grad_norm"] > 0.01  # what the log shows: the norm before clipping
    assert seen and seen[0] <= 0.01 * (1 + 1e-4)  # what the optimizer stepped with


def test_step_follows_weight_changes_made_in_eval_mode():
    """The step path caches a layout of the weights; it must never step with stale ones."""
    a, b = make("lstm", V=12).eval(), make("lstm", V=12).eval()
    tok = torch.tensor([3])

    def step_logits(m):
        return m.step(tok, m.init_state(1))[0]

    def full_logits(m):
        return m(tok[:, None])[0][:, 0]

    step_logits(a)  # fills the cache
    a.load_state_dict(b.state_dict())
    assert torch.allclose(step_logits(a), full_logits(b), atol=1e-5)
    with torch.no_grad():
        a.head.bias.add_(1.0)  # an in-place edit, still in eval mode
    assert torch.allclose(step_logits(a), full_logits(a), atol=1e-5)
    a.double().float()  # new storage
    assert torch.allclose(step_logits(a), full_logits(a), atol=1e-5)


def test_overfits_a_repeated_text_and_greedy_reproduces_it():
    text = "hello world, this is charrnn. " * 30
    cfg = TrainConfig(steps=150, batch_size=4, seq_len=32, lr=1e-2, eval_every=1000, val_fraction=0.0, threads=1, precision="fp32",
                      activation_reg=0.0, temporal_reg=0.0)  # learning by heart: no regularizer
    trainer, result = train_on_text(text, {"hidden": 64, "embed": 16, "layers": 1}, cfg)
    final_loss = [r for r in trainer.history if "loss" in r][-1]["loss"]
    assert final_loss < 0.05, final_loss
    out = sample_text(trainer.model, trainer.vocab, 60, prime="hello ", temperature=0)
    assert out == ("world, this is charrnn. hello world, this is charrnn. hello wo")[:60]


def test_seeded_sampling_is_deterministic(tiny_run):
    from charrnn.training.checkpoint import load_model

    m = load_model(tiny_run)
    a = sample_text(m.model, m.vocab, 100, temperature=1.0, seed=3)
    b = sample_text(m.model, m.vocab, 100, temperature=1.0, seed=3)
    c = sample_text(m.model, m.vocab, 100, temperature=1.0, seed=4)
    assert a == b and a != c


def test_top_k_one_is_greedy(tiny_run):
    from charrnn.training.checkpoint import load_model

    m = load_model(tiny_run)
    greedy = sample_text(m.model, m.vocab, 50, temperature=0)
    assert sample_text(m.model, m.vocab, 50, temperature=1.5, top_k=1, seed=1) == greedy
    assert sample_text(m.model, m.vocab, 50, temperature=1.0, top_p=1e-6, seed=1) == greedy


def test_a_prime_is_read_as_if_it_starts_a_line():
    """Training carries state, so a cold zero state is unfamiliar: a line break is read first."""
    from charrnn.generation.sampling import prime_ids_for

    v = Vocab.from_text("ab:\nROMEO")
    assert prime_ids_for(v, "ROMEO:") == v.encode("\nROMEO:")
    assert prime_ids_for(v, "\nROMEO:") == v.encode("\nROMEO:")  # not doubled
    assert prime_ids_for(v, "") == v.encode("\n")
    no_newline = Vocab.from_text("abc")
    assert prime_ids_for(no_newline, "b") == no_newline.encode("ab")


@pytest.mark.parametrize("cell", CELLS)
def test_bf16_step_stays_close_to_fp32(cell):
    model = make(cell, V=30).eval()
    x = torch.randint(0, 30, (5, 20))
    with torch.no_grad():
        exact, low = model.init_state(5), model.init_state(5)
        for t in range(20):
            a, exact = model.step(x[:, t], exact)
            b, low = model.step(x[:, t], low, dtype=torch.bfloat16)
            assert b.dtype == torch.float32 and low[0].dtype == torch.float32
            assert (a - b).abs().max() < 0.05  # bf16 keeps ~3 significant digits


def test_more_threads_only_for_a_clear_gain():
    from charrnn.runtime.timing import SAMPLE_THREAD_MARGIN, thread_verdict

    assert thread_verdict({1: 1000.0, 2: 1500.0}, SAMPLE_THREAD_MARGIN) == 2
    assert thread_verdict({1: 1000.0, 2: 1100.0}, SAMPLE_THREAD_MARGIN) == 1  # 10%: not worth a core that may be busy
    assert thread_verdict({1: 1000.0, 2: 300.0}, SAMPLE_THREAD_MARGIN) == 1  # the other core is busy
    assert thread_verdict({1: 1000.0}, SAMPLE_THREAD_MARGIN) == 1


def test_sampling_is_the_same_with_one_or_two_threads():
    from charrnn.model.kernels import choose_kernel

    model = make("lstm", V=40)
    before = torch.get_num_threads()
    try:
        runs = []
        for n in (1, 2):
            torch.set_num_threads(n)
            runs.append(torch.cat(list(sample_ids(model, [1, 2], Sampling(150, temperature=1.0, seed=3)))))
        assert torch.equal(*runs)
        torch.set_num_threads(1)
        choose_kernel(model, 1, "fp32", steps=1000, window=0.002)
        assert torch.get_num_threads() == 1  # the setting is left as it was
    finally:
        torch.set_num_threads(before)


def test_an_fp16_overflow_is_the_scalers_business_not_a_bad_step():
    """With fp16 the GradScaler skips an overflowing update and lowers its scale: a normal event.
    It must not count as a non-finite step, warn, or reset the carried state."""
    from charrnn.model.rnn import ModelConfig as MC
    from charrnn.training.trainer import Trainer

    class OverflowingScaler:  # what torch.amp.GradScaler does on a step whose scaled gradients overflow
        stepped = 0

        def is_enabled(self):
            return True

        def scale(self, loss):
            return loss * float("inf")

        def unscale_(self, optimizer):
            pass

        def step(self, optimizer):
            self.stepped += 1  # the real scaler skips optimizer.step() here

        def update(self):
            pass

    vocab = Vocab.from_text(TINY_TEXT)
    ids = vocab.encode_array(TINY_TEXT)
    trainer = Trainer(MC(vocab_size=len(vocab), hidden=16, embed=8),
                      TrainConfig(batch_size=4, seq_len=16, threads=1, precision="fp32"), vocab, ids, ids[:100])
    trainer.train_step()  # a normal step: the carried state is no longer zeros
    carried = [s.clone() for s in trainer.state]
    trainer.scaler = OverflowingScaler()
    out = trainer.train_step()
    assert out["overflow"] and out["finite"] and trainer.scaler.stepped == 1
    assert any(s.abs().sum() > 0 for s in trainer.state)  # not reset to zeros
    assert not all(torch.equal(a, b) for a, b in zip(carried, trainer.state))  # carried on to this batch's end
