"""`charrnn corpus ...`: the catalog of named corpora, building a corpus from files, and its statistics."""

from __future__ import annotations

import sys

import typer

from charrnn.cli.common import App, app, emit_json, examples, guarded, out_console

corpus_app = App(help="Corpora: list and fetch the named ones, build your own, look inside.", epilog=examples(
    "charrnn corpus list", "charrnn corpus get shakespeare", "charrnn corpus stats shakespeare",
    "charrnn train shakespeare --preset tiny",
    then="""Named corpora are fetched into one folder per user, found from any folder:
$CHARRNN_CORPORA, else $XDG_DATA_HOME/charrnn/corpora (~/.local/share/charrnn/corpora).
A copy in ./corpora/ is found too."""))
app.add_typer(corpus_app, name="corpus")

CORPORA = typer.Option(None, "--corpora", show_default=False,
                       help="Folder of fetched corpora (default: $CHARRNN_CORPORA, else ~/.local/share/charrnn/corpora).")


@corpus_app.command("list", epilog=examples("charrnn corpus list", "charrnn corpus list --corpora /data/corpora"))
@guarded
def list_(corpora: str = CORPORA) -> None:
    """Show the catalog: name, size, license, and where it is fetched (- if not)."""
    out_console().print(catalog_table(corpora))


def home_short(path) -> str:
    """A path as a listing shows it: ~/... under the home folder, escapes visible."""
    from pathlib import Path

    from charrnn.util.showtext import visible

    p = Path(path)
    try:
        p = "~" / p.absolute().relative_to(Path.home())
    except (ValueError, RuntimeError):  # not under it, or no home folder
        pass
    return visible(str(p))


def catalog_table(corpora: str | None = None):
    """The catalog as a table: every cell whole at any width but the description, which wraps."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from charrnn.text.catalog import corpora_dir, found_path, load_catalog

    places = [(e, found_path(e, corpora)) for e in load_catalog().values()]
    rows = [(e.name, f"{e.bytes / 1e6:.1f} MB", e.license, home_short(p) if p else "-", e.description)
            for e, p in places]
    title = Text(f"charrnn corpora (fetched into {home_short(corpora_dir(corpora))})")
    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False)  # no edge: room to wrap
    for i, col in enumerate(("name", "size", "license", "fetched", "description")):
        whole = col != "description"  # only the description wraps: a name, a size or a path is never cut
        table.add_column(col, justify="right" if col == "size" else "left", no_wrap=whole, overflow="fold",
                         min_width=max(len(r[i]) for r in rows) if whole else None)
    for row in rows:
        table.add_row(*map(Text, row))
    return table


@corpus_app.command("get", epilog=examples("charrnn corpus get shakespeare",
                                            "charrnn corpus get --all --mirror ../shared/corpora",
                                            "charrnn corpus get linux --corpora /data/corpora"))
@guarded
def get(
    names: list[str] = typer.Argument(None, help="Catalog names.", show_default=False),
    all_: bool = typer.Option(False, "--all", help="Fetch every corpus in the catalog."),
    mirror: str = typer.Option(None, "--mirror", help="Copy from this folder instead of downloading (or set CHARRNN_MIRROR).", show_default=False),
    force: bool = typer.Option(False, "--force", help="Fetch again even if present."),
    corpora: str = CORPORA,
) -> None:
    """Download (or copy from a mirror) named corpora, verifying each by sha256."""
    from rich.markup import escape
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from charrnn.text.catalog import fetch, load_catalog
    from charrnn.util.console import err_console, shown
    from charrnn.util.errors import UsageError
    from charrnn.util.showtext import visible

    names = list(load_catalog()) if all_ else (names or [])
    if not names:
        raise UsageError("name a corpus (see `charrnn corpus list`) or pass --all")
    with Progress("{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=err_console(), transient=True, disable=not err_console().is_terminal) as progress:
        for name in names:
            task = progress.add_task(escape(visible(name)), total=None)  # the description column reads markup
            path = fetch(name, mirror, lambda done, total: progress.update(task, completed=done, total=total), force,
                         corpora)
            progress.remove_task(task)
            err_console().print(shown(f"{name}: {path} (sha256 verified)"))


@corpus_app.command("build", epilog=examples(
    "charrnn corpus build linux/kernel --glob '**/*.c' --glob '**/*.h' -o corpora/kernel.txt",
    "charrnn corpus build notes/ --glob '**/*.md' -o - | charrnn train -"))
@guarded
def build(
    src_dir: str = typer.Argument(..., help="Folder to collect files from.", show_default=False),
    glob: list[str] = typer.Option(None, "--glob", help="File pattern, repeatable (default '**/*').", show_default=False),
    out: str = typer.Option(..., "--out", "-o", help="Corpus file to write (atomically), or - for stdout.", show_default=False),
    follow_symlinks: bool = typer.Option(False, "--follow-symlinks", help="Include files that symbolic links lead to outside the folder (skipped and counted by default)."),
    force: bool = typer.Option(False, "--force", help="Replace the --out file if it exists."),
) -> None:
    """Concatenate a tree's text files in sorted order into one corpus; binary and non-UTF-8 files are skipped."""
    from charrnn.text.build import build_corpus
    from charrnn.util.console import info, to_devnull

    try:
        report = build_corpus(src_dir, glob, out, follow_symlinks, force)
    except BrokenPipeError:  # `corpus build src -o - | head`: the reader has what it wanted; end quietly
        to_devnull(sys.stdout)
        return
    info(report.summary("stdout" if out == "-" else out))


