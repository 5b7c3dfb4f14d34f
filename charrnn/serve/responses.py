"""What goes back over HTTP: completion objects, server-sent events, and a response that notices a client leaving.

A streamed completion is a series of server-sent events, each `data: <JSON>` and a blank
line, ending with `data: [DONE]` (OpenAI's stream format, which the `openai` client and
`curl -N` read):

    data: {"id": "cmpl-...", "object": "text_completion", "created": 1764000000, "model": "shakespeare",
           "choices": [{"index": 0, "text": "Is the", "logprobs": null, "finish_reason": null}]}
    ...
    data: {... "choices": [{"index": 0, "text": "", "logprobs": null, "finish_reason": "length"}]}
    data: [DONE]

One event carries all the text a choice produced since the reader last looked, so a slow
reader gets fewer, longer events and never holds up the shared batch.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator, Callable

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send


class Head:
    """The fields every chunk and response of one completion shares."""

    def __init__(self, model: str):
        self.id, self.created, self.model = "cmpl-" + secrets.token_hex(12), int(time.time()), model

    def chunk(self, choices: list[dict], **extra) -> dict:
        return {"id": self.id, "object": "text_completion", "created": self.created, "model": self.model,
                "choices": choices, **extra}


def choice(index: int, text: str, finish_reason: str | None = None, extra: dict | None = None) -> dict:
    return {"index": index, "text": text, "logprobs": None, "finish_reason": finish_reason, **(extra or {})}


def usage(prompt_chars: int, completion_chars: int) -> dict:
    return {"prompt_tokens": prompt_chars, "completion_tokens": completion_chars,
            "total_tokens": prompt_chars + completion_chars}


def sse(data: dict | str) -> bytes:
    """One server-sent event."""
    body = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {body}\n\n".encode()


def group(events: list[tuple]) -> list[dict]:
    """Events of one wake-up -> one choice dict per choice (text joined), in the order choices first appear."""
    out: dict[int, dict] = {}
    for event in events:
        if event[0] == "text":
            _, index, text = event
            out.setdefault(index, choice(index, ""))["text"] += text
        elif event[0] == "end":
            _, index, reason, extra = event
            entry = out.setdefault(index, choice(index, ""))
            entry["finish_reason"] = reason
            entry.update(extra)
    return list(out.values())


class EventStream(StreamingResponse):
    """A streaming response that listens for the client leaving the whole time, and stops at once.

    (Starlette's own only notices when a write fails, which can be long after the client
    left if nothing is being written.) However the stream ends, finished, failed or
    abandoned, `on_close` runs as it ends: there the request gives up its rows and its slot.
    """

    media_type = "text/event-stream"

    def __init__(self, content: AsyncIterator[bytes], on_close: Callable[[], None]):
        super().__init__(content, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            async with anyio.create_task_group() as tasks:

                async def stream() -> None:
                    try:
                        await self.stream_response(send)
                    except OSError:  # the client went away mid-write
                        pass
                    tasks.cancel_scope.cancel()

                tasks.start_soon(stream)
                await self.listen_for_disconnect(receive)
                tasks.cancel_scope.cancel()
        finally:
            self.on_close()
            with anyio.CancelScope(shield=True):
                await self.body_iterator.aclose()  # a generator left at a `yield` runs its finally now
