"""The HTTP connections under the app: bounded request heads, a deadline for each request, room for new clients.

uvicorn's httptools protocol (its fastest; the HTTP side is what limits many streaming users on
a small machine) with the bounds it lacks, each refusal one line in the request log:

    head       the request line and headers: at most `max_head` bytes and `max_headers` lines, else
               431 and the connection closed (uvicorn reads a head of any size: four 100 MB headers
               took half a gigabyte and two minutes, then got 200)
    deadline   a request's head must be complete `request_timeout` seconds after the connection opened,
               or after the last response on it (keep-alive), however its bytes trickle in: else 408
               when some of a head came, a quiet close when nothing did (an idle connection)
    room       at most `max_connections` open: one more closes the connection idle the longest (idle:
               no request of it being answered), so idle or slow clients never hold new ones off

A request's body has the same deadline once its head is in (`app.read_body`); streaming answers
run as long as their text takes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import ClassVar

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from charrnn.serve.schema import ApiError

REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


@dataclass(frozen=True)
class Limits:
    max_head: int = 64 * 1024  # bytes of a request line and headers
    max_headers: int = 100  # header lines
    request_timeout: float = 5.0  # seconds for a request's head (and then its body) to arrive
    max_connections: int = 1024  # open at once; one more closes the longest idle


def open_files_limit() -> int | None:
    """This process's limit on open files (each connection is one), where the platform has one."""
    try:
        import resource
    except ImportError:  # (Windows)
        return None
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


class Refused(Exception):
    """Raised in a parser callback to stop parsing a head that is refused."""


class EdgeProtocol(HttpToolsProtocol):
    """One connection (uvicorn makes one per client); `protocol_for` gives the class its limits and log."""

    limits: ClassVar[Limits]
    log: ClassVar[Callable[[str], None]]

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self.in_head = False  # between the first byte of a request and the end of its headers
        self.head_bytes = 0  # bytes of the head so far, counted from the chunk after its first
        self.began_now = False  # the head began in the chunk being parsed
        self.refused: tuple[int, str] | None = None  # why the head being parsed is refused
        self.idle_since: float | None = time.monotonic()  # None while a request of it is answered
        self.deadline = None
        self.arm()
        self.make_room()

    def make_room(self) -> None:
        """Over `max_connections`: close the connection idle the longest (none idle: every one is answering)."""
        if len(self.connections) <= self.limits.max_connections:
            return
        idle = [c for c in self.connections if c is not self and getattr(c, "idle_since", None) is not None]
        if idle:
            min(idle, key=lambda c: c.idle_since).transport.close()

    def arm(self) -> None:
        self.disarm()
        self.deadline = self.loop.call_later(self.limits.request_timeout, self.too_slow)

    def disarm(self) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None

    def too_slow(self) -> None:
        self.deadline = None
        if self.transport.is_closing():
            return
        if self.in_head:
            self.refuse(408, f"the request did not arrive within {self.limits.request_timeout:g} s")
        else:
            self.transport.close()  # idle: nothing to say

    def refuse(self, status: int, message: str) -> None:
        """Answer `status` with a JSON error (unless a response is being written) and close the connection."""
        answering = self.cycle is not None and not self.cycle.response_complete
        if not answering:
            body = json.dumps(ApiError(status, message).to_dict()).encode()
            self.transport.write(b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                                 b"connection: close\r\n\r\n%s" % (status, REASONS[status], len(body), body))
        self.transport.close()
        client = self.client or ("-", 0)
        self.log(f"{client[0]}:{client[1]} - {status} ({message})")

    # ---- uvicorn's protocol, with the bounds ---------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.began_now = False
        super().data_received(data)
        if self.in_head and not self.began_now and not self.transport.is_closing():
            self.head_bytes += len(data)  # (a head's first chunk is not counted: at most one read, 256 KB)
            if self.head_bytes > self.limits.max_head:
                self.refuse(*self.too_big())

    def too_big(self) -> tuple[int, str]:
        return 431, f"the request line and headers are over {self.limits.max_head // 1024} KB"

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.in_head, self.began_now, self.head_bytes, self.header_lines = True, True, 0, 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_lines += 1
        if self.header_lines > self.limits.max_headers:
            self.refused = (431, f"the request has over {self.limits.max_headers} header lines")
            raise Refused  # stops the parser: uvicorn answers through send_400_response
        super().on_header(name, value)

    def send_400_response(self, msg: str) -> None:
        self.refuse(*(self.refused or (400, "the request is not valid HTTP/1.1")))

    def on_headers_complete(self) -> None:
        self.in_head, self.idle_since = False, None
        self.disarm()
        if len(self.url) + sum(len(k) + len(v) + 4 for k, v in self.headers) > self.limits.max_head:
            self.refused = self.too_big()  # a head that came in one read
            raise Refused
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.timeout_keep_alive_task is not None:  # kept alive, with no request waiting: idle again
            self.idle_since = time.monotonic()
            self.arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm()
        self.idle_since = None
        super().connection_lost(exc)


def protocol_for(limits: Limits, log: Callable[[str], None]) -> type[EdgeProtocol]:
    """The protocol class uvicorn makes each connection with, bound to these limits and this log."""
    most = open_files_limit()
    if most is not None:  # leave files for the model, the logs and the listening socket
        limits = replace(limits, max_connections=min(limits.max_connections, max(16, most - 64)))
    return type("EdgeProtocol", (EdgeProtocol,), {"limits": limits, "log": staticmethod(log)})


def uvicorn_server(app, limits: Limits, log: Callable[[str], None], graceful: float = 3) -> uvicorn.Server:
    """A uvicorn server for the app (`create_app`'s) over `EdgeProtocol` connections; `.run(sockets=[...])` it."""
    return uvicorn.Server(uvicorn.Config(
        app, http=protocol_for(limits, log), ws="none", lifespan="on", log_level="error", access_log=False,
        timeout_keep_alive=limits.request_timeout, timeout_graceful_shutdown=graceful))
