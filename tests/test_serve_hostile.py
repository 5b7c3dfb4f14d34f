"""Bad input never takes charrnn serve down: hundreds of hostile bodies, each a JSON error with the right status."""

from __future__ import annotations

import json
import random

import pytest

pytest.importorskip("starlette", reason="needs the serve extra: pip install 'charrnn[serve]'")
httpx = pytest.importorskip("httpx")

from tests.serving import live_server, wait_until  # noqa: E402

MAX_CHARS = 2000
GOOD = {"prompt": "the", "max_tokens": 5}


def raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


# (what is sent, the status it must get); a dict is sent as JSON, bytes as they are
CRAFTED: list[tuple[object, int]] = [
    (b"", 400), (b"{", 400), (b'{"prompt": "the",}', 400), (b"null", 400), (b"[]", 400), (b"42", 400), (b'"the"', 400),
    (b"\xff\xfe\x00garbage", 400), (b'{"prompt": NaN}', 400), (b'{"prompt": "the", "temperature": Infinity}', 400),
    (b"[" * 100_000 + b"]" * 100_000, 400), (b'{"prompt": "the", "max_tokens": 1e400}', 400),
    (b'{"prompt": "the", "seed": 123456789012345678901234567890}', 400),
    (raw('{"prompt": "\\ud800 lone surrogate"}'), 400), (b'{"prompt": "the\\u0000"}', 400),
    ({}, 400), ({"prompt": ""}, 400), ({"prompt": None}, 400), ({"prompt": 5}, 400), ({"prompt": [1, 2, 3]}, 400),
    ({"prompt": []}, 400), ({"prompt": ["the"] * 17}, 400), ({"prompt": {"text": "the"}}, 400),
    ({"prompt": "😀 emoji"}, 400), ({"prompt": "😀", "unk": "skip"}, 400), ({"prompt": "a" * (MAX_CHARS + 1)}, 400),
    ({"prompt": "<script>alert(1)</script>"}, 200),
    ({**GOOD, "max_tokens": -1}, 400), ({**GOOD, "max_tokens": 0}, 400), ({**GOOD, "max_tokens": 10**30}, 400),
    ({**GOOD, "max_tokens": "5"}, 400), ({**GOOD, "max_tokens": True}, 400), ({**GOOD, "max_tokens": 3.5}, 400),
    ({**GOOD, "max_tokens": MAX_CHARS, "n": 2}, 400),
    ({**GOOD, "temperature": -1}, 400), ({**GOOD, "temperature": 1e308}, 400), ({**GOOD, "temperature": "hot"}, 400),
    ({**GOOD, "temperature": []}, 400), ({**GOOD, "top_p": 0}, 400), ({**GOOD, "top_p": 1.5}, 400),
    ({**GOOD, "top_k": -1}, 400), ({**GOOD, "top_k": 2**40}, 400), ({**GOOD, "n": 0}, 400), ({**GOOD, "n": 17}, 400),
    ({**GOOD, "seed": 2**70}, 400), ({**GOOD, "seed": "x"}, 400), ({**GOOD, "seed": 1.5}, 400),
    ({**GOOD, "stop": ""}, 400), ({**GOOD, "stop": [""]}, 400), ({**GOOD, "stop": ["a"] * 5}, 400),
    ({**GOOD, "stop": 5}, 400), ({**GOOD, "stop": ["x" * 65]}, 400), ({**GOOD, "stream": "yes"}, 400),
    ({**GOOD, "stream": 1}, 400), ({**GOOD, "stream_options": {"include_usage": True}}, 400),
    ({**GOOD, "stream": True, "stream_options": {"include_usage": "y"}}, 400),
    ({**GOOD, "stream": True, "stream_options": []}, 400), ({**GOOD, "echo": "no"}, 400), ({**GOOD, "unk": "drop"}, 400),
    ({**GOOD, "width": 0}, 400), ({**GOOD, "width": 33}, 400), ({**GOOD, "width": "5"}, 400),
    ({**GOOD, "width": 3, "top": 5}, 400), ({**GOOD, "top": 2}, 400), ({**GOOD, "width": 3, "temperature": 0.5}, 400),
    ({**GOOD, "width": 3, "seed": 1}, 400), ({**GOOD, "width": 3, "no_repeat": -1}, 400),
    ({**GOOD, "width": 3, "length_penalty": 1e9}, 400), ({**GOOD, "no_repeat": 3}, 400),
    ({**GOOD, "logprobs": 5}, 200), ({**GOOD, "logprobs": 6}, 400), ({**GOOD, "logprobs": -1}, 400),
    ({**GOOD, "logprobs": True}, 400), ({**GOOD, "logprobs": 2, "echo": True}, 400),
    ({**GOOD, "logprobs": 2, "width": 3}, 400), ({**GOOD, "presence_penalty": 1}, 400), ({**GOOD, "best_of": 2}, 400),
    ({**GOOD, "logit_bias": {"1": 5}}, 400), ({**GOOD, "suffix": "x"}, 400), ({**GOOD, "user": 5}, 400),
    ({**GOOD, "temprature": 1}, 400), ({**GOOD, "__proto__": {}}, 400), ({**GOOD, "x" * 10_000: 1}, 400),
    ({**GOOD, "model": "gpt-4"}, 404), ({**GOOD, "model": 5}, 400),
    ({**GOOD, "logprobs": None, "presence_penalty": 0, "best_of": 1, "user": "me"}, 200),
]
USER = [{"role": "user", "content": "the"}]
CHAT: list[tuple[object, int]] = [
    ({}, 400), ({"messages": []}, 400), ({"messages": "the"}, 400), ({"messages": [None]}, 400),
    ({"messages": [{"content": "the"}]}, 400), ({"messages": [{"role": "tool", "content": "x"}]}, 400),
    ({"messages": [{"role": ["user"], "content": "x"}]}, 400), ({"messages": [{"role": "user", "content": 5}]}, 400),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, 400),
    ({"messages": [{"role": "user", "content": "the", "name": "A\nB"}]}, 400),
    ({"messages": [{"role": "user", "content": "the", "name": "x" * 65}]}, 400),
    ({"messages": [{"role": "user", "content": "the", "tool_calls": [{"id": 1}]}]}, 400),
    ({"messages": [{"role": "user", "content": "a" * MAX_CHARS}]}, 400), ({"messages": USER, "prompt": "the"}, 400),
    ({"messages": USER, "echo": True}, 400), ({"messages": USER, "logprobs": 3}, 400),
    ({"messages": USER, "top_logprobs": 3}, 400), ({"messages": USER, "logprobs": True, "top_logprobs": 6}, 400),
    ({"messages": USER, "max_tokens": 5, "max_completion_tokens": 5}, 400), ({"messages": USER, "tools": [{}]}, 400),
    ({"messages": USER, "response_format": {"type": "json_object"}}, 400), ({"messages": USER, "temperature": -1}, 400),
    ({"messages": USER, "stop": 5}, 400), ({"messages": USER, "stop": ["a"] * 5}, 400),
    ({"messages": USER, "max_tokens": MAX_CHARS + 1}, 400), ({"messages": USER, "model": "gpt-4"}, 404),
    ({"messages": [{"role": "user", "content": "é"}]}, 400),
    ({"messages": USER, "max_tokens": 5}, 400), ({"messages": USER, "max_tokens": 5, "unk": "skip"}, 200),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "the"}], "name": "dog"},
                   {"role": "assistant", "content": None, "refusal": None}], "max_completion_tokens": 5,
      "logprobs": True, "top_logprobs": 2, "response_format": {"type": "text"}, "unk": "skip"}, 200),
]
SCORE: list[tuple[object, int]] = [
    ({}, 400), ({"text": 5}, 400), ({"text": "éé"}, 400), ({"text": "t"}, 400), ({"text": "a" * (MAX_CHARS + 1)}, 400),
    ({"text": "the", "top": -1}, 400), ({"text": "the", "foo": 1}, 400), (b"{", 400), ({"text": "the dog"}, 200),
]
ROUTES = [("GET", "/v1/completions", 405), ("POST", "/v1/models", 405), ("GET", "/nope", 404),
          ("GET", "/static/../app.py", 404), ("DELETE", "/v1/score", 405), ("GET", "/v1/models/gpt-4", 404)]

