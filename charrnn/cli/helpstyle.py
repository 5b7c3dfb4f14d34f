"""How every command's `-h` looks: the classic Typer/click help, the same for every command.

Typer 0.29 left to itself renders

    Usage: charrnn eval [OPTIONS] {checkpoint} {source}       argument names in braces
    --overwrite            <bool>   Allow --out to be ...     a value placeholder on a flag
    --encoding             <str>    ... [default: (utf-8)]    a default given as text, in parentheses

and keeps every line break of a docstring or epilog, so a paragraph wrapped at 90 columns in
the source is broken mid-sentence on a narrower terminal. `App` is a `typer.Typer` whose
commands and groups render instead

    Usage: charrnn eval [OPTIONS] CHECKPOINT SOURCE            upper case, as click writes them
    --overwrite                     Allow --out to be ...      no placeholder on a flag
    --encoding             TEXT     ... [default: utf-8]       INTEGER, FLOAT, TEXT, PATH

with prose paragraphs reflowed to the terminal's width; example blocks (indented lines)
keep their lines. Commands are declared as usual: `@app.command(...)`.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

try:
    from typer._click.exceptions import ClickException  # Typer 0.2x parses with its own copy of click
except ImportError:  # older Typer: click itself
    from click.exceptions import ClickException


CLICK_NAMES = {"int": "INTEGER", "float": "FLOAT", "str": "TEXT", "path": "PATH"}  # Typer's label -> click's


class Option(TyperOption):
    """An option shown with click's upper-case type name (INTEGER, TEXT), a flag with none."""

    def display_type_rich(self, ctx) -> str | None:
        if self.is_flag or self.count:
            return None
        if self.metavar:
            return self.metavar
        label = self.display_type(ctx).strip("<>")  # "<int>", "<list[str]>" ...
        label = label.removeprefix("list[").removesuffix("]")  # a repeatable option: the type of each value
        return CLICK_NAMES.get(label, label.upper())

    def _get_default_string(self, *, ctx, show_default_is_str: bool, default_value) -> str:
        if show_default_is_str:  # a default shown as text is the default, not a remark in parentheses
            return str(self.show_default)
        return super()._get_default_string(ctx=ctx, show_default_is_str=False, default_value=default_value)


class Argument(TyperArgument):
    """An argument shown by its upper-case name: CHECKPOINT, [SOURCES]..., no type placeholder."""

    @property
    def display_name_raw(self) -> str:
        return self.metavar or self.name.upper()

    def display_type_rich(self, ctx) -> str | None:
        return None

    def _usage_display_name(self) -> str:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return name + ("..." if self.nargs != 1 else "")


def reflow(text: str | None, docstring: bool = False) -> str | None:
    """Join the lines of each prose paragraph, so that the terminal wraps it, not the source.

    A paragraph with an indented line (a block of examples) keeps its lines as written.
    """
    if not text:
        return text
    text = inspect.cleandoc(text) if docstring else text.strip("\n")
    joined = "\n\n".join(p if any(line[:1].isspace() for line in p.splitlines()) else " ".join(p.split("\n"))
                         for p in text.split("\n\n"))
    # Typer dedents what follows the first line of an epilog; an empty first line keeps examples indented.
    return joined if docstring else "\n" + joined


def examples(*commands: str, then: str = "") -> str:
    """A command's epilog: the Examples heading, a command a line, then any prose paragraphs (`then`)."""
    return "\n".join(["[bold]Examples[/]", "", *(f"  {c}" for c in commands), *(["", then] if then else [])])


class Restyled:
    """A command or group with its help reflowed and its parameters (built afresh for every help page)
    rendered as above."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.help, self.epilog = reflow(self.help, docstring=True), reflow(self.epilog)

    def get_params(self, ctx) -> list:
        params = super().get_params(ctx)
        for p in params:
            p.__class__ = {TyperOption: Option, TyperArgument: Argument}.get(type(p), type(p))
        return params


class Command(Restyled, TyperCommand):
    pass


class Group(Restyled, TyperGroup):
    # The command line is parsed in these two (a subcommand's options inside `invoke`)
    def make_context(self, *args, **kwargs):
        with one_line_errors():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx):
        with one_line_errors():
            return super().invoke(ctx)


@contextmanager
def one_line_errors():
    """A mistake in the command line as one line, like every other error, instead of Typer's usage
    box: `error: No such option: --bogus (see charrnn sample -h)`, exit status 2."""
    try:
        yield
    except ClickException as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # `charrnn` alone: the help was shown
            raise
        from charrnn.util.console import error

        ctx = getattr(e, "ctx", None)
        message = e.format_message()
        error(message.rstrip(".") + f" (see {ctx.command_path} -h)" if ctx is not None else message)
        raise typer.Exit(e.exit_code) from None


class App(typer.Typer):
    """A `typer.Typer` whose groups and commands render their help as described above; `-h` as well as
    `--help`, and the help when called with nothing."""

    def __init__(self, **kwargs):
        super().__init__(cls=Group, no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]},
                         **kwargs)

    def command(self, *args, cls: type[TyperCommand] = Command, **kwargs):
        return super().command(*args, cls=cls, **kwargs)
