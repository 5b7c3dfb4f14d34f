"""The `charrnn` command line: a thin Typer layer over the library."""

from __future__ import annotations

from charrnn.cli.common import app

# each command registers itself on `app` when its module is imported; `charrnn -h` lists them in this order
from charrnn.cli import train, sample, beam, corpus, checkpoints, inspect, plot, bench, chat, serve  # noqa: F401


def main() -> None:
    app()
