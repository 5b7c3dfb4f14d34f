"""Word and byte vocabularies: exact round trips, the UTF-8 guard, the token cache, bits per character."""

import itertools
import math

import numpy as np
import pytest
import torch

from charrnn.generation.beam import beam_search, stop_targets
from charrnn.generation.settings import Sampling
from charrnn.text.bytevocab import NEXT, ByteVocab, Utf8Guard
from charrnn.text.corpus import split_train_val
from charrnn.inspect.evaluation import evaluate
from charrnn.model.rnn import CharRNN, ModelConfig
from charrnn.generation.sampling import cut_at_stop, prime_ids_for, sample_ids, sample_text
from charrnn.inspect.surprise import encode_known, score_text
from charrnn.text.tokens import prepare_corpus
from charrnn.text.vocab import Vocab
from charrnn.text.wordvocab import WordVocab, split_words, token_chunks

from .conftest import SHARED

CORPORA = ["shakespeare", "warpeace", "latex", "linux"]
MIXED = "ROMEO: But soft, what light?\n  JULIET:\tO Romeo!  don't 'tis 1812 a_b café naïve 日本語 ✓ 🎉\n\n"


def corpus_text(name: str) -> str:
    path = SHARED / f"{name}.txt"
    if not path.is_file():
        pytest.skip(f"{path} is not here")
    return path.read_text(encoding="utf-8")


def random_model(vocab_size: int, seed: int = 0) -> CharRNN:
    """Random weights far from uniform: an untrained byte model writes invalid UTF-8 all the time."""
    torch.manual_seed(seed)
    model = CharRNN(ModelConfig(vocab_size=vocab_size, layers=1, hidden=16, embed=4))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.8)
    return model.eval()


# ---- round trips -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", CORPORA)
def test_word_and_byte_round_trips_on_the_corpora(name):
    text = corpus_text(name)
    assert "".join(split_words(text)) == text  # the tokenizer loses nothing, on all of it
    head = text[:300_000]
    vocab = WordVocab.from_text(head, max_vocab=2000)  # small: many words are spelled out
    ids = vocab.encode(head)
    assert vocab.decode(ids) == head and len(ids) > len(split_words(head))  # some were spelled
    assert np.array_equal(vocab.encode_array(head), ids)
    assert ByteVocab().decode(ByteVocab().encode(text)) == text
    # a stream of 4 KB chunks is re-cut where no token straddles a cut: the same tokens as the whole
    chunks = [head[i : i + 4096] for i in range(0, len(head), 4096)]
    assert sum((split_words(c) for c in token_chunks(chunks)), []) == split_words(head)


def test_words_outside_the_vocabulary_are_spelled_out_not_lost():
    vocab = WordVocab.from_text("the cat sat on the mat.\nthe cat sat.\n", max_vocab=30)
    text = "the mast sat on a cat."  # " mast" and " a" were never tokens, " on" only once
    ids = vocab.encode(text)
    assert vocab.decode(ids) == text
    assert [vocab.pieces[i] for i in ids[:2]] == ["the", " "] and vocab.pieces[ids[2]] == "m"
    assert vocab.char_counts[ids].sum() == len(text)
    assert Vocab.from_dict(vocab.to_dict()) == vocab and Vocab.from_dict({"chars": "ab"}) == Vocab("ab")
    assert Vocab.from_dict(ByteVocab().to_dict()) == ByteVocab()
    with pytest.raises(Exception, match="not in the model's vocabulary"):
        vocab.encode("the dog")  # no token can spell 'd', 'g'
    assert vocab.decode(vocab.encode("the dog", unk="skip")) == "the o"


def test_max_vocab_counts_characters_and_keeps_the_most_frequent():
    text = "aa bb aa cc aa bb dd\n" * 3
    vocab = WordVocab.from_text(text, max_vocab=len(set(text)) + 2)
    assert vocab.words == (" aa", " bb")  # ' aa' and ' bb' x6, ' cc' x3 ... most frequent first, ties by text
    assert len(vocab) == len(set(text)) + 2


def test_spans_cover_each_character_once_and_skip_unknowns():
    for vocab in (Vocab.from_text(MIXED), WordVocab.from_text(MIXED * 2), ByteVocab()):
        ids, starts, ends, oov = vocab.encode_spans(MIXED)
        assert oov == {} and vocab.decode(ids) == MIXED
        if vocab.kind == "byte":  # every byte spans its character
            assert np.array_equal(np.unique(starts), np.arange(len(MIXED))) and (ends == starts + 1).all()
        else:  # the tokens' spans tile the text
            assert starts[0] == 0 and ends[-1] == len(MIXED) and np.array_equal(starts[1:], ends[:-1])
            assert [MIXED[a:b] for a, b in zip(starts, ends)] == [vocab.pieces[i] for i in ids]
        enc = encode_known(vocab, MIXED)
        assert list(enc.token_of_char()) == sorted(enc.token_of_char())  # the token that completes each char
    enc = encode_known(WordVocab.from_text("ab ab ab"), "ab xab")
    assert enc.oov == {"x": 1} and enc.known.tolist() == [True, True, True, False, True, True]


