"""Reading training text: files, folders, standard input; the train/validation split.

Sources are files, folders (with glob patterns), `-` for standard input, or streams: a FIFO
(a named pipe, or bash's process substitution `<(cmd)`, which names one as /dev/fd/63) or
a character device, read once, front to back, as standard input is. Text is decoded
strictly (UTF-8 by default); anything that is not text gets a clear error.
The layout for truncated back-propagation through time (B parallel streams) is
`batcher.StreamBatcher`; big corpora go through the token cache in `tokens`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from charrnn.util.errors import CharrnnError, UsageError
from charrnn.util.files import open_source, path_kind, source_label, stream_chunks
from charrnn.text.scan import iter_text, looks_binary, sniffed


def decode_bytes(data: bytes, name: str, encoding: str = "utf-8") -> str:
    """Bytes -> text, or a CharrnnError saying why this is not text and what to do (the decoder of files on
    disk, `scan.iter_text`, so a text gets the same verdict from disk, from stdin or as a prime)."""
    text = "".join(iter_text(io.BytesIO(data), name, encoding))
    if "\x00" in text:
        raise CharrnnError(f"{name} contains NUL characters and looks binary, not text: pass a text file")
    return text


def read_source(src: str, encoding: str = "utf-8") -> str:
    """The text of a file, a stream or '-' (standard input), whole (`decode_bytes`). A stream is refused as
    soon as its first bytes show it is not text, never read to its end first: it may have none (/dev/zero)."""
    name = source_label(src)
    try:
        if src != "-" and path_kind(src) != "stream":
            data = Path(src).read_bytes()
        else:
            with open_source(src) as f:
                data = b"".join(sniffed(stream_chunks(f), name, encoding))
    except OSError as e:
        raise CharrnnError(f"cannot read {name}: {e.strerror}") from None
    return decode_bytes(data, name, encoding)


def check_glob(pattern: str) -> None:
    """Refuse a glob that could select files outside its folder (absolute, or with a `..` part), or none:
    a mistake to point out before any file is read, not a set of files to read or to skip."""
    parts = PurePosixPath(pattern).parts  # "./" and "." parts are dropped
    if pattern.startswith("/"):
        raise UsageError(f"glob {pattern!r} must be relative to the folder, e.g. '**/*.txt'", "glob")
    if ".." in parts:
        raise UsageError(f"glob {pattern!r} must stay inside the folder (no '..'): name the folder that "
                         f"holds the files instead, with a glob such as '**/*.txt'", "glob")
    if not parts:
        raise UsageError(f"glob {pattern!r} names no files: give a pattern such as '**/*.txt'", "glob")


def check_text_file(src: str, reader: str, missing: str = "no such file") -> None:
    """Refuse a path that `reader` (a command, an option) cannot read one text from, saying what it is;
    `missing` starts the message for a path that does not exist."""
    kind = "stream" if src == "-" else path_kind(src)
    if kind == "missing":
        raise CharrnnError(f"{missing}: {src}")
    if kind == "folder":
        raise CharrnnError(f"{src} is a folder: {reader} reads one text file")
    if kind == "other":
        raise CharrnnError(f"{src} is neither a file nor a pipe (a socket or a block device): {reader} reads one text file")


def source_name(src: str) -> str:
    """A short name for a corpus source: its file or folder name without suffix, 'stdin' for '-', or
    'pipe' for a stream no folder names (bash's `<(cmd)` is /dev/fd/63, a link to 'pipe:[81234]');
    a named pipe (`mkfifo poems.fifo`) is named as a file is."""
    if src == "-":
        return "stdin"
    if path_kind(src) == "stream" and Path(src).absolute().parts[1:2] in (("dev",), ("proc",)):
        return "pipe"
    return Path(src).resolve().stem or "corpus"


def find_files(folder: Path, globs: list[str], exclude: Path | None = None, follow_symlinks: bool = True,
               outside: list[str] | None = None) -> list[Path]:
    """Files under `folder` matching any glob, sorted by their path relative to it (the same tree, the same order).

    With `follow_symlinks=False` a file whose real path is outside `folder` is left out, and its name
    appended to `outside`.
    """
    for g in globs:
        check_glob(g)
    # a pattern ending in '**' selects folders only (pathlib): its files are what a user means by it
    globs = [g + "/*" if PurePosixPath(g).name == "**" else g for g in globs]
    found = {p for g in globs for p in folder.glob(g) if p.is_file()}
    if exclude is not None:
        found = {p for p in found if p.resolve() != exclude}
    if not follow_symlinks:
        root = folder.resolve()
        leaving = {p for p in found if not p.resolve().is_relative_to(root)}
        found -= leaving
        if outside is not None:
            outside += sorted(p.relative_to(folder).as_posix() for p in leaving)
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def some(names: list[str], shown: int = 3) -> str:
    """The first few of a list of names, for a one-line message: `a.pyc, b.pyc, c.pyc ...`."""
    return ", ".join(names[:shown]) + (" ..." if len(names) > shown else "")


@dataclass
class Sources:
    """What a corpus argument list names: the files to read, in order, and what was left out."""

    files: list[str]  # files, streams and '-' (stdin)
    binary: list[str]  # files found in folders that are not text, skipped (a file named on its own is never skipped)
    outside: list[str] = field(default_factory=list)  # files in folders that symbolic links lead out of the folder to, skipped


def expand_sources(sources: list[str], globs: list[str] | None = None, encoding: str | None = None) -> Sources:
    """Files, folders (searched with `globs`, sorted), streams and '-' -> the files and streams to read.

    As `corpus build` does, files in folders that are binary (with an `encoding`: `scan.looks_binary`)
    or that a symbolic link leads out of the folder to (a link to ~/.ssh/id_rsa in a downloaded tree)
    are left out and listed; a file named on its own is always read, so that reading it says why.
    """
    out = Sources([], [])
    for src in sources:
        p, kind = Path(src), "stream" if src == "-" else path_kind(src)
        if kind == "folder":
            patterns = globs or ["**/*"]
            outside: list[str] = []
            found = [str(f) for f in find_files(p, patterns, follow_symlinks=False, outside=outside)]
            out.outside += [str(p / name) for name in outside]
            if not found and outside:
                raise CharrnnError(f"every file in folder {src} matching {' '.join(patterns)} is a symbolic link out of "
                                   f"it ({some(outside)}): name the files themselves to read them")
            if not found:
                raise CharrnnError(f"no files in folder {src} match {' '.join(patterns)}: give a glob such as '*.txt'",
                                   "glob")
            binary = [f for f in found if encoding is not None and looks_binary(f, encoding)]
            if len(binary) == len(found):
                raise CharrnnError(f"no text files in folder {src}: all {len(found)} matching files are binary "
                                   f"({some(binary)}); choose the text files with a glob such as '*.txt'", "glob")
            skip = set(binary)
            out.files += [f for f in found if f not in skip]
            out.binary += binary
        elif kind in ("file", "stream"):
            out.files.append(src)
        elif kind == "other":
            raise CharrnnError(f"{src} is neither a file, a folder nor a pipe (a socket or a block device): "
                               f"pass text files, folders, or - for stdin")
        else:
            raise CharrnnError(f"no such file or folder: {src}")
    if not out.files:
        raise UsageError("no corpus given: pass a file, a folder, or - for stdin")
    return out


def read_text(sources: list[str], globs: list[str] | None = None, encoding: str = "utf-8") -> str:
    """Read and concatenate every source as text (a folder contributes its matching files, sorted)."""
    text = "".join(read_source(src, encoding) for src in expand_sources(sources, globs, encoding).files)
    if not text:
        raise CharrnnError("the corpus is empty: give it some text to learn from")
    if not text.strip():
        raise CharrnnError("the corpus holds only whitespace: give it some text to learn from")
    return text


BLOCK = 1 << 20  # tokens read at a time when counting characters (a memory map is never read whole)


def count_chars(tokens: np.ndarray, char_counts: np.ndarray) -> int:
    """Characters of text that `tokens` stand for (`char_counts[id]` each)."""
    return sum(int(char_counts[np.asarray(tokens[a : a + BLOCK])].sum()) for a in range(0, len(tokens), BLOCK))


def token_index_at_char(tokens: np.ndarray, char_counts: np.ndarray, n_chars: int) -> int:
    """The first index j where tokens[:j] stand for at least `n_chars` characters and a character
    starts at tokens[j] (len(tokens) if there is none): cutting there never splits a character."""
    if (char_counts == 1).all():  # one character per token
        return min(max(n_chars, 0), len(tokens))
    done = 0
    for a in range(0, len(tokens), BLOCK):
        counts = char_counts[np.asarray(tokens[a : a + BLOCK])]  # (b,)
        before = done + np.cumsum(counts) - counts  # characters before each token
        hit = np.flatnonzero((before >= n_chars) & (counts > 0))
        if hit.size:
            return a + int(hit[0])
        done += int(counts.sum())
    return len(tokens)


def opening(text: str, limit: int = 24) -> str:
    """How a line of `text` starts: its first line that holds a letter or digit, cut at a word end within
    `limit` characters. A model's own prompt: the playground and the exported page offer it ('First Citizen:')."""
    line = next((ln.strip() for ln in text.splitlines() if any(c.isalnum() for c in ln)), "")
    if len(line) <= limit:
        return line
    cut = line.rfind(" ", 0, limit + 1)
    return line[: cut if cut > 0 else limit]


def split_train_val(tokens: np.ndarray, val_fraction: float,
                    char_counts: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The last `val_fraction` of the corpus is held out for validation (as nanoGPT does).

    With `char_counts` (a vocabulary's characters per token) the fraction is of the characters, cut where a
    character starts: a word or byte model then holds out the same tail of the text as a character model.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise UsageError("val_fraction must be a number >= 0 and < 1", "val_fraction")
    if char_counts is not None and not (char_counts == 1).all():
        total = count_chars(tokens, char_counts)
        cut = token_index_at_char(tokens, char_counts, total - int(total * val_fraction))
        return tokens[:cut], tokens[cut:]
    n_val = int(len(tokens) * val_fraction)
    return tokens[: len(tokens) - n_val], tokens[len(tokens) - n_val :]
