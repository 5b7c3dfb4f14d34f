"""A corpus of any size as a memory-mapped array of token ids on disk, cached by content.

`prepare_corpus` turns files, folders, catalog names or `-` (stdin) into a `Corpus` whose
`tokens` is a read-only `np.memmap`: training slices batches out of it, so memory use does
not grow with the corpus. Nothing ever holds the whole text in memory:

    sources ──► sha256 of each file ──► cache key ──► hit?  ──yes──► open the memmap  (instant)
                  (remembered by size,       │
                   mtime and inode)          no
                                             ▼
                 pass 1: decode in 1 MB chunks, collect the character set, validate
                 pass 2: decode again, map characters to ids, append to a temp file ──► rename

The cache lives in $CHARRNN_CACHE (default ~/.cache/charrnn): `tokens/<key>.bin` holds the
ids (`vocab.dtype`), and `tokens/<key>.json` the vocabulary, dtype, length and two checksums of
the .bin written with it. The key is the sha256 of every file's sha256, the encoding and the
token kind (`cache_tag`), so the same text under another name is a hit, and an edited file a
miss. Standard input, and a pipe named as a file (`<(cmd)`), is spooled to a temporary file
once, then read like any file. A cache entry is checked before it is trusted (`check_cached`);
a bad one is rebuilt, with a warning that says why.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from charrnn.util.files import (CHUNK, cache_dir, atomic_write, atomic_write_text, json_text, open_source, os_advice,
                                path_kind, source_label, stream_chunks, sweep_stale_temps, temp_path)
from charrnn.text.corpus import expand_sources, some, source_name
from charrnn.util.errors import CharrnnError, UsageError
from charrnn.text.scan import iter_text, normalize_encoding, sniffed
from charrnn.text.kinds import DEFAULT_MAX_VOCAB, check_kind
from charrnn.text.vocab import Vocab, vocab_class

CACHE_FORMAT = 2  # 2: the .json records checksums of the .bin
FULL_CHECK_BYTES = 64 << 20  # token files up to this size are verified whole on every hit
SAMPLE_BLOCKS, SAMPLE_BLOCK = 64, 1 << 16  # larger ones by this many evenly spaced blocks of this many ids
Progress = Callable[[str, int, int], None]  # (phase, bytes done, bytes total)


@dataclass
class Corpus:
    """A prepared corpus: its vocabulary and its text as token ids on disk."""

    name: str  # a short name: the first source's file stem, "stdin" or "pipe" (`corpus.source_name`)
    vocab: Vocab  # the sorted distinct code points of the text (or a word or byte vocabulary)
    tokens: np.ndarray  # (N,) ids, a read-only memory map of `path`
    path: Path  # the cached token file
    sources: list[str]  # the files read, in order (STDIN_NAME for -)
    bytes: int  # bytes of input
    cached: bool  # True when the tokens came from the cache (nothing was decoded)
    seconds: float  # time spent preparing
    skipped: list[str] = field(default_factory=list)  # binary files found in folders and left out
    chars: int = 0  # characters of text the tokens stand for (0: one per token)
    outside: list[str] = field(default_factory=list)  # files in folders reached by symbolic links out of them, left out

    def __len__(self) -> int:
        return len(self.tokens)

    def describe(self) -> str:
        origin = ", ".join(self.sources) if len(self.sources) <= 3 else f"{len(self.sources)} files"
        how = "cached tokens" if self.cached else f"encoded in {self.seconds:.1f}s"
        skipped = f"; skipped {len(self.skipped)} binary file(s) in folders ({some(self.skipped)})" if self.skipped else ""
        if self.outside:
            skipped += (f"; skipped {len(self.outside)} symbolic link(s) out of their folder ({some(self.outside)}): "
                        "name a file to read it")
        what = self.vocab.count(len(self), self.chars or len(self))
        return f"{what} ({self.vocab.ids()}, {self.tokens.dtype} ids) from {origin}; {how}{skipped}"


class _Meter:
    """Adds up bytes for one phase and reports them to a progress callback."""

    def __init__(self, progress: Progress | None, phase: str, total: int):
        self.progress, self.phase, self.total, self.done = progress, phase, total, 0

    def __call__(self, n: int) -> None:
        self.done += n
        if self.progress:
            self.progress(self.phase, self.done, self.total)


def _hash_stream(f, meter: _Meter | None) -> str:
    digest, buf = hashlib.sha256(), bytearray(CHUNK)
    view = memoryview(buf)
    while n := f.readinto(buf):
        digest.update(view[:n])
        if meter:
            meter(n)
    return digest.hexdigest()


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]  # ctime: no tool can set it back


def file_sha256(path: Path, root: Path, meter: _Meter | None = None) -> str:
    """The sha256 of a file, remembered by its `_stamp` so an unchanged file is not read again.

    A remembered hash is trusted only if the file was last modified at least 2 s before it was
    hashed: a change made within the same timestamp tick as the hashing could otherwise go unseen.
    """
    stamp = _stamp(path)
    entry = root / "hashes" / (hashlib.sha256(os.fsencode(path.resolve())).hexdigest()[:32] + ".json")
    try:
        known = json.loads(entry.read_text())
        if known["stat"] == stamp and stamp[1] < known["hashed_at_ns"] - 2_000_000_000:
            if meter:
                meter(stamp[0])
            return known["sha256"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        pass
    started = time.time_ns()
    try:
        with open(path, "rb") as f:
            sha = _hash_stream(f, meter)
    except OSError as e:
        raise CharrnnError(f"cannot read {path}: {e.strerror}") from None
    if _stamp(path) == stamp:  # unchanged while we read it
        try:
            atomic_write_text(entry, json.dumps({"path": str(path.resolve()), "stat": stamp, "sha256": sha,
                                                 "hashed_at_ns": started}))
        except OSError:
            pass  # only a shortcut for next time
    return sha


def spool_stream(root: Path, stream, name: str, encoding: str) -> tuple[Path, str]:
    """Copy a binary stream (standard input, a pipe) to a temporary file under `root` (the caller deletes
    it); return it and its sha256. A stream can be read only once; the two passes read the copy.
    One whose first bytes show it is not text is refused then (`train - < /dev/zero` would fill the disk).
    """
    spool = root / "spool"
    spool.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(spool / "stdin")
    digest = hashlib.sha256()
    try:
        with open(tmp, "wb") as out:
            for chunk in sniffed(stream_chunks(stream), name, encoding):
                out.write(chunk)
                digest.update(chunk)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp), digest.hexdigest()


def _python_warning(message: str) -> None:
    import warnings

    warnings.warn(message, RuntimeWarning, stacklevel=3)


def scan_characters(files: list[tuple[Path, str]], encoding: str, meter: _Meter | None = None) -> tuple[str, int]:
    """Pass 1: (sorted distinct characters, number of characters), validating every file strictly.

    ASCII is the common case and is handled with `bytes.translate`, which deletes the bytes
    already known at C speed: only characters not seen before are looked at in Python.
    """
    seen: set[str] = set()
    known = b""  # the ASCII characters in `seen`, as bytes
    n = 0
    for path, name in files:
        for text in iter_text(path, name, encoding, on_bytes=meter):
            data = text.encode("ascii") if text.isascii() else text.encode("utf-8")
            rest = data.translate(None, known)
            if rest:
                new = set(rest.decode("utf-8")) - seen
                if "\x00" in new:
                    raise CharrnnError(f"{name} has a NUL character (line {_line_of_nul(path, encoding):,}) and looks "
                                       f"binary, not text: pass a text file, or strip NULs with tr -d '\\000'")
                seen |= new
                known = bytes(sorted(ord(c) for c in seen if ord(c) < 128))
            n += len(text)
    return "".join(sorted(seen)), n


def _line_of_nul(path: Path, encoding: str) -> int:
    """The line number of the first NUL character of a file (only read when there is one)."""
    lines = 1
    for text in iter_text(path, encoding=encoding):
        if (i := text.find("\x00")) >= 0:
            return lines + text.count("\n", 0, i)
        lines += text.count("\n")
    return lines


def _cache_key(shas: list[str], encoding: str, kind: str = "char", max_vocab: int = DEFAULT_MAX_VOCAB) -> str:
    how = vocab_class(kind).cache_tag(max_vocab)
    return hashlib.sha256(f"charrnn-tokens {CACHE_FORMAT}\n{encoding}\n{chr(10).join(shas)}{how}".encode()).hexdigest()


def sample_starts(n: int, blocks: int = SAMPLE_BLOCKS, block: int = SAMPLE_BLOCK) -> tuple[list[int], int]:
    """(block starts, block length) covering an array of n ids: all of it when small, else `blocks`
    evenly spaced blocks. The one sampling rule for checking big token arrays cheaply."""
    if n <= blocks * block:
        return ([0] if n else []), n
    return np.linspace(0, n - block, blocks).astype(np.int64).tolist(), block


def sampled_digest(tokens: np.ndarray) -> str:
    """blake2b of the blocks `sample_starts` picks: a few MB of reading for a token file of any size."""
    h = hashlib.blake2b(digest_size=16)
    starts, size = sample_starts(len(tokens))
    for start in starts:
        h.update(memoryview(np.ascontiguousarray(tokens[start : start + size])).cast("B"))
    return h.hexdigest()


def _file_digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


class _HashingWriter:
    """A binary file that hashes what is written to it (the token file's checksum, at no extra read)."""

    def __init__(self, f):
        self.f, self.hash = f, hashlib.blake2b(digest_size=16)

    def write(self, data) -> int:
        self.hash.update(data)
        return self.f.write(data)


def check_cached(meta_path: Path, verify: bool = False) -> tuple[Vocab, np.memmap, int]:
    """A cache entry's vocabulary, token memmap and character count, checked; raises ValueError saying what is wrong
    (FileNotFoundError when there is no entry at all).

    Its vocabulary must be valid with the dtype that fits it, the .bin's size must match, its content the
    checksum recorded at write time (the whole file up to FULL_CHECK_BYTES, else `sampled_digest`; `verify`
    reads it all), and its ids must be below the vocabulary's size.
    """
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if not isinstance(meta, dict) or meta.get("format") != CACHE_FORMAT:
        raise ValueError("it was written by another version of charrnn")
    dtype, length, sums = meta.get("dtype"), meta.get("length"), meta.get("checksum")
    vocab = Vocab.from_dict(meta.get("vocab"))  # checked: ValueError says what is wrong
    if dtype != vocab.dtype.name or not isinstance(length, int) or isinstance(length, bool) or length < 2:
        raise ValueError("its id type or length does not fit its vocabulary")
    if not isinstance(sums, dict) or not all(isinstance(sums.get(k), str) for k in ("blake2b", "sampled")):
        raise ValueError("it records no checksum")
    bin_path = meta_path.with_suffix(".bin")
    size = bin_path.stat().st_size
    if size != length * vocab.dtype.itemsize:
        raise ValueError(f"its token file holds {size:,} bytes, not the {length * vocab.dtype.itemsize:,} recorded")
    tokens = np.memmap(bin_path, dtype=vocab.dtype, mode="r", shape=(length,))
    whole = verify or size <= FULL_CHECK_BYTES
    if (_file_digest(bin_path) if whole else sampled_digest(tokens)) != sums["blake2b" if whole else "sampled"]:
        raise ValueError("its token file does not match the checksum recorded when it was written")
    starts, n = ([0], length) if whole else sample_starts(length)
    top = max(int(tokens[s : s + n].max()) for s in starts)
    if top >= len(vocab):
        raise ValueError(f"its token file holds id {top}, beyond its {len(vocab)}-id vocabulary")
    chars = meta.get("chars", length)
    if not isinstance(chars, int) or isinstance(chars, bool) or chars < 1:
        raise ValueError("its character count is not a number")
    return vocab, tokens, chars


def _open_cached(meta_path: Path, warn: Callable[[str], None], verify: bool) -> tuple[Vocab, np.memmap, int] | None:
    """The vocabulary, token memmap and character count of a cache entry, or None if it is absent or bad
    (bad: with a warning)."""
    try:
        return check_cached(meta_path, verify)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e) if isinstance(e, ValueError) else "it is malformed"
        warn(f"the token cache entry {meta_path.with_suffix('.bin')} is damaged ({why}): encoding the corpus again")
        return None


