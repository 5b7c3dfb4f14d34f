"""The `charrnn` command line: a thin Typer layer over the library.

Each command lives in its own module and registers itself on `app`; this module only
assembles them and maps errors to exit codes (see `common.guarded`).
"""

from __future__ import annotations

from charrnn.cli.common import app
from charrnn.cli import bench as _bench  # noqa: F401  (registers commands)
from charrnn.cli import corpus as _corpus  # noqa: F401
from charrnn.cli import sample as _sample  # noqa: F401
from charrnn.cli import train as _train  # noqa: F401


def main() -> None:
    app()