def test_a_word_prime_is_cut_into_tokens_as_the_corpus_is():
    vocab = WordVocab.from_text(MIXED * 3)
    assert prime_ids_for(vocab, "ROMEO:") == vocab.encode("\nROMEO:")
    assert prime_ids_for(vocab, "  JULIET") == vocab.encode("\n  JULIET")  # "\n  " is one token, as in the text


# ---- bytes: only valid UTF-8 is ever written ------------------------------------------------------


def walk(data: bytes) -> bool:
    """Whether the guard's automaton accepts `data` as complete UTF-8."""
    state = 0
    for b in data:
        state = NEXT[state, b]
        if state < 0:
            return False
    return state == 0


def test_the_guard_accepts_exactly_valid_utf8():
    tricky = [b"\xed\x9f\xbf", b"\xed\xa0\x80", b"\xe0\x80\x80", b"\xe0\xa0\x80", b"\xf0\x8f\xbf\xbf",
              b"\xf0\x90\x80\x80", b"\xf4\x8f\xbf\xbf", b"\xf4\x90\x80\x80", b"\xc0\x80", b"\xc2\x80", b"\xf5\x80",
              b"\xef\xbf\xbf", b"\x80", b"a\xc3", "é日🎉".encode()]
    rng = np.random.default_rng(0)
    samples = tricky + [bytes(rng.integers(0, 256, rng.integers(1, 5))) for _ in range(20_000)]
    samples += [bytes([0xC0 | rng.integers(0, 64)]) + bytes(rng.integers(0x80, 0xC0, 3)) for _ in range(2000)]
    for data in samples:
        try:
            data.decode("utf-8")
            valid = True
        except UnicodeDecodeError:
            valid = False
        assert walk(data) == valid, data


def test_byte_sampling_writes_valid_utf8_for_every_seed():
    vocab, model = ByteVocab(), random_model(256, 1)
    for seed in range(120):
        options = [dict(temperature=1.5), dict(temperature=1.0, top_k=40), dict(temperature=0.9, top_p=0.95)][seed % 3]
        text = sample_text(model, vocab, 120, prime="é", seed=seed, **options)
        assert "\ufffd" not in text and text.encode("utf-8").decode("utf-8") == text
        assert not any(0xD800 <= ord(c) < 0xE000 for c in text)
    # without the guard the same model writes bytes that are not UTF-8: the guard is what keeps them out
    raw = [bytes(ids.tolist()) for ids in sample_ids(model, [10], Sampling(200, temperature=1.5, seed=0, n=8))]
    streams = [bytes(col) for col in zip(*raw)]
    assert not all(walk(s) for s in streams)


def test_byte_beams_are_valid_utf8_and_match_exhaustive_search():
    vocab, model = ByteVocab(), random_model(256, 2)
    for beam in beam_search(model, vocab, "a", width=8, length=24, top=8):
        assert "\ufffd" not in beam.text
    guard = Utf8Guard(2)
    guard.advance([0xE6, 0x41])
    assert guard.allowed()[0].sum() == 64 and guard.allowed()[1][0x41]  # inside a character: continuation bytes only


def test_incomplete_characters_are_held_back():
    dec = ByteVocab().decoder()
    assert [dec(b) for b in "日".encode()] == ["", "", "日"]
    assert ByteVocab().decode("a日".encode()[:-1]) == "a"


# ---- stop strings and beams over tokens of several characters -------------------------------------


def test_a_stop_string_inside_a_word_token_ends_the_text_right_after_it():
    assert cut_at_stop("ab", "c\n\n\nxy", ["\n\n"]) == ("c\n\n", True)
    assert cut_at_stop("b\n", "\nz", ["\n\n"]) == ("\n", True)
    assert cut_at_stop("", "abc", ["zz"]) == ("abc", False)
    pieces = ["a", "\n", "\n\n\n", "b\n", "ab"]
    assert stop_targets(pieces, ["\n\n"]) == [("", [2]), ("\n", [1, 2])]
    assert stop_targets(list("abc"), ["xbc"]) == []  # 'x' is no token: this stop can never be written


def test_word_beam_search_with_full_width_is_exhaustive():
    vocab = WordVocab.from_text("ab ab ba ba b a\n" * 3, max_vocab=7)
    model = random_model(len(vocab), 3)
    length = 3
    best = beam_search(model, vocab, "a", width=len(vocab) ** length, length=length)[0]
    prime = prime_ids_for(vocab, "a")
    seqs = list(itertools.product(range(len(vocab)), repeat=length))
    ids = torch.tensor([prime + list(s) for s in seqs])
    with torch.no_grad():
        logits, _ = model(ids[:, :-1])
    logp = torch.log_softmax(logits.double(), -1).gather(2, ids[:, 1:, None])[..., 0][:, len(prime) - 1 :].sum(1)
    top = int(logp.argmax())
    assert best.text == vocab.decode(seqs[top]) and best.logprob == pytest.approx(float(logp[top]), abs=1e-4)
    assert best.bits_per_char == pytest.approx(-float(logp[top]) / len(best.text) / math.log(2), rel=1e-6)