def _check_text(chars: str, n: int, names: list[str]) -> None:
    what = names[0] if len(names) == 1 else "the corpus"
    if n == 0:
        raise CharrnnError(f"{what} is empty: give it some text to learn from")
    if all(c.isspace() for c in chars):
        raise CharrnnError(f"{what} holds only whitespace: give it some text to learn from")
    if n < 2:
        raise CharrnnError(f"{what} holds a single character: a model needs more text than that to learn from")


def prepare_corpus(sources: list[str], globs: list[str] | None = None, encoding: str = "utf-8",
                   cache: str | Path | None = None, progress: Progress | None = None,
                   warn: Callable[[str], None] | None = None, verify: bool = False, kind: str = "char",
                   max_vocab: int = DEFAULT_MAX_VOCAB) -> Corpus:
    """Files, folders (with `globs`), catalog names or '-' -> a Corpus of memory-mapped token ids (module doc).

    `progress(phase, done, total)` is called as bytes are hashed, checked and encoded; `warn(message)`
    when a damaged cache entry is rebuilt (default: a Python warning). `verify=True` checks a cached
    token file whole, whatever its size. `kind` is the token kind (`max_vocab` ids for words).
    """
    from charrnn.text.catalog import resolve_source

    check_kind(kind)
    t0 = time.perf_counter()
    encoding = normalize_encoding(encoding)
    root = Path(cache) if cache is not None else cache_dir()
    found = expand_sources([resolve_source(s) for s in sources], globs, encoding)  # binary files in folders left out
    expanded = found.files
    if expanded.count("-") > 1:
        raise UsageError("standard input (-) can be read only once")
    spooled: dict[str, tuple[Path, str]] = {}  # '-' or a pipe -> its copy on disk, and the copy's sha256
    try:
        try:
            root.mkdir(parents=True, exist_ok=True)
            for sub in ("tokens", "spool", "hashes"):  # what killed runs left
                if (root / sub).is_dir():
                    sweep_stale_temps(root / sub)
            for s in expanded:
                if s not in spooled and (s == "-" or path_kind(s) == "stream"):
                    with open_source(s) as f:
                        spooled[s] = spool_stream(root, f, source_label(s), encoding)
        except OSError as e:
            raise CharrnnError(f"cannot use the token cache in {root} ({e.strerror}): {os_advice(e)}, "
                               f"or set CHARRNN_CACHE to a writable folder") from None
        files = [(spooled[s][0] if s in spooled else Path(s), source_label(s)) for s in expanded]
        total = sum(p.stat().st_size for p, _ in files)
        meter = _Meter(progress, "hashing", total)
        key = _cache_key([spooled[s][1] if s in spooled else file_sha256(p, root, meter) for s, (p, _) in zip(expanded, files)],
                         encoding, kind, max_vocab)
        names = [n for _, n in files]
        name = source_name(sources[0])
        meta_path = root / "tokens" / f"{key}.json"
        hit = _open_cached(meta_path, warn or _python_warning, verify)
        vocab, tokens, n = hit or _encode_to_cache(files, meta_path, encoding, kind, max_vocab, total, progress)
        return Corpus(name, vocab, tokens, meta_path.with_suffix(".bin"), names, total, hit is not None,
                      time.perf_counter() - t0, found.binary, n, found.outside)
    finally:
        for copy, _ in spooled.values():
            copy.unlink(missing_ok=True)


