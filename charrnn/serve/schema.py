"""Request bodies: parsed, checked and turned into settings, or refused with a message that says why.

Errors take OpenAI's shape, so existing clients show them:

    {"error": {"message": "temperature must be a number from 0 to 100, not -1",
               "type": "invalid_request_error", "param": "temperature", "code": null}}

`POST /v1/completions` takes OpenAI's completion fields where they apply to a character
model (`max_tokens` counts characters), plus charrnn's own: `top_k`, `unk`, and beam search
(`width`, `top`, `no_repeat`, `length_penalty`). OpenAI fields that have nothing to act on
here (`logprobs`, `presence_penalty`, `best_of`, ...) are accepted at their neutral value and
refused with a clear message otherwise; any other field is refused by name.
"""

from __future__ import annotations

import difflib
import json
import math
from dataclasses import dataclass, field

from charrnn.generation.settings import MAX_LENGTH_PENALTY, MAX_TEMP

MAX_CHOICES = 16  # prompts x n (or x top) per request
MAX_WIDTH = 32  # beams per search
MAX_STOPS, MAX_STOP_CHARS = 4, 64


class ApiError(Exception):
    """A request the server cannot carry out: HTTP status, message, the field at fault."""

    def __init__(self, status: int, message: str, param: str | None = None,
                 kind: str = "invalid_request_error", code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.kind, self.code = status, message, param, kind, code

    def to_dict(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def parse_json(raw: bytes) -> dict:
    """A request body -> a JSON object, or a 400 that says what is wrong with it."""
    if not raw.strip():
        raise ApiError(400, "the request body is empty: send a JSON object")

    def no_constants(name: str):
        raise ValueError(f"{name} is not a JSON number")

    try:
        body = json.loads(raw, parse_constant=no_constants)
    except UnicodeDecodeError:
        raise ApiError(400, "the request body is not UTF-8 text") from None
    except RecursionError:
        raise ApiError(400, "the request body is nested too deeply") from None
    except ValueError as e:
        raise ApiError(400, f"the request body is not valid JSON: {str(e)[:200]}") from None
    if not isinstance(body, dict):
        raise ApiError(400, f"the request body must be a JSON object, not {_kind(body)}")
    return body


def _kind(value) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
            dict: "an object", type(None): "null"}.get(type(value), type(value).__name__)


def _show(value) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


class Fields:
    """Typed reads from a request body: each refuses a wrong type or range naming the field."""

    def __init__(self, body: dict):
        self.body = body

    def given(self, name: str) -> bool:
        return self.body.get(name) is not None

    def integer(self, name: str, default: int | None, lo: int, hi: int) -> int | None:
        value = self.body.get(name)
        if value is None:
            return default
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ApiError(400, f"{name} must be an integer, not {_kind(value)} {_show(value)}", name)
        if not lo <= value <= hi:
            raise ApiError(400, f"{name} must be an integer from {lo:,} to {hi:,}, not {_show(value)}", name)
        return value

    def number(self, name: str, default: float, lo: float, hi: float, lo_open: bool = False) -> float:
        value = self.body.get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ApiError(400, f"{name} must be a number, not {_kind(value)} {_show(value)}", name)
        value = float(value) if abs(value) < 1e300 else math.inf
        if not math.isfinite(value) or value < lo or value > hi or (lo_open and value == lo):
            span = f"{'above' if lo_open else 'from'} {lo:g} {'up ' if lo_open else ''}to {hi:g}"
            raise ApiError(400, f"{name} must be a number {span}, not {_show(self.body[name])}", name)
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.body.get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise ApiError(400, f"{name} must be true or false, not {_kind(value)} {_show(value)}", name)
        return value

    def string(self, name: str, default: str | None, choices: tuple = ()) -> str | None:
        value = self.body.get(name)
        if value is None:
            return default
        if not isinstance(value, str):
            raise ApiError(400, f"{name} must be a string, not {_kind(value)} {_show(value)}", name)
        if choices and value not in choices:
            raise ApiError(400, f"{name} must be one of {', '.join(choices)}, not {_show(value)}", name)
        return value

    def strings(self, name: str, most: int, what: str) -> list[str] | None:
        """A string or an array of strings (OpenAI's form for prompt and stop)."""
        value = self.body.get(name)
        if value is None:
            return None
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
            hint = " (token-id prompts are not supported: send text)" if name == "prompt" and isinstance(items, list) else ""
            raise ApiError(400, f"{name} must be {what}, not {_kind(value)} {_show(value)}{hint}", name)
        if not items or len(items) > most:
            raise ApiError(400, f"{name} must hold 1 to {most} strings, not {len(items)}", name)
        return items

    def refuse_unknown(self, known: set[str], neutral: dict) -> None:
        for name, value in self.body.items():
            if name in neutral:
                if value is not None and value not in neutral[name]:
                    raise ApiError(400, f"{name} is not supported by charrnn serve (leave it out)", name)
            elif name not in known:
                close = difflib.get_close_matches(name, sorted(known), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ApiError(400, f"unknown field {name[:60]!r}{hint}", name[:60])


# OpenAI completion fields with nothing to act on in a character model: accepted at these values only.
NEUTRAL = {"logprobs": (0, False), "presence_penalty": (0,), "frequency_penalty": (0,), "best_of": (1,),
           "logit_bias": ({},), "suffix": ("",)}
SAMPLING_ONLY = ("temperature", "top_p", "top_k", "seed", "n")
COMPLETION_FIELDS = {"model", "prompt", "max_tokens", "temperature", "top_p", "top_k", "n", "stop", "seed", "stream",
                     "stream_options", "echo", "user", "unk", "width", "top", "no_repeat", "length_penalty"}


@dataclass
class Completion:
    """A checked `POST /v1/completions` request."""

    prompts: list[str]  # one job per prompt
    model: str | None = None
    max_tokens: int = 16  # characters per choice (OpenAI's default length)
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    n: int = 1  # samples per prompt, drawn together as `charrnn sample -N n`
    stop: list[str] = field(default_factory=list)  # a choice ends before any of these (not included)
    seed: int | None = None
    stream: bool = False
    include_usage: bool = False  # stream_options.include_usage: a last chunk with the usage
    echo: bool = False  # put the prompt in front of each choice's text
    unk: str = "error"  # prompt characters the model never saw: error (listed) or skip (dropped)
    width: int | None = None  # beam search of this width, instead of sampling
    top: int = 1  # beams returned per prompt
    no_repeat: int = 0
    length_penalty: float = 0.0

    @property
    def beam(self) -> bool:
        return self.width is not None

    @property
    def choices_per_prompt(self) -> int:
        return self.top if self.beam else self.n


def parse_completion(body: dict, max_chars: int) -> Completion:
    f = Fields(body)
    f.refuse_unknown(COMPLETION_FIELDS, NEUTRAL)
    prompts = f.strings("prompt", MAX_CHOICES, "a string or an array of strings")
    if prompts is None:
        raise ApiError(400, "prompt is required: the text the model continues", "prompt")
    for p in prompts:
        if len(p) > max_chars:
            raise ApiError(400, f"prompt is {len(p):,} characters; this server takes at most {max_chars:,} (--max-chars)", "prompt")
    stop = f.strings("stop", MAX_STOPS, "a string or an array of up to 4 strings") or []
    if any(not s or len(s) > MAX_STOP_CHARS for s in stop):
        raise ApiError(400, f"stop strings must hold 1 to {MAX_STOP_CHARS} characters", "stop")
    options = body.get("stream_options")
    if options is not None and (not isinstance(options, dict) or set(options) - {"include_usage"}
                                or not isinstance(options.get("include_usage", False), bool)):
        raise ApiError(400, 'stream_options must be {"include_usage": true|false}', "stream_options")
    req = Completion(
        prompts=prompts,
        model=f.string("model", None),
        max_tokens=f.integer("max_tokens", 16, 1, max_chars),
        temperature=f.number("temperature", 1.0, 0.0, MAX_TEMP),
        top_p=f.number("top_p", 1.0, 0.0, 1.0, lo_open=True),
        top_k=f.integer("top_k", 0, 0, 2**31 - 1),
        n=f.integer("n", 1, 1, MAX_CHOICES),
        stop=stop,
        seed=f.integer("seed", None, -(2**63), 2**64 - 1),
        stream=f.boolean("stream", False),
        include_usage=bool((options or {}).get("include_usage", False)),
        echo=f.boolean("echo", False),
        unk=f.string("unk", "error", ("error", "skip")),
        width=f.integer("width", None, 1, MAX_WIDTH),
        no_repeat=f.integer("no_repeat", 0, 0, 10_000),
        length_penalty=f.number("length_penalty", 0.0, -MAX_LENGTH_PENALTY, MAX_LENGTH_PENALTY),
    )
    f.string("user", None)
    if options is not None and not req.stream:
        raise ApiError(400, "stream_options needs stream: true", "stream_options")
    if req.beam:
        for name in SAMPLING_ONLY:
            if f.given(name):
                raise ApiError(400, f"{name} does not apply to beam search (width); leave it out, or drop width to sample", name)
        req.top = f.integer("top", 1, 1, req.width)
    else:
        for name in ("top", "no_repeat", "length_penalty"):
            if f.given(name):
                raise ApiError(400, f"{name} applies to beam search only: give width too", name)
    if len(prompts) * req.choices_per_prompt > MAX_CHOICES:
        raise ApiError(400, f"{len(prompts)} prompts x {req.choices_per_prompt} choices is more than {MAX_CHOICES} per request", "n")
    total = req.max_tokens * len(prompts) * (1 if req.beam else req.n)
    if total > max_chars:
        raise ApiError(400, f"max_tokens x prompts x n = {total:,} characters; this server writes at most {max_chars:,} "
                            "per request (--max-chars)", "max_tokens")
    return req


@dataclass
class Score:
    """A checked `POST /v1/score` request."""

    text: str
    model: str | None = None
    top: int = 10  # most surprising spans to list


def parse_score(body: dict, max_chars: int) -> Score:
    f = Fields(body)
    f.refuse_unknown({"model", "text", "top"}, {})
    text = f.string("text", None)
    if text is None:
        raise ApiError(400, "text is required: the text to score", "text")
    if len(text) > max_chars:
        raise ApiError(400, f"text is {len(text):,} characters; this server scores at most {max_chars:,} (--max-chars)", "text")
    return Score(text, f.string("model", None), f.integer("top", 10, 0, 1000))
