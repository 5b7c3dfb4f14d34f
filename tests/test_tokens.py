"""Corpora of any size: streamed decoding, the memory-mapped token cache, encodings, Unicode."""

import os
import time

import numpy as np
import pytest

import charrnn.text.scan
import charrnn.text.tokens
from charrnn.text.corpus import read_text
from charrnn.util.errors import CharrnnError
from charrnn.text.scan import iter_text
from charrnn.text.tokens import prepare_corpus
from charrnn import TrainConfig, train_on_tokens
from charrnn.text.vocab import Vocab

UNICODE = "Hello, wörld! 你好 🙂 e\u0301 ﬁ\n"  # CJK, an emoji (astral), a combining accent, a ligature


def test_tokens_equal_the_in_memory_encoding(tmp_path):
    (tmp_path / "a.txt").write_text(UNICODE * 50, encoding="utf-8")
    (tmp_path / "b.txt").write_text("plain ascii\n" * 30, encoding="utf-8")
    (tmp_path / "skip.md").write_text("not me", encoding="utf-8")
    corpus = prepare_corpus([str(tmp_path)], ["*.txt"], cache=tmp_path / "cache")
    text = read_text([str(tmp_path)], ["*.txt"])
    assert corpus.vocab == Vocab.from_text(text)
    assert isinstance(corpus.tokens, np.memmap) and corpus.tokens.dtype == np.uint8
    assert np.array_equal(corpus.tokens, corpus.vocab.encode_array(text))
    assert "🙂" in corpus.vocab and "\u0301" in corpus.vocab  # code points, not bytes
    assert corpus.vocab.decode(corpus.tokens[:len(UNICODE)].tolist()) == UNICODE


def test_second_run_is_a_cache_hit_without_reading_the_text(tmp_path, monkeypatch):
    f = tmp_path / "c.txt"
    f.write_text("to be or not to be\n" * 100)
    old = time.time() - 3600
    os.utime(f, (old, old))  # modified well before it is hashed, so its hash can be remembered
    first = prepare_corpus([str(f)], cache=tmp_path / "cache")
    assert not first.cached

    def boom(*a, **k):
        raise AssertionError("the corpus was read again")

    for name in ("scan_characters", "_hash_stream"):
        monkeypatch.setattr(charrnn.text.tokens, name, boom)
    monkeypatch.setattr(Vocab, "write_ids", boom)
    second = prepare_corpus([str(f)], cache=tmp_path / "cache")
    assert second.cached and second.path == first.path
    assert np.array_equal(second.tokens, first.tokens)


def test_changed_text_is_encoded_again_and_same_text_elsewhere_hits(tmp_path):
    cache = tmp_path / "cache"
    f = tmp_path / "c.txt"
    f.write_text("abcabc\n" * 10)
    first = prepare_corpus([str(f)], cache=cache)
    f.write_text("xyzxyz\n" * 10)
    changed = prepare_corpus([str(f)], cache=cache)
    assert not changed.cached and changed.vocab.chars == "\nxyz"
    copy = tmp_path / "copy.txt"
    copy.write_text("abcabc\n" * 10)
    assert prepare_corpus([str(copy)], cache=cache).path == first.path  # keyed by content, not name


def test_large_vocabulary_uses_uint16(tmp_path):
    text = "".join(chr(0x4E00 + i) for i in range(300)) * 3
    (tmp_path / "cjk.txt").write_text(text, encoding="utf-8")
    corpus = prepare_corpus([str(tmp_path / "cjk.txt")], cache=tmp_path / "cache")
    assert corpus.tokens.dtype == np.uint16 and len(corpus.vocab) == 300
    assert corpus.vocab.decode(corpus.tokens.tolist()) == text


@pytest.mark.parametrize("encoding, data", [
    ("utf-8", "\ufeff" + UNICODE * 5),  # BOM dropped
    ("utf-16", UNICODE * 5),  # Python writes a BOM; the decoder drops it
    ("utf-16-le", UNICODE * 5),
    ("latin-1", "café crème\n" * 5),
])
def test_encodings_give_the_same_tokens_as_utf8(tmp_path, encoding, data):
    (tmp_path / "x.txt").write_bytes(data.encode(encoding))
    corpus = prepare_corpus([str(tmp_path / "x.txt")], encoding=encoding, cache=tmp_path / "cache")
    expected = data.lstrip("\ufeff")
    assert corpus.vocab.decode(corpus.tokens.tolist()) == expected


def test_chunk_boundaries_split_characters_and_offsets_stay_exact(tmp_path, monkeypatch):
    monkeypatch.setattr(charrnn.text.scan, "CHUNK", 7)  # cut multi-byte characters everywhere
    text = UNICODE * 20
    f = tmp_path / "x.txt"
    f.write_bytes(text.encode())
    assert "".join(iter_text(f)) == text
    corpus = prepare_corpus([str(f)], cache=tmp_path / "cache")
    assert corpus.vocab.decode(corpus.tokens.tolist()) == text
    bad = text.encode() + b"line\n\xff tail"
    f.write_bytes(bad)
    offset = len(text.encode()) + 5
    with pytest.raises(CharrnnError, match=f"0xff at byte offset {offset:,}, line {text.count(chr(10)) + 2}"):
        list(iter_text(f))
    lenient: list[int] = []
    assert "".join(iter_text(f, bad=lenient)).endswith("line\n tail") and lenient == [offset]


def test_nul_after_the_sniffed_head_names_its_line(tmp_path):
    f = tmp_path / "x.txt"
    f.write_text("ok\n" * 5000 + "bad\x00\n")
    with pytest.raises(CharrnnError, match="NUL character \\(line 5,001\\)"):
        prepare_corpus([str(f)], cache=tmp_path / "cache")


def test_failed_encoding_leaves_nothing_in_the_cache(tmp_path, monkeypatch):
    f = tmp_path / "x.txt"
    f.write_text("some text\n" * 50)

    def half_then_fail(vocab, files, encoding, out, meter=None):
        out.write(b"\x01" * 100)
        raise KeyboardInterrupt

    monkeypatch.setattr(Vocab, "write_ids", half_then_fail)
    with pytest.raises(KeyboardInterrupt):
        prepare_corpus([str(f)], cache=tmp_path / "cache")
    assert list((tmp_path / "cache" / "tokens").iterdir()) == []
    monkeypatch.undo()
    assert not prepare_corpus([str(f)], cache=tmp_path / "cache").cached


def test_training_reads_batches_from_the_memory_map(tmp_path):
    f = tmp_path / "x.txt"
    f.write_text("the quick brown fox jumps over the lazy dog.\n" * 40)
    corpus = prepare_corpus([str(f)], cache=tmp_path / "cache")
    cfg = TrainConfig(steps=5, batch_size=4, seq_len=16, eval_every=5, threads=1, precision="fp32")
    trainer, result = train_on_tokens(corpus.vocab, corpus.tokens, {"hidden": 16, "embed": 8}, cfg)
    assert result.steps == 5
    assert np.shares_memory(trainer.batcher.streams, corpus.tokens)  # a view of the map, not a copy
    assert isinstance(trainer.val_tokens, np.memmap)
