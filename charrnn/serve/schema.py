"""Request bodies: parsed, checked and turned into settings, or refused with a message that says why.

Errors take OpenAI's shape, so existing clients show them:

    {"error": {"message": "temperature must be a number from 0 to 100 (0 = greedy), not -1",
               "type": "invalid_request_error", "param": "temperature", "code": null}}

`POST /v1/completions` takes OpenAI's completion fields where they apply, plus charrnn's own
(`top_k`, `unk`, beam search's `width`, `top`, `no_repeat`, `length_penalty`): they become one
`Sampling`, checked as the command line's is. `max_tokens` and `usage` count the model's tokens
(characters for a character model, word tokens or bytes for the others: the model card's `unit`).
`logprobs` (0 to 5, OpenAI's legacy limit; sampling only) scores every token written under the
model's own distribution (`jobs.py`). OpenAI fields with nothing to act on here (`best_of`,
`presence_penalty`, ...) are accepted at their neutral value only; any other field is refused
by name. `POST /v1/chat/completions` (`chat.py`) is a completion of the conversation's text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from charrnn.generation.settings import Sampling
from charrnn.util.errors import UsageError
from charrnn.util.fields import check, names, setting, short, unknown

MAX_CHOICES = 16  # prompts x n (or x top) per request
MAX_WIDTH = 32  # beams per search
MAX_STOPS, MAX_STOP_CHARS = 4, 64
MAX_NO_REPEAT = 10_000
SETTING_OF = {"max_tokens": "length"}  # an API field -> the Sampling setting it is
FIELD_OF = {v: k for k, v in SETTING_OF.items()}  # ... and back, for messages
SAMPLING_FIELDS = {FIELD_OF.get(n, n) for n in names(Sampling)}
MAX_LOGPROBS = 5  # likeliest tokens listed per step (OpenAI's legacy limit)
BEAM_ONLY = ("top", "no_repeat", "length_penalty")
SAMPLING_ONLY = ("temperature", "top_p", "top_k", "seed", "n", "logprobs")
# OpenAI fields with nothing to act on in a character model: accepted at these values only.
NEUTRAL = {"presence_penalty": (0,), "frequency_penalty": (0,), "logit_bias": ({},)}
COMPLETION_NEUTRAL = {**NEUTRAL, "best_of": (1,), "suffix": ("",)}


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
        raise ApiError(400, f"the request body must be a JSON object, not {type(body).__name__}")
    return body


@dataclass
class Request:
    """The fields of a completion request that are not sampling settings."""

    prompt: list[str] = setting(default_factory=list)  # one job per prompt (OpenAI's string or array of strings)
    model: str | None = None  # the served model's id, or left out
    stream: bool = False  # server-sent events as the text is written
    echo: bool = False  # put the prompt in front of each choice's text
    user: str | None = None  # OpenAI's end-user id: accepted, unused
    stream_options: dict | None = None  # {"include_usage": true}: a last chunk with the usage
    logprobs: int | None = setting(None, lo=0, hi=MAX_LOGPROBS, note="the likeliest tokens listed at each step")

    def __post_init__(self) -> None:
        check(self)


@dataclass
class Completion:
    """A checked `POST /v1/completions` request."""

    prompts: list[str]
    settings: Sampling  # length is max_tokens; width > 0 asks for beam search
    model: str | None = None
    stream: bool = False
    include_usage: bool = False
    echo: bool = False
    logprobs: int | None = None  # score each token, listing this many of the likeliest (None: no scores)
    chat: bool = False  # a /v1/chat/completions request (its prompt the rendered conversation)

    @property
    def choices_per_prompt(self) -> int:
        return self.settings.top if self.settings.width else self.settings.n


def checked(cls, values: dict):
    """`cls(**values)`, a refused value as a 400 naming the field as the API names it (`max_tokens`, not `length`)."""
    try:
        return cls(**values)
    except UsageError as e:
        param = FIELD_OF.get(e.settings[0], e.settings[0]) if e.settings else None
        raise ApiError(400, e.naming(FIELD_OF), param) from None


def refuse_unknown(body: dict, known: set[str], neutral: dict) -> None:
    for name, value in body.items():
        if name in neutral:
            if value is not None and value not in neutral[name]:
                raise ApiError(400, f"{name} is not supported by charrnn serve (leave it out)", name)
        elif name not in known:
            raise ApiError(400, str(unknown(name[:60], sorted(known), noun="field")), name[:60])


def refuse(ok: bool, message: str, param: str) -> None:
    if not ok:
        raise ApiError(400, message, param)


def sampling(body: dict, max_chars: int, turn_ends: tuple[str, ...] = ()) -> Sampling:
    """The request's sampling settings, checked as any Sampling is, then against this server's limits; a chat's
    `turn_ends` join its own stop strings (beyond their limit: they are the server's)."""
    values = {SETTING_OF.get(k, k): v for k, v in body.items() if k in SAMPLING_FIELDS and v is not None}
    values.setdefault("length", 16)  # OpenAI's default
    stop = values.get("stop")
    if isinstance(stop, str) or isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        values["stop"] = (stop,) if isinstance(stop, str) else tuple(stop)
        refuse(len(values["stop"]) <= MAX_STOPS and all(len(s) <= MAX_STOP_CHARS for s in values["stop"]),
               f"stop must hold at most {MAX_STOPS} strings of 1 to {MAX_STOP_CHARS} characters", "stop")
    if turn_ends and isinstance(values.get("stop", ()), tuple):  # (a stop of another type is refused below)
        values["stop"] = tuple(dict.fromkeys((*values.get("stop", ()), *turn_ends)))
    s = checked(Sampling, values)
    width = body.get("width")
    refuse(width is None or s.width >= 1, "width must be an integer from 1 to 32 (beam search)", "width")
    for name in BEAM_ONLY if width is None else SAMPLING_ONLY:
        refuse(body.get(name) is None, f"{name} applies to beam search only: give width too" if width is None else
               f"{name} does not apply to beam search (width); leave it out, or drop width to sample", name)
    limits = [("max_tokens", s.length, 1, max_chars), ("n", s.n, 1, MAX_CHOICES), ("width", s.width, 0, MAX_WIDTH),
              ("no_repeat", s.no_repeat, 0, MAX_NO_REPEAT), ("top_k", s.top_k, 0, 2**31 - 1)]
    for name, value, lo, hi in limits:
        refuse(lo <= value <= hi, f"{name} must be an integer from {lo:,} to {hi:,} on this server, not {short(value)}",
               name)
    return s


def parse_completion(body: dict, max_chars: int) -> Completion:
    """A checked `POST /v1/completions` request."""
    refuse_unknown(body, {*names(Request), *SAMPLING_FIELDS}, COMPLETION_NEUTRAL)
    return completion_fields(body, max_chars)


def completion_fields(body: dict, max_chars: int, turn_ends: tuple[str, ...] | None = None) -> Completion:
    """A completion from a body whose fields are known: the request's own fields, then its `Sampling`
    (`turn_ends`: those of a chat, whose prompt is its conversation; None for a text completion)."""
    refuse(body.get("prompt") is not None, "prompt is required: the text the model continues", "prompt")
    values = {k: v for k, v in body.items() if k in names(Request) and v is not None}
    values["prompt"] = [values["prompt"]] if isinstance(values["prompt"], str) else values["prompt"]
    req = checked(Request, values)
    refuse(1 <= len(req.prompt) <= MAX_CHOICES, f"prompt must hold 1 to {MAX_CHOICES} strings, not {len(req.prompt)}",
           "prompt")
    for p in req.prompt:
        refuse(len(p) <= max_chars, f"prompt is {len(p):,} characters; this server takes at most {max_chars:,} "
               "(--max-chars)", "prompt")
    options = req.stream_options
    refuse(options is None or set(options) <= {"include_usage"} and isinstance(options.get("include_usage", False), bool),
           'stream_options must be {"include_usage": true|false}', "stream_options")
    refuse(options is None or req.stream, "stream_options needs stream: true", "stream_options")
    refuse(req.logprobs is None or not req.echo, "logprobs with echo would score the prompt: POST /v1/score "
           "gives each character's surprisal", "logprobs")
    done = Completion(req.prompt, sampling(body, max_chars, turn_ends or ()), req.model, req.stream,
                      bool((options or {}).get("include_usage")), req.echo, req.logprobs, turn_ends is not None)
    per = done.choices_per_prompt
    refuse(len(req.prompt) * per <= MAX_CHOICES, f"{len(req.prompt)} prompts x {per} choices is more than "
           f"{MAX_CHOICES} per request", "n")
    total = done.settings.length * len(req.prompt) * (1 if done.settings.width else done.settings.n)
    refuse(total <= max_chars, f"max_tokens x prompts x n = {total:,} tokens; this server writes at most "
           f"{max_chars:,} per request (--max-chars)", "max_tokens")
    return done


@dataclass
class Score:
    """A checked `POST /v1/score` request."""

    text: str = setting(default_factory=str)  # the text to score
    model: str | None = None
    top: int = setting(10, lo=0, hi=1000)  # most surprising spans to list

    def __post_init__(self) -> None:
        check(self)


def parse_score(body: dict, max_chars: int) -> Score:
    refuse_unknown(body, set(names(Score)), {})
    refuse(body.get("text") is not None, "text is required: the text to score", "text")
    req = checked(Score, {k: v for k, v in body.items() if v is not None})
    refuse(len(req.text) <= max_chars, f"text is {len(req.text):,} characters; this server scores at most "
           f"{max_chars:,} (--max-chars)", "text")
    return req
