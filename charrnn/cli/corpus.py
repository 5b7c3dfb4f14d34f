"""`charrnn corpus ...`: the catalog of named corpora."""

from __future__ import annotations

import typer

from charrnn.cli.common import app, guarded

corpus_app = typer.Typer(help="Named corpora: list and fetch them.", no_args_is_help=True,
                         context_settings={"help_option_names": ["-h", "--help"]},
                         epilog="[bold]Examples[/]\n\n  charrnn corpus list\n  charrnn corpus get shakespeare\n  charrnn train shakespeare --preset tiny")
app.add_typer(corpus_app, name="corpus")


@corpus_app.command("list", epilog="[bold]Examples[/]\n\n  charrnn corpus list")
@guarded
def list_() -> None:
    """Show the catalog: name, size, license, and whether it is fetched."""
    from rich.table import Table

    from charrnn.catalog import is_fetched, load_catalog, local_path
    from charrnn.console import err_console

    table = Table(title="charrnn corpora", title_justify="left")
    for col in ("name", "size", "license", "fetched", "description"):
        table.add_column(col, justify="right" if col == "size" else "left")
    for e in load_catalog().values():
        table.add_row(e.name, f"{e.bytes / 1e6:.1f} MB", e.license,
                      str(local_path(e.name)) if is_fetched(e) else "-", e.description)
    err_console().print(table)


@corpus_app.command("get", epilog="[bold]Examples[/]\n\n  charrnn corpus get shakespeare\n  charrnn corpus get --all --mirror ../shared/corpora")
@guarded
def get(
    names: list[str] = typer.Argument(None, help="Catalog names.", show_default=False),
    all_: bool = typer.Option(False, "--all", help="Fetch every corpus in the catalog."),
    mirror: str = typer.Option(None, "--mirror", help="Copy from this folder instead of downloading (or set CHARRNN_MIRROR).", show_default=False),
    force: bool = typer.Option(False, "--force", help="Fetch again even if present."),
) -> None:
    """Download (or copy from a mirror) named corpora, verifying each by sha256."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from charrnn.catalog import fetch, load_catalog
    from charrnn.console import err_console
    from charrnn.errors import UsageError

    names = list(load_catalog()) if all_ else (names or [])
    if not names:
        raise UsageError("name a corpus (see `charrnn corpus list`) or pass --all")
    with Progress("{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=err_console(), transient=True) as progress:
        for name in names:
            task = progress.add_task(name, total=None)
            path = fetch(name, mirror, lambda done, total: progress.update(task, completed=done, total=total), force)
            progress.remove_task(task)
            err_console().print(f"{name}: {path} (sha256 verified)", highlight=False)