@corpus_app.command("stats", epilog=examples(
    "charrnn corpus stats shakespeare",
    "cat notes/*.md | charrnn corpus stats -",
    "charrnn corpus stats src/ --glob '**/*.py' --json | jq .vocabulary"))
@guarded
def stats(
    sources: list[str] = typer.Argument(..., help="Files, folders (see --glob), catalog names, or - for stdin.", show_default=False),
    glob: list[str] = typer.Option(None, "--glob", help="File pattern inside folders, repeatable.", show_default=False),
    encoding: str = typer.Option("utf-8", "--encoding", help="Text encoding of the files."),
    top: int = typer.Option(10, "--top", help="How many of the commonest and rarest characters to list."),
    as_json: bool = typer.Option(False, "--json", help="Print the statistics as JSON on stdout."),
) -> None:
    """Sizes, characters and oddities (BOM, CRLF, NUL, invalid bytes) of a corpus, in one streaming pass."""
    from charrnn.text.catalog import resolve_source
    from charrnn.util.errors import UsageError
    from charrnn.text.stats import text_stats

    if top < 1:
        raise UsageError("--top must be at least 1")
    s = text_stats([resolve_source(x) for x in sources], glob, encoding)
    if as_json:
        emit_json(s.to_dict(top), indent=2)
        return
    _print_stats(s, top)


def _print_stats(s, top: int) -> None:
    from rich.table import Table
    from rich.text import Text

    from charrnn.util.showtext import show_char, visible

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    rows = [("files", f"{s.files:,}"), ("bytes", f"{s.bytes:,}"), ("characters", f"{s.characters:,}"),
            ("lines", f"{s.lines:,}"), ("vocabulary", f"{s.vocabulary:,} distinct characters")]
    # show_char makes a character visible ('e', space, U+202E); on a terminal a no-break space keeps each
    # pair on one line when the row wraps (piped, rows never wrap)
    joint = "\u00a0" if sys.stdout.isatty() else " "
    for label, chars in (("commonest", s.commonest(top)), ("rarest", s.rarest(top))):
        rows.append((label, "  ".join(f"{show_char(c)}{joint}{n:,}" for c, n in chars)))
    rows.append(("oddities", visible("\n".join(s.oddities()), keep="\n") or "none"))
    for label, value in rows:
        table.add_row(label, Text(value))  # Text: "[" is shown, never read as markup
    out_console().print(table)
