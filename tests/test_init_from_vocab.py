"""`--init-from` extends the vocabulary: what the checkpoint never saw gets new rows, the rest carries over."""

from __future__ import annotations

import numpy as np
import torch
from typer.testing import CliRunner

from charrnn import TrainConfig
from charrnn.cli import app
from charrnn.generation.sampling import sample_text
from charrnn.inspect.evaluation import char_nll
from charrnn.model.rnn import CharRNN, ModelConfig
from charrnn.text.bytevocab import ByteVocab
from charrnn.text.vocab import Vocab
from charrnn.text.wordvocab import WordVocab
from charrnn.training.checkpoint import load_checkpoint
from charrnn.training.start import carried_weights, init_from_checkpoint, train_on_text

runner = CliRunner()
BASE = "the quick brown fox jumps over the lazy dog.\n" * 40
CODE = "f(x) = {x_1 + 2}; # ok\n" * 60  # ( ) = { } _ + 1 2 ; # : eleven characters the base text lacks
NEW = set(CODE) - set(BASE)


def test_a_character_vocabulary_adds_the_characters_it_lacks_in_code_point_order():
    old = Vocab.from_text("bdf")
    grown, added = old.extended(Vocab.from_text("abcdf"))
    assert grown.chars == "abcdf" and [grown.chars[i] for i in added] == ["a", "c"] and added == [0, 2]
    assert old.extended(Vocab.from_text("db")) == (old, [])  # nothing new: the same vocabulary


def test_a_word_vocabulary_adds_characters_and_words_and_keeps_its_own():
    old = WordVocab.from_text("the cat the cat sat sat")
    grown, added = old.extended(WordVocab.from_text("the dog! the dog! a cat"))
    assert set(old.pieces) <= set(grown.pieces) and grown.words[: len(old.words)] == old.words
    assert sorted(grown.pieces[i] for i in added) == sorted(["!", "d", "g", "o", " dog"])  # " dog" seen twice: a token
    assert ByteVocab().extended(ByteVocab()) == (ByteVocab(), [])  # bytes: never anything new


def test_carried_weights_move_each_row_to_its_characters_new_id_and_keep_the_rest():
    old, new = Vocab("bd"), Vocab("abcd")
    torch.manual_seed(0)
    stored = CharRNN(ModelConfig(vocab_size=2, hidden=8, embed=4)).state_dict()
    fresh = CharRNN(ModelConfig(vocab_size=4, hidden=8, embed=4)).state_dict()
    weights = carried_weights(stored, fresh, old, new)
    for key in ("embedding.weight", "head.weight", "head.bias"):
        assert torch.equal(weights[key][[1, 3]], stored[key])  # 'b' 0 -> 1, 'd' 1 -> 3
        assert torch.equal(weights[key][[0, 2]], fresh[key][[0, 2]])  # 'a', 'c': a new model's rows
    assert all(torch.equal(weights[k], stored[k]) for k in stored if k.startswith("rnn."))


def new_char_bits(model, vocab: Vocab, text: str) -> float:
    """Mean bits of the predictions whose next character is one the base text lacks."""
    ids = vocab.encode_array(text)
    nll = char_nll(model, ids)  # (N - 1,) nats of ids[1:]
    targets = np.array([vocab.chars[i] in NEW for i in ids[1:]])
    return float(nll[targets].mean() / np.log(2))


def test_fine_tuning_on_new_characters_learns_them(tmp_path):
    cfg = TrainConfig(steps=60, batch_size=4, seq_len=32, lr=1e-2, eval_every=60, threads=1, precision="fp32",
                      device="cpu")
    train_on_text(BASE, {"hidden": 48, "embed": 8}, cfg, tmp_path / "base")
    base = load_checkpoint(tmp_path / "base" / "best.pt")
    tune = TrainConfig(steps=150, batch_size=4, seq_len=32, lr=1e-2, eval_every=150, threads=1, precision="fp32",
                       device="cpu")
    trainer = init_from_checkpoint(tmp_path / "base" / "best.pt", CODE, None, tune, tmp_path / "ft")
    vocab, model = trainer.vocab, trainer.model
    assert set(vocab.chars) == set(BASE) | NEW and len(vocab) == len(base["vocab"]["chars"]) + len(NEW)
    for ch in base["vocab"]["chars"]:  # the old characters' rows carried over, at their new ids
        old_id, new_id = base["vocab"]["chars"].index(ch), vocab.chars.index(ch)
        assert torch.equal(model.embedding.weight[new_id], base["model"]["embedding.weight"][old_id])
        assert torch.equal(model.head.bias[new_id], base["model"]["head.bias"][old_id])
    before = new_char_bits(model, vocab, CODE[:400])
    trainer.run()
    after = new_char_bits(model, vocab, CODE[:400])
    assert after < before / 4, (before, after)
    greedy = sample_text(model.eval(), vocab, 40, prime="f(", temperature=0)
    assert {"{", "}", "_", "+", "#"} <= set(greedy), greedy
    assert load_checkpoint(tmp_path / "ft" / "best.pt")["meta"]["vocab_added"] == sorted(NEW)


def test_the_log_names_what_was_added(in_tmp, tiny_run):
    (in_tmp / "code.txt").write_text(CODE)
    result = runner.invoke(app, ["train", "code.txt", "--init-from", str(tiny_run), "-o", "ft", "--steps", "2",
                                 "-b", "2", "-t", "8", "--threads", "1"])
    assert result.exit_code == 0, result.stderr
    line = next(x for x in result.stderr.splitlines() if "the vocabulary grows" in x)
    assert f"{len(NEW)} character(s) the checkpoint never saw, '#' '(' ')' '+' '1' '2' ';' '=' '_' '{{' '}}'" in line
    assert "new embedding and output rows" in line
    assert "never trained on" not in result.stderr


def test_a_word_model_grows_by_new_characters_and_words_and_a_byte_model_by_nothing(tmp_path):
    cfg = TrainConfig(steps=2, batch_size=2, seq_len=8, threads=1, precision="fp32", device="cpu")
    for kind in ("word", "byte"):
        train_on_text(BASE, {"hidden": 16, "embed": 8}, cfg, tmp_path / kind, kind=kind)
        base = load_checkpoint(tmp_path / kind / "best.pt")
        trainer = init_from_checkpoint(tmp_path / kind / "best.pt", CODE, None, cfg, tmp_path / f"{kind}-ft")
        old = type(trainer.vocab).from_dict(base["vocab"])
        added = set(trainer.vocab.pieces) - set(old.pieces)
        if kind == "byte":
            assert trainer.vocab == old and not added
            continue
        assert NEW <= added and " ok" in added  # its characters, and a word the new text uses often
        for piece in old.pieces:
            row = trainer.model.embedding.weight[trainer.vocab.pieces.index(piece)]
            assert torch.equal(row, base["model"]["embedding.weight"][old.pieces.index(piece)])
        trainer.run()
