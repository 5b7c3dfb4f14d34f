"""Everything the user sees that is not generated text: the stderr console, messages, the stdout writer.

stdout carries only generated text (see `TextWriter`); every other output goes through
`err_console()`, created lazily so test runners that swap sys.stderr capture it.
"""

from __future__ import annotations

import os
import sys

from rich.console import Console
from rich.text import Text

from charrnn.util.showtext import visible

_console: Console | None = None
_console_stream = None


def to_devnull(stream) -> None:
    """The reader of `stream` went away (a closed pipe): its descriptor writes to /dev/null from now on,
    so later writes, and Python's last flush at exit, cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


class ErrConsole(Console):
    def on_broken_pipe(self) -> None:
        """Whoever read the log went away (`charrnn train ... 2>&1 | head`): the log goes to /dev/null and
        the command carries on, so a training run still saves (rich's own choice is to exit at once)."""
        self.quiet = True
        to_devnull(self.file)


def err_console() -> Console:
    """The stderr console (rebuilt if sys.stderr was replaced, e.g. by a test runner)."""
    global _console, _console_stream
    if _console is None or _console_stream is not sys.stderr:
        _console = ErrConsole(file=sys.stderr, highlight=False, soft_wrap=True)
        _console_stream = sys.stderr
    return _console


def shown(text: str, style: str = "", keep: str = "") -> Text:
    """Text from a file, a checkpoint or a command line, ready for rich: control characters visible
    (`showtext.visible`), and a Text, so "[/bold]" in it is shown, never parsed as markup."""
    return Text(visible(str(text), keep), style=style)


def error(message: str) -> None:
    """`error: message` on stderr. Messages quote file names and text: shown as text, escapes visible."""
    err_console().print(Text.assemble(("error:", "bold red"), " ", visible(message)))


def warn(message: str) -> None:
    err_console().print(Text.assemble(("warning:", "yellow"), " ", visible(message)))


def info(message: str) -> None:
    err_console().print(Text(visible(message), style="dim"))


class TextWriter:
    """Writes generated text to stdout: flushed per character on a terminal, per line when piped. A closed
    pipe (`charrnn sample | head`) ends the writing quietly: `closed` becomes True, so the caller can stop."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.tty = getattr(self.stream, "isatty", lambda: False)()
        self.closed = False

    def write(self, text: str) -> bool:
        """Write `text`; False once the reader has gone away."""
        return self._send(text, self.tty or "\n" in text)

    def finish(self) -> None:
        self._send("", True)

    def _send(self, text: str, flush: bool) -> bool:
        if self.closed:
            return False
        try:
            self.stream.write(text)
            if flush:
                self.stream.flush()
        except BrokenPipeError:
            self.closed = True
            to_devnull(self.stream)  # (Python would complain again when it flushes stdout at exit)
        return not self.closed
