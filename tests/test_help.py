"""Help that teaches: every command's help ends with examples; -h, --version and shell completion work."""

from __future__ import annotations

import typer.main
from typer.testing import CliRunner

from charrnn import __version__
from charrnn.cli import app

runner = CliRunner()


def all_commands(command=None, path=()):
    command = command or typer.main.get_command(app)
    yield path, command
    for name, sub in getattr(command, "commands", {}).items():
        yield from all_commands(sub, (*path, name))


def test_every_command_has_examples_in_its_help():
    paths = [path for path, _ in all_commands()]
    assert {("train",), ("sample",), ("plot",), ("corpus", "get")} <= set(paths)
    for path, command in all_commands():
        assert command.epilog and "Examples" in command.epilog, f"charrnn {' '.join(path)} has no examples"
        result = runner.invoke(app, [*path, "-h"], terminal_width=100)
        assert result.exit_code == 0, path
        help_text = result.stdout
        assert "Examples" in help_text and "charrnn " in help_text.split("Examples", 1)[1], path


def test_version_and_completion():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"charrnn {__version__}"
    assert "--install-completion" in runner.invoke(app, ["--help"]).stdout
