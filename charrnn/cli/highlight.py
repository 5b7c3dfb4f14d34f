"""Syntax highlighting of generated text on a terminal: C, LaTeX, or none.

Characters are still streamed as they come; when a line is complete it is redrawn in
colour (cursor back to the start of the line, clear, write the highlighted line). The
lexer sees the line together with the lines before it, so a `/* comment */` or a
`\\begin{...}` opened a few lines up is still coloured right.

Only ever on a terminal: `make_writer` returns a plain `TextWriter` when stdout is a
pipe or a file, so piped output is byte for byte the generated text.
"""

from __future__ import annotations

import math
from collections import deque
from pathlib import Path

from rich.cells import cell_len
from rich.console import Console
from rich.syntax import Syntax

from charrnn.util.console import TextWriter
from charrnn.util.errors import UsageError

CHOICES = ("auto", "c", "latex", "none")  # --highlight values; c and latex are pygments lexer names
CORPUS_LANGUAGE = {"linux": "c", "latex": "latex"}  # catalog corpus -> language
SUFFIX_LANGUAGE = {".c": "c", ".h": "c", ".tex": "latex"}  # file or --glob suffix -> language
CONTEXT_LINES = 40  # lines before the current one that the lexer sees


def language_for(choice: str, checkpoint: dict | None = None) -> str | None:
    """--highlight value -> a lexer name or None. 'auto' asks the checkpoint what it was trained on:
    the corpus name (linux -> c, latex -> latex), else the suffixes of its files and --glob patterns."""
    if choice not in CHOICES:
        raise UsageError(f"--highlight must be one of {', '.join(CHOICES)}")
    if choice != "auto":
        return None if choice == "none" else choice
    meta = (checkpoint or {}).get("meta") or {}
    if meta.get("corpus") in CORPUS_LANGUAGE:
        return CORPUS_LANGUAGE[meta["corpus"]]
    config = meta.get("config") or {}
    suffixes = {Path(p).suffix for p in [*config.get("corpus", []), *config.get("glob", [])]}
    languages = {SUFFIX_LANGUAGE[s] for s in suffixes if s in SUFFIX_LANGUAGE}
    return languages.pop() if len(languages) == 1 else None


class HighlightWriter(TextWriter):
    """A TextWriter for a terminal that redraws each completed line with syntax colours."""

    def __init__(self, stream, language: str):
        super().__init__(stream)
        self.console = Console(file=self.stream, force_terminal=True, highlight=False)
        self.syntax = Syntax("", language, theme="ansi_dark", background_color="default", tab_size=8)
        self.context: deque[str] = deque(maxlen=CONTEXT_LINES)
        self.line = ""  # the current, incomplete line (already shown uncoloured)

    def write(self, text: str) -> bool:
        *lines, tail = text.split("\n")
        for line in lines:
            self._raw(line)
            self._redraw(end="\n")
        self._raw(tail)
        return not self.closed

    def _raw(self, piece: str) -> None:
        if piece:
            self.line += piece
            super().write(piece)

    def _redraw(self, end: str) -> None:
        """Move to the start of the current line (it may have wrapped), clear, write it coloured."""
        width = max(1, self.console.width)
        rows = max(1, math.ceil(cell_len(self.line.expandtabs(8)) / width))
        home = (f"\x1b[{rows - 1}A" if rows > 1 else "") + "\r\x1b[J" if self.line else ""
        coloured = self.syntax.highlight("\n".join([*self.context, self.line]))
        line_text = coloured.split("\n", allow_blank=True)[len(self.context)]
        with self.console.capture() as capture:
            self.console.print(line_text, end="", soft_wrap=True)
        super().write(home + capture.get() + end)
        self.context.append(self.line)
        self.line = ""

    def end_sample(self) -> None:
        """Colour the unfinished last line and forget the context (the next sample starts afresh)."""
        if self.line:
            self._redraw(end="")
        self.context.clear()

    def finish(self) -> None:
        self.end_sample()
        super().finish()


def make_writer(language: str | None, stream=None) -> TextWriter:
    """A writer for generated text: highlighting only when there is a language and a terminal."""
    writer = TextWriter(stream)
    return HighlightWriter(writer.stream, language) if language and writer.tty else writer
