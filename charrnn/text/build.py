"""Build a corpus from a source tree: `charrnn corpus build SRC_DIR --glob '**/*.c' -o kernel.txt`.

The files matching the globs are concatenated in sorted path order (so the same tree always
gives the same bytes), as they are, with a newline added to a file that lacks a final one.
Binary files and files that are not valid UTF-8 are skipped and counted, never half-included:
each file is checked completely before any of it is written. The output appears atomically.
A symbolic link that leads out of the source folder (`src/a/passwd.c -> /etc/passwd`) is skipped
and counted too, unless `follow_symlinks`: a corpus holds the tree, not whatever it points at.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from charrnn.text.corpus import find_files, some
from charrnn.util.files import atomic_write, path_kind, write_target
from charrnn.util.errors import CharrnnError, UsageError
from charrnn.text.scan import iter_text, looks_binary


@dataclass
class BuildReport:
    files: list[str] = field(default_factory=list)  # included, in order (relative to the source folder)
    binary: list[str] = field(default_factory=list)  # skipped: binary
    not_utf8: list[str] = field(default_factory=list)  # skipped: not valid UTF-8
    outside: list[str] = field(default_factory=list)  # skipped: symbolic links that lead out of the tree
    bytes: int = 0  # bytes written

    def summary(self, out: str) -> str:
        skipped = []
        for label, names in (("binary", self.binary), ("not UTF-8", self.not_utf8),
                             ("symlinks out of the tree (--follow-symlinks to include)", self.outside)):
            if names:
                skipped.append(f"{len(names)} {label} ({some(names)})")
        return (f"wrote {out}: {len(self.files):,} files, {self.bytes:,} bytes; "
                f"skipped {'; '.join(skipped) if skipped else 'none'}")


def is_utf8(path: Path) -> bool:
    try:
        for _ in iter_text(path):
            pass
        return True
    except CharrnnError:
        return False


def build_corpus(src_dir: str | Path, globs: list[str] | None, out: str, follow_symlinks: bool = False,
                 force: bool = False) -> BuildReport:
    """Concatenate the text files of `src_dir` matching `globs` into `out` ('-' = stdout).

    An existing `out` is replaced only with `force` (it may be a file of the user's, even one of
    the tree's own files: the output is left out of the inputs, so it would hold the others' text).
    """
    src = Path(src_dir)
    kind = path_kind(src)
    if kind == "missing":
        raise CharrnnError(f"no such folder: {src_dir} (corpus build reads a folder of files)")
    if kind != "folder":
        raise CharrnnError(f"{src_dir} is not a folder: corpus build reads a folder of files (train reads files as they are)")
    if not out:
        raise UsageError("pass -o FILE (or -o - for stdout)")
    globs = globs or ["**/*"]
    dest = None if out == "-" else Path(out)
    target, atomic = write_target(dest) if dest is not None and not force else (None, False)
    if atomic and target.is_file():  # (a device, a pipe or /dev/stdout is written through in place: no file replaced)
        raise CharrnnError(f"{out} already exists: choose another out, or set force to replace it", "out", "force")
    report = BuildReport()
    files = find_files(src, globs, dest.resolve() if dest else None, follow_symlinks, report.outside)
    if not files:
        left = f" ({len(report.outside)} symlinks out of the tree were skipped: follow_symlinks)" if report.outside else ""
        raise CharrnnError(f"no files in {src_dir} match {' '.join(globs)}: check glob (e.g. '**/*.c'){left}", "glob",
                           "follow_symlinks")
    if dest is None:
        concatenate(files, src, sys.stdout.buffer, report)
        sys.stdout.buffer.flush()
        return report
    with atomic_write(dest) as f:
        concatenate(files, src, f, report)
    return report


def concatenate(files: list[Path], src: Path, f, report: BuildReport) -> None:
    """Append each text file of `files` (under `src`) to the binary stream `f`; record what was skipped."""
    for path in files:
        rel = path.relative_to(src).as_posix()
        if looks_binary(path):
            report.binary.append(rel)
            continue
        if not is_utf8(path):
            report.not_utf8.append(rel)
            continue
        last = ""
        for text in iter_text(path):  # decoded again: the BOM dropped, line ends kept as they are
            data = text.encode("utf-8")
            f.write(data)
            report.bytes += len(data)
            last = text[-1]
        if last and last != "\n":
            f.write(b"\n")
            report.bytes += 1
        report.files.append(rel)
