"""`charrnn serve`: an OpenAI-compatible HTTP API and a web playground for a model, many users batched.

Everything heavy (torch, uvicorn, starlette) is imported inside the command, so `charrnn -h`
stays fast and works without the serve extra.
"""

from __future__ import annotations

import gc

import typer

from charrnn.cli.common import NEWEST_CHECKPOINT, app, device_option, examples, guarded, shape, show_path

EXAMPLES = examples(
    "charrnn serve checkpoints/shakespeare",
    "curl -N localhost:8000/v1/completions -d '{\"prompt\": \"ROMEO:\", \"max_tokens\": 200, \"stream\": true}'",
    "charrnn serve model.safetensors --port 8080 --max-concurrent 16 --precision bf16",
    "charrnn serve checkpoints/names --chat-format lines --host 0.0.0.0 --allow-host names.lan",
    then="""Open http://127.0.0.1:8000/ for the playground. The API speaks OpenAI's completions and
chat (/v1/completions, /v1/chat/completions, /v1/models), so the openai client works with
base_url=".../v1"; /v1/score gives per-character surprisal.

It listens on 127.0.0.1 only unless --host says otherwise, and answers only requests that name it
localhost, 127.0.0.1, [::1], the --host or an --allow-host name (no DNS rebinding).""")

WILDCARDS = ("0.0.0.0", "::", "")  # every address of the machine: no name to answer to


def model_name(path) -> str:
    """checkpoints/shakespeare/best.pt -> "shakespeare"; shared/tiny.safetensors -> "tiny"."""
    from charrnn.training.checkpoint import SNAPSHOT_RE

    in_run = path.name in ("best.pt", "last.pt") or SNAPSHOT_RE.match(path.name)
    return path.parent.resolve().name if in_run else path.stem


def listen(host: str, port: int):
    """A listening socket, or a one-line error saying why not."""
    import socket

    from charrnn.util.errors import CharrnnError

    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as e:
        raise CharrnnError(f"cannot listen on {host}:{port}: {e.strerror or e} (is another server there? try --port)") from None
    return sock


@app.command(epilog=EXAMPLES)
@guarded
def serve(
    checkpoint: str = NEWEST_CHECKPOINT,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on. Anything but loopback lets other machines in (there is no authentication)."),
    port: int = typer.Option(8000, "--port", help="Port to listen on (0 = any free port)."),
    max_concurrent: int = typer.Option(64, "--max-concurrent", help="Requests generating or scoring at once; more are answered 429."),
    max_chars: int = typer.Option(10_000, "--max-chars", help="Per request: the most prompt characters, tokens written (max_tokens x n: characters for a character model) and characters scored."),
    name: str = typer.Option(None, "--name", help="The model's name in the API. Default: the run folder's (or the file's) name.", show_default=False),
    allow_hosts: list[str] = typer.Option(
        [], "--allow-host", show_default=False,
        help="A name clients reach the server by, besides localhost, 127.0.0.1, [::1] and --host (repeatable): "
             "requests naming another host are refused (421)."),
    chat_format: str = typer.Option(
        "play", "--chat-format",
        help="How /v1/chat/completions writes a conversation for the model: play (NAME:\\ntext, a blank line "
             "between turns), plain (the texts, a blank line between), lines (a line each), or a template such as "
             "'{name}: {content}\\n' (\\n understood)."),
    precision: str = typer.Option("fp32", "--precision", help="The shared step's matrices: fp32 (the text of `charrnn sample --precision fp32`) or bf16 (faster under load on CPUs with AVX512-BF16/AMX; the text of `charrnn sample --precision bf16`)."),
    threads: int = typer.Option(1, "--threads", help="CPU threads for the model (one leaves a core to the HTTP side; 0 = auto: times 1 thread and one per core on the model's step, keeps the faster)."),
    device: str = device_option(),
) -> None:
    """Serve a model over HTTP: OpenAI-compatible completions and chat, scoring, and a web playground at /."""
    import sys

    from charrnn.runtime.device import resolve_device
    from charrnn.runtime.threads import check_threads, timed_threads
    from charrnn.training.checkpoint import load_model
    from charrnn.util.errors import CharrnnError, UsageError

    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise CharrnnError("charrnn serve needs the serve extra: pip install 'charrnn[serve]'") from None
    if max_concurrent < 1 or max_chars < 1:
        raise UsageError("--max-concurrent and --max-chars must be at least 1")
    if precision not in ("fp32", "bf16"):
        raise UsageError("--precision must be fp32 or bf16")
    if not 0 <= port <= 65535:
        raise UsageError("--port must be from 0 to 65535")
    check_threads(threads)
    config = serve_config(max_concurrent, max_chars, precision, chat_format, host, allow_hosts)
    # The batcher thread steps the model without pause; the event loop thread needs the GIL to send
    # what it wrote. CPython makes a waiting thread wait up to the switch interval (5 ms): at 0.5 ms a
    # character reaches its client that much sooner, at no cost measurable here.
    sys.setswitchinterval(0.0005)
    loaded = load_model(checkpoint, resolve_device(device))
    config.model_id = name or model_name(loaded.path)
    with timed_threads(threads, step_probe(loaded.model)):
        run_server(loaded, config, host, port, precision)


