"""Word and byte vocabularies for the token cache: build one from files, encode files with it.

The token cache (`tokens.py`) reads a corpus in 1 MB chunks and never holds it whole. For a
character vocabulary it has its own fast passes; for the other kinds it calls these:

    word   pass 1b  count the tokens (`wordvocab.count_tokens`; chunks re-cut where no token
                    straddles a cut), keep the most frequent       -> WordVocab
           pass 2   encode each re-cut chunk
    byte   pass 2   each chunk's UTF-8 bytes, as they are           -> ByteVocab (nothing to build)

Text goes through the same strict decoder as for characters (`textscan.iter_text`), so a
byte model reads exactly the text a character model would: a byte-order mark is dropped and
a file that is not text in `encoding` is refused; the bytes are those of its UTF-8 form.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from charrnn.text.bytevocab import ByteVocab
from charrnn.text.scan import iter_text
from charrnn.text.kinds import DEFAULT_MAX_VOCAB, check_kind
from charrnn.text.vocab import Vocab
from charrnn.text.wordvocab import WordVocab, count_tokens, token_chunks

Files = list[tuple[Path, str]]  # (path, name shown in messages)


def _texts(files: Files, encoding: str, meter: Callable[[int], None] | None) -> Iterator[str]:
    for path, name in files:
        yield from iter_text(path, name, encoding, on_bytes=meter)


def build_vocab(kind: str, chars: str, files: Files, encoding: str, max_vocab: int = DEFAULT_MAX_VOCAB,
                meter: Callable[[int], None] | None = None):
    """The vocabulary of `kind` for a corpus whose distinct characters are `chars` (pass 1's result)."""
    check_kind(kind)
    if kind == "char":
        return Vocab(chars)
    if kind == "byte":
        return ByteVocab()
    return WordVocab.build(chars, count_tokens(_texts(files, encoding, meter)), max_vocab)


def vocab_for_text(text: str, kind: str = "char", max_vocab: int = DEFAULT_MAX_VOCAB):
    """A vocabulary of `kind` built from a text in memory."""
    check_kind(kind)
    if kind == "word":
        return WordVocab.from_text(text, max_vocab)
    return ByteVocab() if kind == "byte" else Vocab.from_text(text)


def encode_tokens(files: Files, vocab, encoding: str, out, meter: Callable[[int], None] | None = None) -> tuple[int, int]:
    """Write the ids of a word or byte vocabulary for every file to the binary file `out`.

    Returns (tokens written, characters read). The files are one text: a word may run on
    from one file into the next, exactly as if they had been concatenated.
    """
    tokens = chars = 0
    texts = _texts(files, encoding, meter)
    if vocab.kind == "word":
        texts = token_chunks(texts)
    for text in texts:
        ids = vocab.encode_array(text)
        out.write(ids.tobytes())
        tokens += len(ids)
        chars += len(text)
    return tokens, chars