# ---- one scale: bits per character -----------------------------------------------------------------


def test_bits_per_character_divide_by_the_characters_the_tokens_stand_for():
    text = MIXED * 4
    for vocab in (Vocab.from_text(text), WordVocab.from_text(text), ByteVocab()):
        model = random_model(len(vocab), 4)
        tokens = vocab.encode_array(text)
        result = evaluate(model, tokens, batch_size=5, seq_len=16, char_counts=vocab.char_counts)
        first = len(vocab.decode(tokens[:1]))  # the first token is not predicted
        assert result.chars == len(text) - first and result.tokens == len(tokens) - 1
        assert result.bits_per_char == pytest.approx(result.nll_nats / result.chars / math.log(2))
        assert result.bits_per_token == pytest.approx(result.nll_nats / result.tokens / math.log(2))
        shards = [evaluate(model, tokens, 5, 16, shard=(r, 2), char_counts=vocab.char_counts) for r in range(2)]
        assert sum(s.chars for s in shards) == result.chars  # distributed validation adds up
        # score spreads each token's bits over its characters: they add up to the one-stream total
        s = score_text(model, vocab, text)
        whole = evaluate(model, tokens, batch_size=1, seq_len=64, char_counts=vocab.char_counts)
        assert s.total_bits == pytest.approx(whole.nll_nats / math.log(2), rel=1e-6) and s.scored == whole.chars


def test_word_and_byte_models_hold_out_the_same_tail_of_text():
    text = MIXED * 40
    n_val = int(len(text) * 0.1)
    for vocab in (Vocab.from_text(text), WordVocab.from_text(text), ByteVocab()):
        _, val = split_train_val(vocab.encode_array(text), 0.1, vocab.char_counts)
        tail = vocab.decode(val)
        assert text.endswith(tail) and n_val - 10 <= len(tail) <= n_val  # cut where a token starts


# ---- the token cache ------------------------------------------------------------------------------


def test_the_cache_encodes_words_across_files_and_keeps_kinds_apart(tmp_path):
    (tmp_path / "a.txt").write_text("hello wor", encoding="utf-8")
    (tmp_path / "b.txt").write_text("ld again, hello world\n" * 20, encoding="utf-8")
    files = [str(tmp_path / "a.txt"), str(tmp_path / "b.txt")]
    text = "hello wor" + "ld again, hello world\n" * 20
    cache = tmp_path / "cache"
    char = prepare_corpus(files, cache=cache)
    word = prepare_corpus(files, cache=cache, kind="word")
    byte = prepare_corpus(files, cache=cache, kind="byte")
    assert len({char.path, word.path, byte.path}) == 3
    assert word.vocab == WordVocab.from_text(text) and np.array_equal(word.tokens, word.vocab.encode_array(text))
    assert " world" in word.vocab.words  # "wor" + "ld" joined across the two files
    assert bytes(byte.tokens) == text.encode() and word.chars == byte.chars == char.chars == len(text)
    again = prepare_corpus(files, cache=cache, kind="word")
    assert again.cached and again.vocab == word.vocab and again.chars == len(text)
    assert "word tokens for" in word.describe() and "bytes for" in byte.describe()
    small = prepare_corpus(files, cache=cache, kind="word", max_vocab=len(word.vocab.chars) + 1)
    assert small.path != word.path and len(small.vocab.words) == 1


def test_byte_ids_the_text_never_uses_start_silenced():
    from charrnn.model.config import ModelConfig
    from charrnn.training.config import TrainConfig
    from charrnn.training.trainer import UNUSED_ID_BIAS, Trainer

    text = MIXED * 20
    cfg = TrainConfig(batch_size=2, seq_len=8, steps=1, threads=1)
    for vocab in (ByteVocab(), Vocab.from_text(text)):
        tokens = vocab.encode_array(text)
        trainer = Trainer(ModelConfig(vocab_size=len(vocab), layers=1, hidden=8, embed=4), cfg, vocab, tokens, tokens[:50])
        bias = trainer.model.head.bias.detach()
        used = np.zeros(len(vocab), dtype=bool)
        used[np.unique(tokens)] = True
        if vocab.kind == "byte":
            assert (bias[~used] == UNUSED_ID_BIAS).all() and (bias[used].abs() < 1).all()
        else:  # every character of the vocabulary occurs: the model starts as it always did
            assert used.all() and (bias.abs() < 1).all()
