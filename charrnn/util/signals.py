"""Ctrl-C and SIGTERM: during training, finish the step, save, then stop; elsewhere, clean up and stop.

    with StopSignals() as stop:
        while not stop.received:
            train_step()
    save()

The first SIGINT or SIGTERM is only recorded (`received` holds its name); a second Ctrl-C
raises KeyboardInterrupt at once. Outside the main thread (where Python allows no handlers)
it does nothing.

Outside training, `terminate_cleanly()` (every command runs inside it) turns SIGTERM into
SystemExit(143) instead of an instant death that runs no clean-up: a download or a cache
encoding killed by SIGTERM deletes its temporary file, as Ctrl-C does. What SIGKILL leaves is
swept by the next run (`files.sweep_stale_temps`).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict = {}

    @property
    def received(self) -> str | None:
        """'SIGINT' or 'SIGTERM' once one arrived, else None."""
        return None if self.signum is None else signal.Signals(self.signum).name

    def _handle(self, signum, _frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.signum = signum

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}


def _exit_143(signum, _frame) -> None:
    raise SystemExit(128 + signum)


@contextmanager
def terminate_cleanly() -> Iterator[None]:
    """Inside the block, SIGTERM raises SystemExit(143), so `finally` and `except BaseException` clean-ups run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _exit_143)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
