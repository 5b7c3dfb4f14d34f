"""A live `charrnn serve` app for tests: its uvicorn server in a thread, on 127.0.0.1 and a free port."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def live_server(checkpoint: Path, **config):
    """Yield (base_url, app, log lines) for `checkpoint` served with ServeConfig(**config)."""
    pytest.importorskip("uvicorn", reason="needs the serve extra: pip install 'charrnn[serve]'")
    from charrnn.training.checkpoint import load_model
    from charrnn.cli.serve import listen
    from charrnn.serve.app import ServeConfig, create_app
    from charrnn.serve.connections import uvicorn_server

    lines: list[str] = []
    app = create_app(load_model(checkpoint), ServeConfig(model_id="parrot", log=lines.append, **config))
    sock = listen("127.0.0.1", 0)
    server = uvicorn_server(app, app.state.config.limits, app.log, graceful=1)  # as `charrnn serve` runs it
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", app, lines
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def wait_until(condition, timeout: float = 5.0, every: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return condition()
