"""The server's edges: who may ask (Host, Origin), how much a request head may be, how long a client may
take, how many may wait, and that whatever a client does ends as one escaped log line, never a traceback."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import time

import pytest

pytest.importorskip("starlette", reason="needs the serve extra: pip install 'charrnn[serve]'")
httpx = pytest.importorskip("httpx")

from charrnn.serve.connections import Limits  # noqa: E402
from charrnn.serve.hosts import Hosts, split_host  # noqa: E402
from charrnn.serve.requestlog import RequestLog  # noqa: E402
from tests.serving import live_server, wait_until  # noqa: E402

GOOD = json.dumps({"prompt": "the", "max_tokens": 5}).encode()


@pytest.fixture(scope="module")
def served(parrot_run):
    limits = Limits(request_timeout=0.5, max_connections=40)
    with live_server(parrot_run / "best.pt", limits=limits) as (url, app, lines):
        yield url, app, lines


def address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def exchange(url: str, data: bytes, timeout: float = 30) -> bytes:
    """Send raw bytes on a fresh connection; everything the server sends back until it closes (or `timeout`)."""
    with socket.create_connection(address(url), timeout=timeout) as s:
        s.sendall(data)
        got = b""
        try:
            while chunk := s.recv(65536):
                got += chunk
                if b"\r\n\r\n" in got and b"connection: close" not in got.lower():
                    head, _, body = got.partition(b"\r\n\r\n")
                    length = [int(h.split(b":")[1]) for h in head.lower().split(b"\r\n")
                              if h.startswith(b"content-length")]
                    if length and len(body) >= length[0]:
                        break
        except (ConnectionResetError, TimeoutError):
            pass
        return got


def status(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else 0


def request(url: str, head: str, body: bytes = b"") -> bytes:
    host, port = address(url)
    return exchange(url, head.replace("HOST", f"{host}:{port}").replace("\n", "\r\n").encode() + b"\r\n" + body)


def closed_by_server(sock: socket.socket, timeout: float = 5) -> bytes | None:
    """What the server sent before closing `sock`, or None if it is still open after `timeout` seconds."""
    sock.settimeout(timeout)
    got = b""
    try:
        while chunk := sock.recv(65536):
            got += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return got


def lines_after(lines: list[str], before: int, needle: str) -> list[str]:
    wait_until(lambda: any(needle in x for x in lines[before:]))
    return [x for x in lines[before:] if needle in x]


# ---- the request log --------------------------------------------------------------------------------

def test_control_characters_in_a_path_are_shown_never_written(served):
    url, _, lines = served
    before = len(lines)
    forged = request(url, "GET /%0d%0a127.0.0.1:1%20GET%20/admin%20200%200.00s%20FORGED HTTP/1.1\nHost: HOST\n")
    clear = request(url, "GET /%1b%5b2J%1b%5d0;pwned%07%c2%9b HTTP/1.1\nHost: HOST\n")
    assert status(forged) == status(clear) == 404
    logged = lines_after(lines, before, "pwned")
    mine = [x for x in lines[before:] if "FORGED" in x or "pwned" in x]
    assert len(mine) == 2 and logged
    assert all(not any(c in x for c in "\r\n\x1b\x07\x9b") for x in lines)
    assert "GET /\\x0d\\x0a127.0.0.1:1 GET /admin 200 0.00s FORGED 404 " in mine[0]
    assert "/\\x1b[2J\\x1b]0;pwned\\x07\\x9b 404 " in mine[1]


def test_an_exception_is_one_escaped_line_and_a_json_500():
    class Boom:
        state = None

        async def __call__(self, scope, receive, send):
            raise OSError("the disk went away\x1b[2J")

    lines, sent = [], []

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "GET", "path": "/health", "headers": [(b"host", b"127.0.0.1:8000")],
             "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 5000)}
    asyncio.run(RequestLog(Boom(), lines.append, Hosts.serving())(scope, None, send))
    assert sent[0]["status"] == 500 and json.loads(sent[1]["body"])["error"]["type"] == "server_error"
    assert len(lines) == 1 and "\x1b" not in lines[0]
    assert lines[0].startswith("127.0.0.1:5000 GET /health 500 ")
    assert "(error: OSError: the disk went away\\x1b[2J at test_serve_edges.py:" in lines[0]


def test_a_client_that_leaves_mid_upload_is_one_line_not_a_500(served):
    url, app, lines = served
    before = len(lines)
    host, port = address(url)
    with socket.create_connection((host, port)) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: %s:%d\r\nContent-Length: 100000\r\n\r\n%s"
                  % (host.encode(), port, b"x" * 1000))
        time.sleep(0.1)
    left = lines_after(lines, before, "POST /v1/completions")
    assert len(left) == 1 and " 499 " in left[0] and left[0].endswith("(client left)")
    assert app.state.slots.busy == 0


def test_the_model_card_outlives_its_run_folder(parrot_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(parrot_run, run)
    with live_server(run / "best.pt") as (url, _, lines):
        card = httpx.get(url + "/v1/models").json()
        shutil.rmtree(run)
        assert httpx.get(url + "/v1/models").json() == card
        assert httpx.get(url + "/v1/models/parrot").status_code == 200
        assert httpx.post(url + "/v1/completions", json={"prompt": "the", "max_tokens": 5}).status_code == 200
    assert not any(" 500 " in x for x in lines)


# ---- who may ask ------------------------------------------------------------------------------------

def test_host_names_are_parsed_strictly():
    assert split_host("LocalHost.:8000") == ("localhost", 8000)
    assert split_host("[::1]:80") == ("::1", 80) and split_host("[::1]") == ("::1", None)
    assert split_host("example.com") == ("example.com", None)
    for bad in ("", ":80", "a b", "x:y", "x:99999999", "[::1", "[::1]x", "evil\x1b", "a:1:2", "é.example"):
        assert split_host(bad) is None, bad


def test_only_the_names_it_serves_under_on_its_port():
    hosts = Hosts.serving("0.0.0.0", ("Box.LAN",))

    def check(*headers, port=8000):
        refused = hosts.check([(k.encode(), v.encode()) for k, v in headers], port)
        return refused.status if refused else 200

    for name in ("localhost", "127.0.0.1", "[::1]", "box.lan", "box.lan.", "LOCALHOST:8000", "[::1]:8000"):
        assert check(("host", name)) == 200, name
    assert check(("host", "evil.example")) == 421 and check(("host", "127.0.0.1:8001")) == 421
    assert check() == 400 and check(("host", "a"), ("host", "localhost")) == 400 and check(("host", "a b")) == 400
    assert Hosts.serving().check([(b"host", b"box.lan")], 8000).status == 421  # only with --allow-host
    assert check(("host", "localhost:8000"), ("origin", "http://localhost:8000")) == 200
    assert check(("host", "localhost"), ("origin", "http://localhost"), port=80) == 200
    for origin in ("http://evil.example", "http://localhost:3000", "null", "file://", "http://127.0.0.1"):
        assert check(("host", "localhost:8000"), ("origin", origin)) == 403, origin
    assert check(("host", "box.lan"), ("origin", "https://box.lan")) == 200  # the playground through a proxy
    assert check(("host", "box.lan"), ("origin", "https://localhost")) == 403
    assert check(("host", "localhost:8000"), ("sec-fetch-site", "cross-site"), ("sec-fetch-mode", "no-cors")) == 403
    assert check(("host", "localhost:8000"), ("sec-fetch-site", "cross-site"), ("sec-fetch-mode", "navigate")) == 200
    assert check(("host", "localhost:8000"), ("sec-fetch-site", "same-origin"), ("sec-fetch-mode", "cors")) == 200


def test_dns_rebinding_and_cross_site_pages_get_no_text(served):
    url, _, lines = served
    host, port = address(url)
    before = len(lines)
    post = "POST /v1/completions HTTP/1.1\nHost: {}\nContent-Type: text/plain\nContent-Length: {}\n{}"
    rebound = request(url, post.format(f"evil.example:{port}", len(GOOD), f"Origin: http://evil.example:{port}\n"),
                      GOOD)
    assert status(rebound) == 421 and b"choices" not in rebound and b"misdirected_request" in rebound
    cross = request(url, post.format("HOST", len(GOOD), "Origin: http://evil.example\n"), GOOD)
    assert status(cross) == 403 and b"choices" not in cross and b"cross_origin" in cross
    image = request(url, "GET /health HTTP/1.1\nHost: HOST\nSec-Fetch-Site: cross-site\nSec-Fetch-Mode: no-cors\n")
    assert status(image) == 403
    mine = [x for x in lines_after(lines, before, "cross_origin")]
    assert len(mine) == 2 and "(misdirected_request)" in lines[before]
    own = httpx.post(url + "/v1/completions", content=GOOD, headers={"Origin": url, "Sec-Fetch-Site": "same-origin"})
    assert own.status_code == 200 and own.json()["choices"]  # the playground's own requests


def test_the_command_line_adds_names_and_checks_the_chat_format(tiny_run):
    from typer.testing import CliRunner

    from charrnn.cli import app
    from charrnn.cli.serve import serve_config

    config = serve_config(1, 10, "fp32", "lines", "0.0.0.0", ["box.lan", "10.0.0.7"])
    assert config.allow_hosts == ("box.lan", "10.0.0.7") and config.chat_format == "lines"
    result = CliRunner().invoke(app, ["serve", str(tiny_run), "--chat-format", "{name}: {content}"])
    assert result.exit_code != 0 and "--chat-format must end a turn" in result.output
    assert "chat_format" not in result.output


# ---- the connections --------------------------------------------------------------------------------

def test_a_huge_head_is_refused_at_once(served):
    url, _, lines = served
    before = len(lines)
    one_read = request(url, "GET /health HTTP/1.1\nHost: HOST\nX-Big: " + "a" * 70_000 + "\n")
    assert status(one_read) == 431 and b"64 KB" in one_read
    host, port = address(url)
    sent = 0
    with socket.create_connection((host, port)) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: %s:%d\r\nX-Big: " % (host.encode(), port))
        try:
            for _ in range(100 * 16):  # up to 100 MB
                s.sendall(b"a" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert closed_by_server(s) is not None
    assert sent < 20 << 20  # refused long before 100 MB had gone
    assert len(lines_after(lines, before, " 431 (the request line and headers are over 64 KB)")) == 2


def test_too_many_header_lines_are_refused(served):
    url, _, _ = served
    many = "".join(f"X-{i}: {i}\n" for i in range(100))
    assert status(request(url, "GET /health HTTP/1.1\nHost: HOST\n" + many)) == 431
    assert status(request(url, "GET /health HTTP/1.1\nHost: HOST\n" + many[: many.index("X-98:")])) == 200


def test_idle_and_slow_connections_are_closed(served):
    url, _, lines = served
    host, port = address(url)
    idle = socket.create_connection((host, port))
    assert closed_by_server(idle) == b""  # nothing sent: closed without a word
    before = len(lines)
    slow = socket.create_connection((host, port))
    closed = None
    for byte in b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 200:  # one byte at a time
        try:
            slow.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            break
        closed = closed_by_server(slow, timeout=0.05)
        if closed is not None:
            break
    assert closed is not None and status(closed) == 408  # bytes kept coming: the deadline held anyway
    assert lines_after(lines, before, " 408 (the request did not arrive within 0.5 s)")
    kept = socket.create_connection((host, port))
    kept.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n")
    answer = closed_by_server(kept)  # the answer, kept alive, then idle: closed
    assert status(answer) == 200 and answer.endswith(b"}") and b"connection: close" not in answer
    for s in (idle, slow, kept):
        s.close()


def test_idle_connections_never_hold_new_ones_off(parrot_run):
    with live_server(parrot_run / "best.pt", limits=Limits(request_timeout=60, max_connections=16)) as (url, _, _):
        host, port = address(url)
        idle = [socket.create_connection((host, port)) for _ in range(60)]
        try:
            assert httpx.get(url + "/health").status_code == 200
            assert all(closed_by_server(s) == b"" for s in idle[:40])  # the longest idle made room
            assert wait_until(lambda: httpx.get(url + "/health").status_code == 200)
        finally:
            for s in idle:
                s.close()
