"""The `charrnn` command line: a thin Typer layer over the library.

Each command lives in its own module and registers itself on `app` when imported; this
module only assembles them. Errors are mapped to exit codes by `common.guarded`.
"""

from __future__ import annotations

from charrnn.cli.common import app
from charrnn.cli import (  # noqa: F401  (importing a module registers its commands)
    train,
    sample,
    beam,
    corpus,
    checkpoints,
    inspect,
    plot,
    bench,
    chat,
    serve,
)


def main() -> None:
    app()
