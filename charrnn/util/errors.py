"""Errors a user can act on. The CLI prints their message on one line and exits with `exit_code`."""


class CharrnnError(Exception):
    """A problem with the user's input or environment: printed as `error: <message>`, exit 1."""

    exit_code = 1


class UsageError(CharrnnError):
    """A bad option value or combination: exit 2, like any command-line usage error."""

    exit_code = 2
