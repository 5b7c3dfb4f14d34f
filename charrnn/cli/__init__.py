"""The `charrnn` command line: a thin Typer layer over the library (each command registers itself on `app`,
in the order `charrnn -h` lists them)."""

from __future__ import annotations

from charrnn.cli.common import app
from charrnn.cli import train, sample, beam, corpus, checkpoints, inspect, plot, bench, chat, serve  # noqa: F401


def main() -> None:
    app()
