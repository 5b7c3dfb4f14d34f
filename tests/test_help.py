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


def prose_paragraphs(text: str | None) -> list[str]:
    """The paragraphs of a help text or epilog that are prose (not indented example lines), as one line each."""
    from inspect import cleandoc

    from rich.text import Text

    paragraphs = cleandoc(text or "").split("\n\n")
    return [Text.from_markup(" ".join(p.split())).plain for p in paragraphs
            if p.strip() and not any(line[:1].isspace() for line in p.splitlines())]


def test_every_help_page_reads_like_a_well_kept_cli():
    """No type placeholders on flags, click's type names, defaults as values, arguments in upper case,
    and prose paragraphs reflowed to the terminal (never broken where the source line ended)."""
    import re

    for path, command in all_commands():
        result = runner.invoke(app, [*path, "-h"], env={"COLUMNS": "400"})
        assert result.exit_code == 0, path
        out, where = result.stdout, f"charrnn {' '.join(path)} -h"
        assert not re.search(r"<(bool|int|float|str|path|list\[\w+\])>", out), where
        assert "[default: (" not in out, where
        usage = next(line for line in out.splitlines() if "Usage:" in line).split("[OPTIONS]", 1)[1].split()
        for piece in usage:  # CHECKPOINT, [SOURCES]..., COMMAND [ARGS]...
            assert re.fullmatch(r"\[?[A-Z_]+\]?(\.\.\.)?", piece), f"{where}: usage shows {piece!r}"
        lines = [" ".join(line.strip(" │").split()) for line in out.splitlines()]
        for paragraph in prose_paragraphs(command.help) + prose_paragraphs(command.epilog):
            assert any(paragraph in line for line in lines), f"{where}: broken paragraph {paragraph[:60]!r}"
        flags = [p for p in command.params if getattr(p, "is_flag", False)]
        for flag in flags:
            line = next(line for line in lines if flag.opts[0] in line.split())
            assert not re.search(r"\b(BOOLEAN|bool)\b", line), f"{where}: {line}"


def test_train_help_says_which_defaults_the_sizing_chooses():
    """`--hidden` has no one default: with no shape flag the run sizes the model (charrnn.training.sizing)."""
    out = runner.invoke(app, ["train", "-h"], env={"COLUMNS": "400"}).stdout
    lines = {flag: next(line for line in out.splitlines() if f" {flag} " in line)
             for flag in ("--layers", "--hidden", "--embed", "--dropout", "--lr", "--batch-size")}
    for flag in ("--layers", "--hidden", "--embed", "--dropout"):
        assert "[default: sized for the text, budget and machine]" in lines[flag], lines[flag]
    from charrnn.training.config import TrainConfig
    from charrnn.training.sizing import LADDER

    sized = {s.lr for s in LADDER} - {TrainConfig.lr}  # the learning rates the sizing may choose: each is said
    assert f"[default: {TrainConfig.lr:g}; when sized:" in lines["--lr"]
    assert all(f"{lr:g} for {'2×'}" in lines["--lr"] for lr in sized)
    assert f"[default: {TrainConfig.batch_size}]" in lines["--batch-size"]
