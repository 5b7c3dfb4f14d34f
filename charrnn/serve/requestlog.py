"""The ASGI middleware around the app: who may ask (`hosts`), the headers every response carries, one line per request.

    127.0.0.1:50412 POST /v1/completions 200 0.84s 300 characters
    127.0.0.1:50413 GET /\\x1b[2J 404 0.00s
    127.0.0.1:50414 POST /v1/completions 421 0.00s (misdirected_request)
    127.0.0.1:50415 POST /v1/completions 499 0.31s (client left)
    127.0.0.1:50416 GET /v1/models 500 0.00s (error: OSError: ... at app.py:123)

The line is written when the response is complete (for a stream: when it ends), so it gives
the status, the whole time and the tokens written. Everything in it passes one escaping function
(`util.showtext.visible`): a path, a Host or an error message is data from the client, and its
control characters (CR, LF, ESC ...) are shown as escapes, never written to the operator's
terminal. A request that fails is this one line too, never a traceback.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from charrnn.serve.hosts import Hosts
from charrnn.serve.schema import ApiError
from charrnn.util.showtext import visible

# The playground's pages may run only their own script and talk only to this server.
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                 b"connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
]


def stderr_line(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def failure(e: BaseException) -> str:
    """An exception in one line: its type, message and where it was raised."""
    frames = traceback.extract_tb(e.__traceback__)
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    return f"error: {type(e).__name__}: {str(e)[:300]}{where}"


async def send_error(send, error: ApiError) -> None:
    body = json.dumps(error.to_dict()).encode()
    await send({"type": "http.response.start", "status": error.status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class RequestLog:
    """Wraps the app: refuses requests for names it does not serve, adds SECURITY_HEADERS to every response,
    and writes a line per request through `log` (escaped)."""

    def __init__(self, app, log: Callable[[str], None], hosts: Hosts):
        self.app, self.hosts = app, hosts
        self.log = lambda line: log(visible(line))  # each line made visible: the one way anything reaches the log
        self.state = app.state  # (tests reach the batcher and the slots through it)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status, notes = time.perf_counter(), [0], []

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        try:
            refused = self.hosts.check(scope["headers"], (scope.get("server") or (None, None))[1])
            if refused is not None:
                notes.append(f"({refused.code})")
                await send_error(send_with_headers, refused)
            else:
                await self.app(scope, receive, send_with_headers)
        except Exception as e:  # one line, no traceback; the client gets a 500 if nothing was sent yet
            notes.append(f"({failure(e)})")
            if not status[0]:
                await send_error(send_with_headers, ApiError(500, "internal server error", kind="server_error"))
        finally:
            self.log(self.line(scope, status[0], time.perf_counter() - start, notes))

    @staticmethod
    def line(scope, status: int, seconds: float, notes: list[str]) -> str:
        client = scope.get("client") or ("-", 0)
        written = (scope.get("state") or {}).get("written")  # [tokens, unit], set by a completion
        path = scope.get("path", "")
        words = [f"{client[0]}:{client[1]}", str(scope.get("method")), path[:200] + ("..." if len(path) > 200 else ""),
                 str(status or "-"), f"{seconds:.2f}s"]
        if written and written[0]:
            words.append(f"{written[0]} {written[1]}")
        if status == 499:
            notes.append("(client left)")
        return " ".join(words + notes)
