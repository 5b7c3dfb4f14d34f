"""The HTTP server: OpenAI-compatible completions and chat, scoring and the playground, over one shared Batcher.

    GET  /                     the playground (static/index.html, static/app.js, static/base.css and style.css)
    GET  /v1/models            the one model served, in OpenAI's list shape, with its card (below)
    POST /v1/completions       OpenAI's completions API; "stream": true streams server-sent events
    POST /v1/chat/completions  OpenAI's chat API: the conversation written as a play (`chat.py`)
    POST /v1/score             per-character surprisal of a text (what `charrnn score` computes)
    GET  /health               status, requests running, rows in the batch

Starlette (FastAPI's own toolkit) on uvicorn, not FastAPI: six routes whose bodies need the
messages of `schema.py`, which pydantic models would not give. A completion's job goes to the
batcher, whose thread writes the text to the job's outbox for the request to send; when the
client leaves, the job is cancelled and its slot given back at once. Around it all,
`requestlog.RequestLog` checks who is asking (`hosts.py`) and logs each request in one line, and
`connections.py` bounds the connections themselves.

The model card (`GET /v1/models`, each entry's "charrnn" object), made once at start (the run
folder may be deleted while the server runs):

    checkpoint, cell, layers, hidden, step, precision    the model served
    tokens       its vocabulary's kind: "char", "word" or "byte"
    unit         what its tokens are, for a person: "characters", "word tokens", "bytes"
                 (`max_tokens` and `usage` count these)
    vocab_size   ids in the vocabulary; vocab: its characters
    prompt       how a line of its training text starts ("First Citizen:"), a prompt it knows;
                 "" when the checkpoint does not say ("\\n" then starts a fresh text)
    chat_format  how /v1/chat/completions writes a conversation ("{name}:\\n{content}\\n\\n")
    max_chars, max_concurrent                          this server's limits per request
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import torch
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from charrnn.export.html import default_prompt
from charrnn.generation.sampling import STEP_PRIME, prime_ids_for, prompt_tokens
from charrnn.serve.chat import ChatFormat, parse_chat
from charrnn.serve.connections import Limits
from charrnn.serve.engine import Batcher
from charrnn.serve.hosts import Hosts
from charrnn.serve.jobs import BeamJob, Outbox, SampleJob
from charrnn.serve.requestlog import RequestLog, stderr_line
from charrnn.serve.responses import EventStream, Part, Shape, TokenNames, parts, sse, usage
from charrnn.serve.schema import ApiError, Completion, parse_completion, parse_json, parse_score
from charrnn.text.vocab import Vocab
from charrnn.training.checkpoint import Loaded
from charrnn.util.showtext import show_chars

STATIC = Path(__file__).parent / "static"


@dataclass
class ServeConfig:
    model_id: str = "charrnn"  # the name /v1/models lists; a request's "model" must be this (or left out)
    max_concurrent: int = 64  # requests generating or scoring at once; more are answered 429
    max_chars: int = 10_000  # per request: prompt characters, tokens written (max_tokens x n), characters scored
    max_body: int = 1_000_000  # bytes in a request body (413 above)
    dtype: torch.dtype = torch.float32  # matrices of the shared step; fp32 writes what `charrnn sample` writes
    stream_interval: float = 0.02  # a stream sends at most one event per this many seconds (the first at once)
    log: Callable[[str], None] = field(default=stderr_line)  # one line per request (each made visible first)
    chat_format: str = "play"  # how /v1/chat/completions writes a conversation (`chat.ChatFormat.parse`)
    host: str = "127.0.0.1"  # the address it listens on: a name it answers to, as loopback's are (`hosts.py`)
    allow_hosts: tuple[str, ...] = ()  # more names it answers to (a name clients reach it by, a proxy's)
    limits: Limits = field(default_factory=Limits)  # of each connection (`connections.py`)


class Slots:
    """At most `most` requests at once: take() one or get a 429; give it back once, whatever happens."""

    def __init__(self, most: int):
        self.most, self.busy = most, 0

    def take(self) -> Callable[[], None]:
        if self.busy >= self.most:
            raise ApiError(429, f"the server is busy: {self.most} requests are running (--max-concurrent); "
                                "try again shortly", kind="rate_limit_error", code="server_busy")
        self.busy += 1
        given_back = False

        def give_back() -> None:
            nonlocal given_back
            if not given_back:
                given_back, self.busy = True, self.busy - 1

        return give_back


def encode_prompt(vocab: Vocab, prompt: str, unk: str, chat: bool = False) -> list[int]:
    """A prompt -> the ids the model reads (as `charrnn sample --prime` reads it), or a 400 naming what is wrong."""
    unknown = vocab.unknown(prompt)
    if unknown and unk == "error":
        what, param = ("the conversation, as the model reads it,", "messages") if chat else ("prompt", "prompt")
        hint = "give the speakers names it can write, " if chat else ""
        raise ApiError(400, f"{what} has {len(unknown)} character(s) the model never saw: {show_chars(unknown)} "
                            f'({hint}remove them, or send "unk": "skip" to drop them)', param,
                       code="unknown_characters")
    if not any(c in vocab for c in prompt):
        raise ApiError(400, "prompt is empty: give the model at least one character to continue "
                            '("\\n" starts a fresh text)' if not prompt else
                            "prompt is empty once the characters the model never saw are dropped", "prompt")
    return prime_ids_for(vocab, prompt, "skip")


async def read_body(request: Request, limit: int, timeout: float) -> dict:
    """The request's JSON body: 413 over `limit` bytes, 408 when it takes over `timeout` seconds to arrive,
    499 when the client leaves while sending it."""
    too_big = ApiError(413, f"the request body is larger than {limit:,} bytes", kind="invalid_request_error")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_big
    chunks, size = [], 0
    try:
        with anyio.fail_after(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise too_big
                chunks.append(chunk)
    except TimeoutError:
        raise ApiError(408, f"the request body did not arrive within {timeout:g} s") from None
    except ClientDisconnect:
        raise ApiError(499, "the client left while sending the request") from None
    return parse_json(b"".join(chunks))


def model_prompt(loaded: Loaded) -> str:
    """A prompt the model knows: how a line of its training text starts (`meta.prompt`), else what the
    exported page offers; "" when nothing it knows is known."""
    prompt = default_prompt(loaded.checkpoint, loaded.vocab)
    return prompt if isinstance(prompt, str) and len(prompt) <= 200 and not loaded.vocab.unknown(prompt) else ""


class Api:
    """The routes' handlers, over one model, its batcher and the request slots (`create_app` mounts them)."""

    def __init__(self, loaded: Loaded, cfg: ServeConfig):
        self.loaded, self.cfg = loaded, cfg
        self.model, self.vocab = loaded.model.eval(), loaded.vocab
        self.device = self.model.head.weight.device
        self.batcher, self.slots = Batcher(self.model, cfg.dtype), Slots(cfg.max_concurrent)
        self.chat_format = ChatFormat.parse(cfg.chat_format)  # (a bad one is refused before the server starts)
        self.names = TokenNames(self.vocab)
        self.card = self.model_card()  # made now: the run folder may be gone by the time it is asked for

    def check_model(self, name: str | None) -> None:
        if name is not None and name != self.cfg.model_id:
            raise ApiError(404, f"model {name[:80]!r} does not exist: this server serves {self.cfg.model_id!r} "
                                "(GET /v1/models)", "model", code="model_not_found")

    def model_card(self) -> dict:
        m, cfg, loaded = self.model.config, self.cfg, self.loaded
        return {"id": cfg.model_id, "object": "model", "created": int(loaded.path.stat().st_mtime),
                "owned_by": "charrnn",
                "charrnn": {"checkpoint": loaded.path.name, "cell": m.cell, "layers": m.layers, "hidden": m.hidden,
                            "vocab_size": m.vocab_size, "tokens": self.vocab.kind, "unit": self.vocab.unit,
                            "vocab": self.vocab.chars, "prompt": model_prompt(loaded),
                            "chat_format": self.chat_format.template, "max_chars": cfg.max_chars,
                            "max_concurrent": cfg.max_concurrent, "step": loaded.checkpoint.get("step"),
                            "precision": "bf16" if cfg.dtype == torch.bfloat16 else "fp32"}}

    @torch.inference_mode()
    def read_prompts(self, jobs: list) -> None:
        """Read long prompts in here (a worker thread: the batch keeps stepping meanwhile)."""
        for job in jobs:
            job.read_prompt(self.model)

    async def body(self, request: Request) -> dict:
        return await read_body(request, self.cfg.max_body, self.cfg.limits.request_timeout)

    async def completions(self, request: Request) -> Response:
        return await self.complete(request, parse_completion(await self.body(request), self.cfg.max_chars))

    async def chat_completions(self, request: Request) -> Response:
        return await self.complete(request, parse_chat(await self.body(request), self.cfg.max_chars, self.chat_format))

    def jobs_for(self, req: Completion, outbox: Outbox) -> list:
        prompt_ids = [encode_prompt(self.vocab, p, req.settings.unk, req.chat) for p in req.prompts]
        job, per = BeamJob if req.settings.width else SampleJob, req.choices_per_prompt
        sampling = {} if req.settings.width else {"logprobs": req.logprobs, "device": self.device}
        return [job(ids, self.vocab, outbox, req.settings, first_choice=p * per, **sampling)
                for p, ids in enumerate(prompt_ids)]  # their prompts not read in yet (`Job.read_prompt`)

    async def complete(self, request: Request, req: Completion) -> Response:
        """Run a completion (text or chat) in the shared batch; answer it whole or as a stream."""
        self.check_model(req.model)
        outbox = Outbox(asyncio.get_running_loop())
        jobs = self.jobs_for(req, outbox)
        give_back = self.slots.take()
        try:
            if sum(len(job.prompt) for job in jobs) > STEP_PRIME:  # short prompts are read in by the batcher
                await run_in_threadpool(self.read_prompts, jobs)
        except BaseException:
            give_back()
            raise
        for job in jobs:
            self.batcher.submit(job)

        def close() -> None:
            for job in jobs:
                self.batcher.cancel(job)  # (a finished job has left already: nothing happens)
            give_back()

        per = req.choices_per_prompt
        shape = Shape(self.cfg.model_id, req.chat, self.names, req.logprobs,
                      [p for p in req.prompts for _ in range(per)], req.echo)
        read = sum(prompt_tokens(self.vocab, p) for p in req.prompts)
        written = request.state.written = [0, self.vocab.unit]  # completion tokens, for usage and the log
        if req.stream:
            return EventStream(self.stream(req, shape, outbox, len(shape.prompts), read, written), close)
        try:
            got, failed = await self.collect(request, outbox, len(shape.prompts), written)
        finally:
            close()
        if failed:
            raise ApiError(500, failed[0], kind="server_error")
        if any(p.finish_reason is None for p in got):  # the client left
            return Response(status_code=499)
        return JSONResponse(shape.chunk([shape.choice(p) for p in got], stream=False,
                                        usage=usage(read, written[0])))

    async def collect(self, request: Request, outbox: Outbox, n: int, written: list) -> tuple[list[Part], list[str]]:
        """(each choice's Part, errors) of a completion that is not streamed, gathered as the engine writes
        them; stops waiting if the client leaves (then some Parts have no finish_reason)."""
        got, failed = [Part(i) for i in range(n)], []
        async with anyio.create_task_group() as tasks:

            async def watch() -> None:
                while (await request.receive())["type"] != "http.disconnect":
                    pass
                tasks.cancel_scope.cancel()

            tasks.start_soon(watch)
            while any(p.finish_reason is None for p in got) and not failed:
                events = await outbox.get()
                failed += [e[1] for e in events if e[0] == "error"]
                for part in parts(events):
                    got[part.index].add(part)
                    written[0] += part.tokens
            tasks.cancel_scope.cancel()
        return got, failed

    async def stream(self, req: Completion, shape: Shape, outbox: Outbox, n: int, read: int, written: list):
        for i in range(n):
            opening = shape.opening(i)
            if opening is not None:
                yield sse(opening)
        open_choices, sent = n, 0.0
        while open_choices:
            # At most one event per choice per interval: a person sees no difference, but a character
            # per event would make the HTTP side, not the model, what limits many users.
            await asyncio.sleep(max(0.0, sent + self.cfg.stream_interval - time.perf_counter()))
            events = await outbox.get()
            sent = time.perf_counter()
            failed = [e for e in events if e[0] == "error"]
            if failed:
                yield sse(ApiError(500, failed[0][1], kind="server_error").to_dict())
                break
            for part in parts(events):
                written[0] += part.tokens
                open_choices -= part.finish_reason is not None
                yield sse(shape.chunk([shape.choice(part, stream=True)]))
        if req.include_usage:
            yield sse(shape.chunk([], usage=usage(read, written[0])))
        yield sse("[DONE]")

    async def score(self, request: Request) -> Response:
        from charrnn.inspect.surprise import score_text

        req = parse_score(await self.body(request), self.cfg.max_chars)
        self.check_model(req.model)
        give_back = self.slots.take()
        try:
            result = await run_in_threadpool(score_text, self.model, self.vocab, req.text)
        finally:
            give_back()
        if result.scored == 0:
            raise ApiError(400, "text has fewer than 2 characters the model knows: there is nothing to predict", "text")
        return JSONResponse({"object": "score", "model": self.cfg.model_id, **result.to_dict(req.top)})

    async def models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [self.card]})

    async def one_model(self, request: Request) -> Response:
        self.check_model(request.path_params["name"])
        return JSONResponse(self.card)

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "model": self.cfg.model_id, "requests": self.slots.busy,
                             "max_concurrent": self.cfg.max_concurrent, "rows": self.batcher.rows, "steps": self.batcher.steps})

    async def playground(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def api_error(self, request: Request, exc: ApiError) -> Response:
        headers = {"Retry-After": "1"} if exc.status == 429 else {"Connection": "close"} if exc.status == 408 else None
        return JSONResponse(exc.to_dict(), exc.status, headers=headers)

    async def http_error(self, request: Request, exc: HTTPException) -> Response:
        what = {404: f"no such route: {request.method} {request.url.path[:200]}",
                405: f"{request.method} is not allowed on {request.url.path[:200]}"}.get(exc.status_code, str(exc.detail))
        return JSONResponse(ApiError(exc.status_code, what, kind="invalid_request_error").to_dict(), exc.status_code)

    async def server_error(self, request: Request, exc: Exception) -> Response:
        """A JSON 500; the request's log line says what failed (`requestlog.failure`)."""
        return JSONResponse(ApiError(500, "internal server error", kind="server_error").to_dict(), 500)

    @asynccontextmanager
    async def lifespan(self, app: Starlette):
        with torch.inference_mode():  # build the step's weight layout before the first request
            first = torch.zeros(1, dtype=torch.long, device=self.device)  # (1,)
            self.model.step(first, self.model.init_state(1), self.cfg.dtype)
        self.batcher.start()
        try:
            yield
        finally:
            await run_in_threadpool(self.batcher.stop)


def create_app(loaded: Loaded, config: ServeConfig | None = None) -> RequestLog:
    """The ASGI app serving `loaded` (run it with `connections.uvicorn_server`; `charrnn serve` does);
    `.state` holds its batcher, slots and config, `.log` its log (every line escaped)."""
    api = Api(loaded, config or ServeConfig())
    app = Starlette(
        routes=[
            Route("/", api.playground), Mount("/static", StaticFiles(directory=STATIC), name="static"),
            Route("/v1/models", api.models), Route("/v1/models/{name:path}", api.one_model),
            Route("/v1/completions", api.completions, methods=["POST"]),
            Route("/v1/chat/completions", api.chat_completions, methods=["POST"]),
            Route("/v1/score", api.score, methods=["POST"]), Route("/health", api.health),
        ],
        exception_handlers={ApiError: api.api_error, HTTPException: api.http_error, Exception: api.server_error},
        lifespan=api.lifespan,
    )
    app.state.batcher, app.state.slots, app.state.config = api.batcher, api.slots, api.cfg
    return RequestLog(app, api.cfg.log, Hosts.serving(api.cfg.host, api.cfg.allow_hosts))
