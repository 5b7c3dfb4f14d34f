"""The ASGI middleware around the app: one line per request on stderr, and the headers every response carries.

    127.0.0.1:50412 POST /v1/completions 200 0.84s 300 chars

The line is written when the response is complete (for a stream: when it ends), so it
gives the status, the whole time and the characters written; "(client left)" marks a
request whose client went away first.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

# The playground's pages may run only their own script and talk only to this server.
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                                 b"connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
]


def stderr_line(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


class RequestLog:
    """Wraps the app: adds SECURITY_HEADERS to every response and calls `log` with a line per request."""

    def __init__(self, app, log: Callable[[str], None]):
        self.app, self.log = app, log
        self.state = app.state  # (tests reach the batcher and the slots through it)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [0]

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            client = scope.get("client") or ("-", 0)
            chars = (scope.get("state") or {}).get("chars")
            path = scope.get("path", "").encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
            line = f"{client[0]}:{client[1]} {scope.get('method')} {path[:200]} {status[0] or '-'} " \
                   f"{time.perf_counter() - start:.2f}s"
            self.log(line + (f" {chars[0]} chars" if chars else "") + (" (client left)" if status[0] == 499 else ""))
