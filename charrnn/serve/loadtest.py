"""A bounded load test of a running `charrnn serve`: N concurrent streaming clients, measured.

Every client sends one streaming completion and reads its events to `data: [DONE]`. A level's
N clients start together and its round ends when the last is done; levels take turns, `rounds` times:

    total chars/s        characters all clients received / the round's wall time (best round)
    per-client chars/s   a client's characters / its own time from request to [DONE] (mean)
    first char p50, p99  time from sending the request to the first character, over every client

The clients are plain asyncio streams speaking HTTP/1.1 (no HTTP library: on a 2-core machine
every cycle a client spends is taken from the server), to loopback addresses only.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

import numpy as np

from charrnn.serve.hosts import LOOPBACK


@dataclass
class Client:
    chars: int  # characters received
    first: float  # seconds from sending the request to the first character
    seconds: float  # seconds from sending the request to [DONE]


@dataclass
class Level:
    clients: int
    total_chars_per_sec: float  # all clients together, best round
    per_client_chars_per_sec: float  # mean over clients of each one's own rate
    first_char_p50: float  # seconds
    first_char_p99: float
    rounds: int


async def read_events(reader: asyncio.StreamReader):
    """The `data:` payloads of a chunked text/event-stream body, as they arrive."""
    buffer = b""
    while True:
        size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
        if size == 0:
            return
        buffer += (await reader.readexactly(size + 2))[:-2]
        while b"\n\n" in buffer:
            event, buffer = buffer.split(b"\n\n", 1)
            if event.startswith(b"data: "):
                yield event[6:]


async def stream_one(host: str, port: int, body: bytes) -> Client:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        t0 = time.perf_counter()
        writer.write(b"POST /v1/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (host.encode(), len(body), body))
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            status = head.splitlines()[0].decode(errors="replace")
            raise RuntimeError(f"the server answered {status}")
        chars, first = 0, None
        async for data in read_events(reader):
            if data == b"[DONE]":
                break
            got = sum(len(c["text"]) for c in json.loads(data)["choices"])
            if got and first is None:
                first = time.perf_counter() - t0
            chars += got
        return Client(chars, first if first is not None else float("nan"), time.perf_counter() - t0)
    finally:
        writer.close()


async def run_round(host: str, port: int, clients: int, chars: int, prompt: str = "\n") -> tuple[float, list[Client]]:
    """One round: `clients` streaming requests of `chars` characters started together -> (seconds, clients)."""
    if host not in LOOPBACK:
        raise ValueError("the load test only targets this machine (127.0.0.1, localhost or ::1)")
    body = json.dumps({"prompt": prompt, "max_tokens": chars, "stream": True, "temperature": 1.0}).encode()
    t0 = time.perf_counter()
    results = await asyncio.wait_for(asyncio.gather(*(stream_one(host, port, body) for _ in range(clients))), timeout=120)
    wall = time.perf_counter() - t0
    if any(r.chars != chars for r in results):
        raise RuntimeError(f"a client got {min(r.chars for r in results)} of {chars} characters")
    return wall, results


async def measure(host: str, port: int, levels: tuple[int, ...], chars: int, rounds: int) -> list[Level]:
    """Every level `rounds` times, the levels taking turns round by round (so a machine that gets busier
    or quieter during the test affects them alike); each level's best round counts."""
    runs: dict[int, list[tuple[float, list[Client]]]] = {n: [] for n in levels}
    for _ in range(rounds):
        for n in levels:
            runs[n].append(await run_round(host, port, n, chars))
    return [summarize(n, runs[n]) for n in levels]


def summarize(clients: int, runs: list[tuple[float, list[Client]]]) -> Level:
    everyone = [c for _, results in runs for c in results]
    firsts = [c.first for c in everyone]
    return Level(clients, max(sum(c.chars for c in results) / wall for wall, results in runs),
                 float(np.mean([c.chars / c.seconds for c in everyone])),
                 float(np.percentile(firsts, 50)), float(np.percentile(firsts, 99)), len(runs))