HOSTILE_VALUES = [None, True, False, -1, 0, 1, -(2**63) - 1, 2**64, 10**100, 1e-320, -1e308, 0.5, 3.7, "", " ", "\n",
                  "the", "ü", "😀", "\x00", "<script>", "a" * 3000, [], [None], ["the", 7], [[["deep"]]], {}, {"a": 1},
                  {"include_usage": True}, "NaN", "-1", "1e999"]
FIELDS = ["prompt", "max_tokens", "temperature", "top_p", "top_k", "n", "stop", "seed", "stream", "stream_options", "echo",
          "unk", "width", "top", "no_repeat", "length_penalty", "model", "logprobs", "best_of", "user", "suffix", "bogus"]


def fuzzed(count: int, seed: int = 0) -> list[bytes]:
    """Random mutations of a good request: a field set to a hostile value, the JSON cut short, bytes flipped."""
    rng, out = random.Random(seed), []
    for _ in range(count):
        body = dict(GOOD)
        for _ in range(rng.randint(1, 3)):
            body[rng.choice(FIELDS)] = rng.choice(HOSTILE_VALUES)
        data = json.dumps(body).encode()
        how = rng.random()
        if how < 0.15:
            data = data[: rng.randrange(len(data))]
        elif how < 0.3:
            data = bytearray(data)
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
            data = bytes(data)
        out.append(data)
    return out


