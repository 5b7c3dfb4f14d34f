import numpy as np
import pytest

from charrnn.training.streams import StreamBatcher
from charrnn.text.corpus import decode_bytes, read_text
from charrnn.util.errors import CharrnnError
from charrnn.text.vocab import Vocab


def test_vocab_round_trip_unicode():
    text = "Hello, wörld! 你好 🙂 e\u0301\n"
    v = Vocab.from_text(text)
    assert v.decode(v.encode(text)) == text
    assert len(v) == len(set(text))
    assert Vocab.from_dict(v.to_dict()) == v
    assert v.decode(v.encode_array(text).tolist()) == text
    assert v.encode_array(text).dtype == np.uint8


def test_unknown_characters_are_named_or_skipped():
    v = Vocab.from_text("abc")
    with pytest.raises(CharrnnError, match=r"'x'.*'y'"):
        v.encode("axby")
    assert v.decode(v.encode("axby", unk="skip")) == "ab"


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "empty"),
        (b"   \n\t ", "only whitespace"),
        (b"caf\xe9 au lait", "not valid utf-8"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "PNG image, not text"),
        ("hello".encode("utf-16"), "UTF-16"),
    ],
)
def test_bad_corpora_get_clear_errors(tmp_path, data, message):
    f = tmp_path / "c.txt"
    f.write_bytes(data)
    with pytest.raises(CharrnnError, match=f"(?i){message}"):
        read_text([str(f)])


def test_bom_is_dropped():
    assert decode_bytes("\ufeffhi".encode("utf-8"), "x") == "hi"


def test_folder_with_glob_is_sorted(tmp_path):
    (tmp_path / "b.c").write_text("BBB")
    (tmp_path / "a.c").write_text("AAA")
    (tmp_path / "z.txt").write_text("ZZZ")
    assert read_text([str(tmp_path)], ["*.c"]) == "AAABBB"


def test_stream_layout_continues_across_batches():
    tokens = np.arange(24)
    b = StreamBatcher(tokens, batch_size=4, seq_len=2)
    x1, y1, _ = b.next_batch()
    x2, _, _ = b.next_batch()
    assert x1[:, 0].tolist() == [0, 6, 12, 18]  # four contiguous streams
    assert (y1[:, :-1] == x1[:, 1:]).all()  # targets are inputs shifted by one
    assert (x2[:, 0] == x1[:, -1] + 1).all()  # the next batch continues each stream
    _, _, wrapped = b.next_batch()  # stream length 6: columns 0-2, 2-4, then wrap
    assert wrapped


def test_too_short_for_batch_layout():
    with pytest.raises(CharrnnError, match="too short.*batch_size"):
        StreamBatcher(np.arange(100), batch_size=16, seq_len=128)
