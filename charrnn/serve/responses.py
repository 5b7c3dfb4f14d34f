"""What goes back over HTTP: completion objects in OpenAI's shapes, server-sent events, and a response that
notices a client leaving.

A streamed completion is a series of server-sent events, each `data: <JSON>` and a blank line,
ending with `data: [DONE]` (OpenAI's stream format, which the `openai` client and `curl -N` read):

    /v1/completions        {"object": "text_completion", "choices": [{"index": 0, "text": "Is the",
                            "logprobs": null, "finish_reason": null}], ...}
    /v1/chat/completions   {"object": "chat.completion.chunk", "choices": [{"index": 0,
                            "delta": {"content": "Is the"}, "logprobs": null, "finish_reason": null}], ...}
    ...
    data: [DONE]

(a chat stream's first chunk per choice is its `delta: {"role": "assistant", "content": ""}`; not
streamed, a chat choice is `{"message": {"role": "assistant", "content": ...}}`.) One event carries
all the text a choice produced since the reader last looked, so a slow reader gets fewer, longer
events and never holds up the shared batch.

Log-probabilities (`logprobs`), natural logs under the model's own distribution (`jobs.Scorer`):

    text completion  {"tokens": ["Is", " the"], "token_logprobs": [-0.8, -1.2],
                      "top_logprobs": [{"Is": -0.8, "It": -1.9}, ...], "text_offset": [6, 8]}
    chat             {"content": [{"token": "Is", "logprob": -0.8, "bytes": [73, 115],
                                   "top_logprobs": [{"token": "Is", "logprob": -0.8, "bytes": [73, 115]}, ...]}]}

`text_offset` counts characters from the start of the prompt (OpenAI's legacy meaning). A token of a
byte model that is part of a character is named `bytes:\\xe2` (OpenAI's way); its `bytes` are exact.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import anyio
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send


@dataclass
class Part:
    """What one choice got from the engine since the reader last looked."""

    index: int
    text: str = ""
    scored: list = field(default_factory=list)  # (text offset, token id, logprob, [(id, logprob) ...]) per token
    finish_reason: str | None = None
    extra: dict = field(default_factory=dict)  # beam search: the beam's logprob and bits_per_char
    tokens: int = 0  # tokens the model wrote for the choice (counted once it ends)

    def add(self, other: Part) -> None:
        self.text += other.text
        self.scored += other.scored
        self.finish_reason = other.finish_reason or self.finish_reason
        self.extra.update(other.extra)
        self.tokens += other.tokens


def parts(events: list[tuple]) -> list[Part]:
    """Events of one wake-up -> one Part per choice (its text joined), in the order choices first appear."""
    out: dict[int, Part] = {}
    for event in events:
        if event[0] == "text":
            _, index, text, scored = event
            out.setdefault(index, Part(index)).add(Part(index, text, scored or []))
        elif event[0] == "end":
            _, index, reason, extra, tokens = event
            out.setdefault(index, Part(index)).add(Part(index, finish_reason=reason, extra=extra, tokens=tokens))
    return list(out.values())


class TokenNames:
    """What a token id is called in a response (its text; `bytes:\\xNN` for a byte that is part of a character)."""

    def __init__(self, vocab):
        self.vocab, self.known = vocab, {}

    def name(self, i: int) -> tuple[str, list[int]]:
        """(the token's name, its bytes)."""
        if i not in self.known:
            piece = self.vocab.pieces[i]
            text = self.vocab.from_surface(piece)
            if self.vocab.surface(text) == piece:
                self.known[i] = text, list(text.encode("utf-8"))
            else:  # (only a byte vocabulary has pieces that spell no text: chr(byte))
                raw = piece.encode("latin-1")
                self.known[i] = "bytes:" + "".join(f"\\x{b:02x}" for b in raw), list(raw)
        return self.known[i]


class Shape:
    """The objects of one completion, in OpenAI's shape for its route: text completion or chat."""

    def __init__(self, model: str, chat: bool, names: TokenNames, logprobs: int | None, prompts: list[str],
                 echo: bool = False):
        self.id = ("chatcmpl-" if chat else "cmpl-") + secrets.token_hex(12)
        self.created, self.model, self.chat, self.names = int(time.time()), model, chat, names
        self.logprobs, self.prompts, self.echo = logprobs, prompts, echo  # prompts: each choice's

    def chunk(self, choices: list[dict], stream: bool = True, **extra) -> dict:
        kind = ("chat.completion.chunk" if stream else "chat.completion") if self.chat else "text_completion"
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model, "choices": choices,
                **extra}

    def opening(self, index: int) -> dict | None:
        """A stream's first chunk for a choice: the role of a chat answer, or the prompt of an echo; or None."""
        if self.chat:
            return self.chunk([self.choice(Part(index), stream=True, delta={"role": "assistant", "content": ""})])
        return self.chunk([self.choice(Part(index, self.prompts[index]))]) if self.echo else None

    def choice(self, part: Part, stream: bool = False, delta: dict | None = None) -> dict:
        logprobs = self.scores(part) if self.logprobs is not None and (part.scored or not stream) else None
        head = {"index": part.index}
        if not self.chat:
            head["text"] = (self.prompts[part.index] if self.echo and not stream else "") + part.text
        elif stream:
            head["delta"] = delta if delta is not None else {"content": part.text} if part.text else {}
        else:
            head["message"] = {"role": "assistant", "content": part.text}
        return {**head, "logprobs": logprobs, "finish_reason": part.finish_reason, **part.extra}

    def scores(self, part: Part) -> dict:
        """A choice's logprobs object, for the tokens in `part`."""
        named = self.names.name
        if self.chat:
            def entry(i: int, lp: float) -> dict:
                token, raw = named(i)
                return {"token": token, "logprob": lp, "bytes": raw}
            return {"content": [{**entry(i, lp), "top_logprobs": [entry(j, x) for j, x in top]}
                                for _, i, lp, top in part.scored]}
        start = len(self.prompts[part.index])
        return {"tokens": [named(i)[0] for _, i, _, _ in part.scored],
                "token_logprobs": [lp for _, _, lp, _ in part.scored],
                "top_logprobs": [{named(j)[0]: x for j, x in [*top, (i, lp)]} for _, i, lp, top in part.scored],
                "text_offset": [start + offset for offset, _, _, _ in part.scored]}


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def sse(data: dict | str) -> bytes:
    """One server-sent event."""
    body = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {body}\n\n".encode()


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