def check_error(r: httpx.Response) -> None:
    error = r.json()["error"]
    assert isinstance(error["message"], str) and error["message"] and "Traceback" not in error["message"]
    assert error["type"] in ("invalid_request_error", "rate_limit_error")


def test_hostile_bodies_get_json_errors_and_the_server_keeps_serving(parrot_run):
    with live_server(parrot_run / "best.pt", max_chars=MAX_CHARS, max_body=200_000) as (url, app, _):
        client = httpx.Client(base_url=url, timeout=60)
        sent = refused = 0
        for path, cases in (("/v1/completions", CRAFTED), ("/v1/chat/completions", CHAT), ("/v1/score", SCORE)):
            for body, status in cases:
                r = client.post(path, content=body if isinstance(body, bytes) else json.dumps(body).encode())
                sent += 1
                assert r.status_code == status, (body if len(repr(body)) < 300 else repr(body)[:300], r.text[:300])
                if status >= 400:
                    check_error(r)
                    refused += 1
        too_big = client.post("/v1/completions", content=b'{"prompt": "' + b"t" * 300_000 + b'"}')
        assert too_big.status_code == 413
        check_error(too_big)
        for method, path, status in ROUTES:
            r = client.request(method, path)
            assert r.status_code == status, (method, path)
            check_error(r)
        statuses = {}
        for data in fuzzed(300):
            r = client.post("/v1/completions", content=data)
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            assert r.status_code in (200, 400, 404), (data[:200], r.text[:300])
            if r.status_code != 200:
                check_error(r)
        sent += 1 + len(ROUTES) + 300
        refused += 1 + len(ROUTES) + sum(n for s, n in statuses.items() if s >= 400)
        print(f"\n{sent} bodies sent, {refused} refused with a JSON error; fuzz statuses {statuses}")
        assert refused >= 300
        # after all that, it still serves, and nothing is left holding a slot or a row
        assert client.post("/v1/completions", json={"prompt": "the quick", "max_tokens": 20, "temperature": 0}).json()[
            "choices"][0]["text"] == " brown fox jumps ove"
        assert wait_until(lambda: app.state.slots.busy == 0 and app.state.batcher.rows == 0)
