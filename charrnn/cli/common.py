"""Shared pieces of the CLI: the Typer app, its consoles, error mapping, the options several commands take,
the model that writes, prime reading."""

from __future__ import annotations

import contextlib
import functools
import sys
from pathlib import Path

import typer
from rich.console import Console

from charrnn import __version__
from charrnn.cli.helpstyle import App, examples
from charrnn.util.console import error, to_devnull
from charrnn.util.errors import CharrnnError, UsageError

EXAMPLES = examples(
    "charrnn corpus get shakespeare",
    "charrnn train shakespeare --preset tiny",
    "charrnn sample --temp 0.8 -n 1000 | less",
    "charrnn plot checkpoints/*",
    then="""charrnn COMMAND -h shows each command's options and examples.
Shell completion: charrnn --install-completion (bash, zsh, fish, PowerShell).""")

app = App(
    name="charrnn",
    help="Train character-level recurrent language models on any text, and make them write.",
    epilog=EXAMPLES,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"charrnn {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(False, "--version", "-V", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    pass


PIPED_WIDTH = 1000  # a table written to a pipe or file is laid out this wide: one line per row, for grep


class Trimmed:
    """`inner` drawn as it is, less the blanks at the end of each line: rich pads every cell of a table to its
    column's width, the last column's too, so a table written to a pipe would end its lines in spaces."""

    def __init__(self, inner):
        self.inner = inner

    def __rich_console__(self, console, options):
        from rich.segment import Segment

        for line in console.render_lines(self.inner, options, pad=False):
            while line and not line[-1].control and not line[-1].text.rstrip(" "):
                line.pop()
            if line and not line[-1].control:
                last = line.pop()
                line.append(Segment(last.text.rstrip(" "), last.style, last.control))
            yield from line
            yield Segment.line()


class OutConsole(Console):
    def print(self, *objects, **kwargs) -> None:
        """Print as rich does; a table written to a pipe or file without the spaces that pad its lines' ends."""
        from rich.table import Table

        if not self.is_terminal:
            objects = tuple(Trimmed(o) if isinstance(o, Table) else o for o in objects)
        super().print(*objects, **kwargs)

    def on_broken_pipe(self) -> None:
        """The reader went away (`charrnn checkpoints show | head`): stop quietly with status 0, as
        `charrnn sample | head` does (rich's own choice is status 1)."""
        self.quiet = True
        to_devnull(sys.stdout)
        raise SystemExit(0)


def out_console():
    """The console for a command's result on stdout (a table, a report): coloured and fitted to a
    terminal; plain, one line per row, when piped. Made when needed, so test runners that swap
    sys.stdout capture it."""
    tty = sys.stdout.isatty()
    return OutConsole(file=sys.stdout, highlight=False, width=None if tty else PIPED_WIDTH, soft_wrap=not tty)


def emit_json(data, indent: int | None = None) -> None:
    """Write a command's --json result on stdout: one JSON document (`util.files.json_text`) and a line break.
    A closed pipe (`... --json | head`) ends quietly."""
    from charrnn.util.console import TextWriter
    from charrnn.util.files import json_text

    writer = TextWriter()
    writer.write(json_text(data, indent) + "\n")
    writer.finish()


def result_table(title: str, columns=(), numeric=(), **kwargs):
    """A rich Table for a command's result on stdout, titled on the left, with these `columns` (those in
    `numeric` aligned right): boxed on a terminal; piped, bare aligned columns (the title, a header line,
    then one line per row), for grep, awk and cut."""
    from rich.table import Table

    if not sys.stdout.isatty():
        kwargs.update(box=None, pad_edge=False)
    table = Table(title=title, title_justify="left", **kwargs)
    for col in columns:
        table.add_column(col, justify="right" if col in numeric else "left")
    return table


OUT_OF_MEMORY = ("out of memory: the model, batch or text is too big for the memory this process may use "
                 "(see `ulimit -v` and free memory); use a smaller model, batch or --length")


def flag_names(fn) -> dict[str, str]:
    """A command's settings -> its flags (`temperature` -> `--temp`): an option's parameter is named after
    the setting it sets, and its first long flag is the one messages show."""
    import inspect

    return {name: next((d for d in p.default.param_decls if d.startswith("--")), name)
            for name, p in inspect.signature(fn).parameters.items() if isinstance(p.default, typer.models.OptionInfo)}


def guarded(fn):
    """Run a command body; print CharrnnError as one `error:` line and exit 1 (2 for usage)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from charrnn.util.signals import terminate_cleanly

        try:
            with terminate_cleanly():  # SIGTERM cleans up like Ctrl-C, then exits 143
                return fn(*args, **kwargs)
        except CharrnnError as e:
            error(e.naming(flag_names(fn)))
            raise typer.Exit(e.exit_code) from None
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        except OSError as e:  # a file-system problem nothing more specific caught: still one line
            from charrnn.util.files import os_advice

            where = f" ({e.filename})" if e.filename else ""
            error(f"{e.strerror or e}{where}: {os_advice(e)}")
            raise typer.Exit(1) from None
        except MemoryError:
            error(OUT_OF_MEMORY)
            raise typer.Exit(1) from None
        except RuntimeError as e:  # torch reports a failed allocation as a RuntimeError
            if not any(s in str(e).lower() for s in ("out of memory", "can't allocate memory", "cannot allocate memory")):
                raise
            error(f"{OUT_OF_MEMORY} ({str(e).splitlines()[0][:120]})")
            raise typer.Exit(1) from None

    return wrapper


def show_path(path: str | Path) -> str:
    """A path as a message shows it: relative to the working folder when inside it, escapes visible."""
    from charrnn.util.showtext import visible

    p = Path(path)
    try:
        p = p.resolve().relative_to(Path.cwd().resolve())
    except (ValueError, OSError):
        pass
    return visible(str(p))


def shape(loaded) -> str:
    """A loaded model as messages name it: `lstm 2x512`."""
    m = loaded.model.config
    return f"{m.cell} {m.layers}x{m.hidden}"


# What several commands take, declared once (Typer copies an option before it uses one)
NEWEST_CHECKPOINT = typer.Argument(None, help="Checkpoint file or run folder. Default: the newest run under ./checkpoints.", show_default=False)
CHECKPOINT = typer.Argument(..., help="Checkpoint file or run folder.", show_default=False)
THREADS = typer.Option(0, "--threads", help="CPU threads (0 = auto: times 1 thread and one per core, keeps the faster).")
PRIME = typer.Option(None, "--prime", "-p", help="Text to start from: the model reads it first, and it is printed before what the model writes.", show_default=False)
PRIME_FILE = typer.Option(None, "--prime-file", help="Read the prime from a file, or - for stdin.", show_default=False)
CONTINUATION_ONLY = typer.Option(False, "--continuation-only", help="Print only what the model writes, not the prime before it.")
UNK = typer.Option("error", "--unk", help="Prime characters the model never saw: error or skip.")
PRIME_NOTE = "The prime is printed first, so the output reads as one text (--continuation-only\nleaves it out)."


def device_option(default: str = "cpu"):
    """--device, its default named first: `cpu, cuda, mps or auto.`"""
    others = [d for d in ("auto", "cpu", "cuda", "mps") if d != default]
    return typer.Option(default, "--device", help=f"{default}, {others[0]}, {others[1]} or {others[2]}.")


@contextlib.contextmanager
def inference(checkpoint: str | None, device: str, threads: int, prime: str, settings, precision: str = "auto",
              keep: bool = False):
    """The model that `sample`, `beam` and `chat` write with, and its step kernel, for the block.

    Before anything is printed: loads the checkpoint (on one thread), says which run was taken if
    none was named, and refuses a prime the model cannot read or a batch of streams (`settings.n`
    samples or `settings.width` beams, each keeping its text where `keep`) that cannot fit in memory.
    The kernel is chosen for that batch (`precision` auto: the fastest measured on this machine,
    cached; `model.kernels.choose_kernel`), and the block runs with `threads` CPU threads (0: the
    faster of 1 and one per core). Yields (the loaded model, the kernel's name).
    """
    from charrnn.generation.sampling import check_batch_memory, prime_ids_for
    from charrnn.model.kernels import KERNELS, choose_kernel
    from charrnn.runtime.device import resolve_device
    from charrnn.runtime.threads import check_threads, torch_threads
    from charrnn.training.checkpoint import load_model
    from charrnn.util.console import info

    check_threads(threads)
    if precision not in ("auto", *KERNELS):
        raise UsageError(f"precision must be one of auto, {', '.join(KERNELS)}", "precision")
    with torch_threads(1):
        loaded = load_model(checkpoint, resolve_device(device))
        if loaded.chosen:
            info(f"using {show_path(loaded.path)} ({loaded.facts()})")
        prime_ids_for(loaded.vocab, prime, settings.unk)
        if precision == "auto" and settings.greedy and not settings.width:
            precision = "fp32"  # greedy text is the model's own argmax: no reduced-precision kernel may tip a near-tie
        check_batch_memory(loaded.model, settings, keep, loaded.vocab, precision)
        choice = choose_kernel(loaded.model, settings.width or settings.n, precision, threads, steps=settings.length)
        if choice.verdict is not None and not choice.verdict.cached:  # measured now: say so, once per machine and shape
            info(choice.describe() + " (kept for next time)")
    with torch_threads(choice.threads):
        yield loaded, choice.kernel


def read_prime(prime: str | None, prime_file: str | None) -> str:
    """--prime TEXT or --prime-file PATH|- (stdin) -> the prime text ('' if neither)."""
    if prime is not None and prime_file is not None:
        raise UsageError("pass --prime or --prime-file, not both")
    if prime_file is None:
        return prime or ""
    from charrnn.text.corpus import check_text_file, read_source

    if prime_file != "-":
        check_text_file(prime_file, "--prime-file", "no such prime file")  # a pipe (<(cmd)) is read like -
    return read_source(prime_file)