def serve_config(max_concurrent: int, max_chars: int, precision: str, chat_format: str, host: str,
                 allow_hosts: list[str]):
    """The server's settings from the command's, the chat format checked before the model is loaded."""
    import torch

    from charrnn.cli.sample import unescape
    from charrnn.serve.app import ServeConfig
    from charrnn.serve.chat import ChatFormat

    config = ServeConfig(max_concurrent=max_concurrent, max_chars=max_chars,
                         dtype=torch.bfloat16 if precision == "bf16" else torch.float32,
                         chat_format=unescape(chat_format), host=host, allow_hosts=tuple(allow_hosts))
    ChatFormat.parse(config.chat_format)
    return config


def step_probe(model):
    """One step of the model at batch 1: the work a request's stream repeats (to time a thread count on)."""
    import torch

    token, state = torch.zeros(1, dtype=torch.long, device=model.head.weight.device), model.init_state(1)

    @torch.inference_mode()
    def step() -> None:
        model.step(token, state)

    return step


def run_server(loaded, config, host: str, port: int, precision: str) -> None:
    """Serve `loaded` until Ctrl-C or SIGTERM (then exit 130 or 143)."""
    from charrnn.serve.app import create_app
    from charrnn.serve.connections import uvicorn_server
    from charrnn.serve.hosts import LOOPBACK
    from charrnn.util.console import info, warn

    sock = listen(host, port)
    where = sock.getsockname()
    url = f"http://{'[' + where[0] + ']' if ':' in where[0] else where[0]}:{where[1]}/"
    info(f"serving {show_path(loaded.path)} as {config.model_id!r} ({shape(loaded)}, {precision}) at {url} "
         f"(the playground; the API under {url}v1); Ctrl-C stops")
    if host not in LOOPBACK:
        warn(f"listening on {host}: other machines can reach this server, and it has no authentication")
        if host in WILDCARDS and not config.allow_hosts:
            warn("requests must name this server as localhost, 127.0.0.1 or [::1]: give --allow-host NAME for each "
                 "name or address other machines use")
    app = create_app(loaded, config)
    server = uvicorn_server(app, config.limits, app.log)
    gc.freeze()  # what lives as long as the server, out of the collector's sight: a full collection ~3 ms, not ~80
    server.run(sockets=[sock])
    stopped_by = getattr(server, "_captured_signals", None) or []  # the signals that stopped uvicorn, if any
    if stopped_by:
        info("stopped")
        raise typer.Exit(128 + stopped_by[-1])  # Ctrl-C: 130, SIGTERM: 143, as for charrnn train
