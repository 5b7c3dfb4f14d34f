"""charrnn serve: what existing clients see, the same text as charrnn sample, many requests in one batch."""

from __future__ import annotations

import ast
import json
import shutil
import signal
import socket
import subprocess
import sys
import threading

import pytest

pytest.importorskip("starlette", reason="needs the serve extra: pip install 'charrnn[serve]'")
httpx = pytest.importorskip("httpx")

from charrnn.generation.beam import beam_search  # noqa: E402
from charrnn.generation.settings import Sampling
from charrnn.training.checkpoint import load_model  # noqa: E402
from charrnn.generation.sampling import generate_batch, sample_text  # noqa: E402
from tests.conftest import REPO  # noqa: E402
from tests.serving import live_server, wait_until  # noqa: E402


@pytest.fixture(scope="module")
def served(parrot_run):
    with live_server(parrot_run / "best.pt") as (url, app, lines):
        yield url, app, lines


@pytest.fixture(scope="module")
def loaded(parrot_run):
    return load_model(parrot_run)


def post(url: str, body, path: str = "/v1/completions", **kw) -> httpx.Response:
    return httpx.post(url + path, json=body, timeout=60, **kw)


def test_the_openai_client_streams_what_charrnn_sample_writes(served, loaded):
    openai = pytest.importorskip("openai")
    url, _, _ = served
    client = openai.OpenAI(base_url=url + "/v1", api_key="not-needed")
    assert [m.id for m in client.models.list()] == ["parrot"]
    settings = dict(temperature=0.9, top_p=0.95, seed=7)
    stream = client.completions.create(model="parrot", prompt="the quick", max_tokens=120, stream=True, **settings)
    chunks = [c.choices[0].text for c in stream if c.choices]
    expected = sample_text(loaded.model, loaded.vocab, 120, "the quick", **settings)
    assert "".join(chunks) == expected
    # streamed in pieces: a text long enough to take several of the server's 20 ms stream intervals
    # (120 characters of this tiny model can all be written before the first event goes out)
    long = client.completions.create(model="parrot", prompt="the quick", max_tokens=3000, stream=True, **settings)
    pieces = [c.choices[0].text for c in long if c.choices]
    assert len(pieces) > 1 and "".join(pieces).startswith(expected)
    whole = client.completions.create(model="parrot", prompt="the quick", max_tokens=120, **settings)
    assert whole.choices[0].text == expected and whole.choices[0].finish_reason == "length"
    assert (whole.usage.prompt_tokens, whole.usage.completion_tokens) == (9, 120)


def test_the_same_text_as_the_sample_command(served, parrot_run):
    from typer.testing import CliRunner

    from charrnn.cli import app

    url, _, _ = served
    cli = CliRunner().invoke(app, ["sample", str(parrot_run), "-n", "90", "--seed", "5", "--temp", "1.3",
                                   "--top-k", "6", "--prime", "over the", "--threads", "1", "--continuation-only",
                                   "--precision", "fp32"])  # serve's default; sample's auto may pick int8
    api = post(url, {"prompt": "over the", "max_tokens": 90, "seed": 5, "temperature": 1.3, "top_k": 6}).json()
    assert api["choices"][0]["text"] == cli.stdout


def test_n_choices_and_stop_strings_as_openai_defines_them(served, loaded):
    url, _, _ = served
    r = post(url, {"prompt": "the", "max_tokens": 80, "n": 3, "seed": 11, "temperature": 1.2}).json()
    batch = ["", "", ""]
    for chars in generate_batch(loaded.model, loaded.vocab, Sampling(n=3, length=80, temperature=1.2, seed=11), "the"):  # charrnn sample -N 3
        batch = [t + c for t, c in zip(batch, chars)]
    assert [c["text"] for c in r["choices"]] == batch
    r = post(url, {"prompt": "the quick", "max_tokens": 80, "temperature": 0, "stop": ["dog."]}).json()
    assert r["choices"][0] == {"index": 0, "text": " brown fox jumps over the lazy ", "logprobs": None,
                               "finish_reason": "stop"}  # the stop string itself is not returned
    r = post(url, {"prompt": "the quick", "max_tokens": 8, "temperature": 0, "echo": True}).json()
    assert r["choices"][0]["text"] == "the quick brown f"


def test_beam_search_and_its_extras(served, loaded):
    url, _, _ = served
    r = post(url, {"prompt": "the lazy", "max_tokens": 60, "width": 4, "top": 2, "no_repeat": 0}).json()
    beams = beam_search(loaded.model, loaded.vocab, "the lazy", width=4, length=60, top=2)
    assert [c["text"] for c in r["choices"]] == [b.text for b in beams]
    assert r["choices"][0]["logprob"] == pytest.approx(beams[0].logprob, abs=1e-4)
    r = post(url, {"prompt": "the lazy", "max_tokens": 60, "width": 3, "stop": "\n", "length_penalty": 1.0}).json()
    assert r["choices"][0]["text"] == " dog." and r["choices"][0]["finish_reason"] == "stop"
    events = streamed(url, {"prompt": "the lazy", "max_tokens": 60, "width": 3, "stream": True})
    assert "".join(e["choices"][0]["text"] for e in events if e.get("choices")) == beams[0].text


