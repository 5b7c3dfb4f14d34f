"""Errors a user can act on. The CLI prints their message on one line and exits with `exit_code`.

The library names settings as the library calls them (`temperature must be ...`, `... with unk=skip`)
and lists them in `settings`; each edge shows them in its own words through `naming`: the CLI as
its flags (`--temp must be ...`), the HTTP API as its JSON fields (`max_tokens` for `length`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping


class CharrnnError(Exception):
    """A problem with the user's input or environment: printed as `error: <message>`, exit 1."""

    exit_code = 1

    def __init__(self, message: str = "", *settings: str):
        super().__init__(message)
        self.settings = settings  # the settings the message names, by their library names

    def naming(self, words: Mapping[str, str]) -> str:
        """The message with each setting it names shown as `words` calls it (a flag, a JSON field)."""
        text = str(self)
        for name in self.settings:
            if name in words:
                text = re.sub(rf"(?<![\w-]){re.escape(name)}(?![\w-])", words[name], text)
        return text


class UsageError(CharrnnError, ValueError):
    """A bad setting value or combination: exit 2, like any command-line usage error (and a ValueError)."""

    exit_code = 2