def _encode_to_cache(files: list, meta_path: Path, encoding: str, kind: str, max_vocab: int, total: int,
                     progress: Progress | None) -> tuple:
    """A text not in the cache: check it, build its vocabulary, write its ids beside `meta_path`
    (the .bin, then the .json that vouches for it). Returns (vocab, memory-mapped ids, characters)."""
    chars, n = scan_characters(files, encoding, _Meter(progress, "checking", total))
    _check_text(chars, n, [label for _, label in files])
    vocab = vocab_class(kind).from_files(chars, files, encoding, max_vocab, _Meter(progress, "counting words", total))
    bin_path = meta_path.with_suffix(".bin")
    try:
        meta_path.unlink(missing_ok=True)  # a .json never describes a .bin it was not written with
        with atomic_write(bin_path) as out:
            hashing = _HashingWriter(out)
            length, read = vocab.write_ids(files, encoding, hashing, _Meter(progress, "encoding", total))
            if read != n:  # raised inside the block: the temporary file is deleted
                raise CharrnnError(f"the corpus changed while it was being read ({n:,} then {read:,} characters): "
                                   "try again")
        tokens = np.memmap(bin_path, dtype=vocab.dtype, mode="r", shape=(length,))
        atomic_write_text(meta_path, json_text({
            "format": CACHE_FORMAT, "encoding": encoding, "vocab": vocab.to_dict(), "dtype": vocab.dtype.name,
            "length": length, "chars": n, "bytes": total, "sources": [label for _, label in files],
            "checksum": {"blake2b": hashing.hash.hexdigest(), "sampled": sampled_digest(tokens)},
        }))
    except OSError as e:
        root = meta_path.parent.parent
        raise CharrnnError(f"cannot write the token cache in {root} ({e.strerror}): {os_advice(e)}, "
                           f"or set CHARRNN_CACHE to another folder") from None
    return vocab, tokens, n