def streamed(url: str, body: dict) -> list[dict]:
    """The events of a streamed completion (the last `data:` line must be [DONE])."""
    with httpx.stream("POST", url + "/v1/completions", json=body, timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        data = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert data[-1] == "[DONE]"
    return [json.loads(d) for d in data[:-1]]


def test_stream_ends_with_done_and_can_carry_usage(served):
    url, _, _ = served
    events = streamed(url, {"prompt": "the", "max_tokens": 50, "stream": True, "seed": 1,
                            "stream_options": {"include_usage": True}})
    assert events[-1]["choices"] == [] and events[-1]["usage"]["completion_tokens"] == 50
    assert [e["choices"][0]["finish_reason"] for e in events[:-1]][-1] == "length"


def test_curl_streams_it_unmodified(served):
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    url, _, _ = served
    out = subprocess.run(["curl", "-sN", url + "/v1/completions", "-d",
                          '{"prompt": "the", "max_tokens": 40, "stream": true, "seed": 3}'],
                         capture_output=True, text=True, timeout=60).stdout
    assert out.rstrip().endswith("data: [DONE]") and out.count("data: ") >= 2


def test_many_requests_share_one_step_and_each_gets_its_own_text(served, loaded):
    url, app, _ = served
    batcher = app.state.batcher
    asks = [{"prompt": p, "max_tokens": 1500, "seed": s, "temperature": t, "top_p": tp}
            for p, s, t, tp in [("the", 1, 1.0, 1.0), ("the quick", 2, 0.5, 1.0), ("dog", 3, 1.5, 0.9), ("the", 4, 1.0, 1.0),
                                ("lazy", 5, 0.0, 1.0), ("fox", 6, 2.0, 0.5),
                                ("the quick brown fox jumps over the lazy dog the quick brown", 7, 0.9, 1.0)]]
    # (short prompts are read in by the batcher as they join, a long one by its request's thread)
    results, steps_before = [None] * len(asks), batcher.steps
    barrier = threading.Barrier(len(asks))

    def ask(i: int) -> None:
        barrier.wait()
        results[i] = post(url, asks[i]).json()

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(asks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for body, result in zip(asks, results):
        expected = sample_text(loaded.model, loaded.vocab, 1500, body["prompt"], temperature=body["temperature"],
                               top_p=body["top_p"], seed=body["seed"])
        assert result["choices"][0]["text"] == expected, body
    steps = batcher.steps - steps_before
    assert steps < 0.5 * 1500 * len(asks)  # alone, each would take ~1500 steps: they shared them


def test_beam_searches_and_samples_in_one_batch_each_get_what_they_get_alone(served):
    """Beams come and go (their rows reordered every step) between sampling rows of two settings,
    one request with n = 2: whatever shares its steps, each request's text is its text alone."""
    url, _, _ = served
    asks = [{"prompt": "the lazy", "max_tokens": 300, "width": 4, "top": 2, "no_repeat": 0},
            {"prompt": "the", "max_tokens": 400, "n": 2, "seed": 3, "temperature": 1.2},
            {"prompt": "dog", "max_tokens": 200, "width": 2},
            {"prompt": "the quick", "max_tokens": 500, "seed": 8, "temperature": 0.7, "top_p": 0.9}]
    alone = [[c["text"] for c in post(url, body).json()["choices"]] for body in asks]
    together, barrier = [None] * len(asks), threading.Barrier(len(asks))

    def ask(i: int) -> None:
        barrier.wait()
        together[i] = [c["text"] for c in post(url, asks[i]).json()["choices"]]

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(asks))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert together == alone


def test_a_client_that_leaves_frees_its_slot_at_once(parrot_run):
    with live_server(parrot_run / "best.pt", max_concurrent=1) as (url, app, lines):
        slots, batcher = app.state.slots, app.state.batcher
        host, port = url.removeprefix("http://").split(":")
        body = json.dumps({"prompt": "the", "max_tokens": 10_000, "stream": True}).encode()
        with socket.create_connection((host, int(port))) as s:
            s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
            assert wait_until(lambda: batcher.rows == 1)
            busy = post(url, {"prompt": "the", "max_tokens": 5})
            assert busy.status_code == 429 and busy.headers["retry-after"] == "1"
            assert "busy" in busy.json()["error"]["message"]
        assert wait_until(lambda: slots.busy == 0, timeout=2)  # the slot is free as soon as the client is gone
        assert wait_until(lambda: batcher.rows == 0, timeout=2)  # and its row left the batch
        assert post(url, {"prompt": "the", "max_tokens": 5}).status_code == 200
        with socket.create_connection((host, int(port))) as s:  # the same without streaming
            body = json.dumps({"prompt": "the", "max_tokens": 10_000}).encode()
            s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            assert wait_until(lambda: batcher.rows == 1)
        assert wait_until(lambda: slots.busy == 0 and batcher.rows == 0, timeout=2)
        assert wait_until(lambda: any("(client left)" in line for line in lines), timeout=2)


def test_unseen_characters_are_listed_or_dropped(served):
    url, _, _ = served
    r = post(url, {"prompt": "thé quick€", "max_tokens": 5})
    assert r.status_code == 400
    error = r.json()["error"]
    assert "'é' '€'" in error["message"] and '"unk": "skip"' in error["message"] and error["param"] == "prompt"
    assert post(url, {"prompt": "thé quick€", "max_tokens": 5, "unk": "skip"}).status_code == 200


def test_score_is_what_charrnn_score_computes(served, loaded):
    from charrnn.inspect.surprise import score_text

    url, _, _ = served
    text = "the quick brown fox jumps over the lazy cat.\n"
    r = post(url, {"text": text}, "/v1/score").json()
    expected = score_text(loaded.model, loaded.vocab, text).to_dict()
    assert r["bits"][0] is None and r["bits"][1:] == pytest.approx(expected["bits"][1:])
    assert r["spans"][0]["text"] == expected["spans"][0]["text"] and "c" in r["spans"][0]["text"]


def test_one_log_line_per_request(served):
    url, _, lines = served
    before = len(lines)
    post(url, {"prompt": "the", "max_tokens": 7})
    httpx.get(url + "/v1/models")
    # a line is written once its response has been sent, so an earlier test's last line may still arrive here
    mine = lambda: [x for x in lines[before:] if " /v1/completions " in x or " /v1/models " in x]  # noqa: E731
    wait_until(lambda: len(mine()) >= 2)
    new = mine()
    assert len(new) == 2
    assert new[0].startswith("127.0.0.1:") and " POST /v1/completions 200 " in new[0] and new[0].endswith(" 7 characters")
    assert " GET /v1/models 200 " in new[1]


def test_the_serve_command_without_the_extra_says_how_to_get_it(monkeypatch, tiny_run):
    from typer.testing import CliRunner

    from charrnn.cli import app

    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn now raises ImportError
    result = CliRunner().invoke(app, ["serve", str(tiny_run)])
    assert result.exit_code == 1
    assert result.output.strip() == "error: charrnn serve needs the serve extra: pip install 'charrnn[serve]'"


def test_the_serve_command_serves_and_logs_to_stderr(parrot_run):
    proc = subprocess.Popen([sys.executable, "-m", "charrnn", "serve", str(parrot_run), "--port", "0", "--name", "p"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        first = proc.stderr.readline()
        assert first.startswith("serving ") and "as 'p'" in first, first
        url = first.split(" at ")[1].split()[0].rstrip("/")
        assert url.startswith("http://127.0.0.1:")
        assert post(url, {"model": "p", "prompt": "the", "max_tokens": 3}).status_code == 200
        assert post(url, {"model": "gpt-4", "prompt": "the"}).status_code == 404
        assert " POST /v1/completions 200 " in proc.stderr.readline()
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130 and out == "" and "Traceback" not in err


def test_cli_modules_import_nothing_heavy_at_the_top():
    for name in ("serve", "chat"):
        tree = ast.parse((REPO / "charrnn" / "cli" / f"{name}.py").read_text())
        top = {alias.name.split(".")[0] for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
               for alias in (node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")])}
        assert not top & {"torch", "uvicorn", "starlette"}, name
    code = "import sys, charrnn.cli; print(sorted({'uvicorn', 'starlette'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO).stdout.strip() == "[]"


def test_the_playground_works_offline_and_never_parses_text_as_html(served):
    import re

    url, _, _ = served
    page = httpx.get(url + "/")
    assert page.status_code == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets and all(a.startswith("/static/") for a in assets)  # nothing from a CDN or anywhere else
    for asset in assets:
        body = httpx.get(url + asset).text
        assert "http://" not in body and "https://" not in body and "@import" not in body, asset
    script = httpx.get(url + "/static/app.js").text
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink


def test_bf16_serving_writes_what_sample_writes_with_precision_bf16(parrot_run):
    import torch
    from typer.testing import CliRunner

    from charrnn.cli import app

    args = {"prompt": "the lazy", "max_tokens": 200, "seed": 9, "temperature": 1.5}
    with live_server(parrot_run / "best.pt", dtype=torch.bfloat16) as (url, _, _):
        api = post(url, args).json()["choices"][0]["text"]
    cli = CliRunner().invoke(app, ["sample", str(parrot_run), "-n", "200", "--seed", "9", "--temp", "1.5",
                                   "--prime", "the lazy", "--precision", "bf16", "--threads", "1", "--continuation-only"])
    assert cli.exit_code == 0 and api == cli.stdout
