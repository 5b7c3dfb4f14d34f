"""`POST /v1/chat/completions`: a conversation's messages as the text a model continues, and where its turn ends.

A char-rnn model knows text, not roles. By default a conversation is written as a play, one turn
per message, the layout of a play's text and of `charrnn chat` (a name line, the speech, a blank line):

    messages                                                  the prompt the model continues
    {"role": "system", "content": "Verona. A street."}        SYSTEM:\\nVerona. A street.\\n\\n
    {"role": "user", "name": "ROMEO", "content": "Peace!"}    ROMEO:\\nPeace!\\n\\n
    (the answer)                                              ASSISTANT:\\n

Each message's speaker is its `name`, else its role's: USER, ASSISTANT, SYSTEM (also for
"developer"). The answer is the next assistant's turn: its name is that of the last assistant
message that had one (so a conversation with JULIET goes on with JULIET), else ASSISTANT. A last
message from the assistant is continued, not answered: `{"role": "assistant", "name": "JULIET",
"content": ""}` last makes JULIET speak next, and content there starts her speech.

The answer ends at the next turn: the end of a turn (a blank line) or a new line that starts with
a speaker's name ("\\nROMEO:"); neither is part of the answer. These are added to the request's
own `stop` strings; every other field is /v1/completions' (one `Sampling`, the same limits).

The format is the server's (`charrnn serve --chat-format`): "play" (the default, "{name}:\\n{content}\\n\\n"),
"plain" ("{content}\\n\\n": the speeches alone, for a model that never saw names), "lines" ("{content}\\n":
one line each, for a model of names or short lines), or any template with {content} once, {name} at
most once before it, and the turn's end after it.
"""

from __future__ import annotations

from dataclasses import dataclass

from charrnn.serve.schema import (MAX_LOGPROBS, NEUTRAL, SAMPLING_FIELDS, ApiError, Completion, completion_fields,
                                  refuse, refuse_unknown)
from charrnn.util.errors import UsageError
from charrnn.util.showtext import visible

FORMATS = {"play": "{name}:\n{content}\n\n", "plain": "{content}\n\n", "lines": "{content}\n"}
ROLE_NAMES = {"system": "SYSTEM", "developer": "SYSTEM", "user": "USER", "assistant": "ASSISTANT"}
MAX_NAME = 64  # characters in a speaker's name
NAME_STOPS = 8  # the most recent speakers whose name starting a line ends an answer
CHAT_FIELDS = {"messages", "model", "stream", "stream_options", "user", "max_completion_tokens", "logprobs",
               "top_logprobs"} | SAMPLING_FIELDS
CHAT_NEUTRAL = {**NEUTRAL, "response_format": ({"type": "text"},)}


@dataclass(frozen=True)
class ChatFormat:
    """How one turn is written: `head` (with {name}) before the message's text, `end` after it."""

    head: str
    end: str

    @classmethod
    def parse(cls, spec: str) -> ChatFormat:
        """'play', 'plain', 'lines' or a template: '{name}:\\n{content}\\n\\n'."""
        template = FORMATS.get(spec, spec)
        head, content, end = template.partition("{content}")
        if not content or "{content}" in end or "{name}" in end or head.count("{name}") > 1:
            raise UsageError("chat_format must be play, plain, lines or a template with {content} once "
                             f"and {{name}} at most once before it, not {visible(spec)[:80]!r}", "chat_format")
        if not end:
            raise UsageError("chat_format must end a turn after {content} (e.g. a blank line: '\\n\\n'): "
                             "an answer stops there", "chat_format")
        return cls(head, end)

    @property
    def template(self) -> str:
        return self.head + "{content}" + self.end

    def turn_head(self, name: str) -> str:
        return self.head.replace("{name}", name)

    def stops(self, names: list[str]) -> tuple[str, ...]:
        """Where an answer ends: the end of a turn, or (with names) a line starting a recent speaker's turn."""
        named = [("\n" + self.turn_head(n)).rstrip() for n in names[-NAME_STOPS:]] if "{name}" in self.head else []
        return tuple(dict.fromkeys([self.end, *(s for s in named if s.strip())]))


@dataclass(frozen=True)
class Message:
    name: str
    content: str
    assistant: bool


def text_of(content, at: str) -> str:
    """A message's content: a string, or OpenAI's list of {"type": "text", "text": ...} parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" and
                                         isinstance(p.get("text"), str) for p in content):
        return "".join(p["text"] for p in content)
    raise ApiError(400, f"{at}.content must be a string or a list of text parts: this model reads text only",
                   "messages")


def message(m, i: int) -> Message:
    at = f"messages[{i}]"
    refuse(isinstance(m, dict), f"{at} must be an object with role and content", "messages")
    role = m.get("role")
    refuse(isinstance(role, str) and role in ROLE_NAMES, f"{at}.role must be one of {', '.join(ROLE_NAMES)}, "
           f"not {str(role)[:40]!r} (this model writes text only: no tools)", "messages")
    for key, value in m.items():  # a message sent back as the client got it may carry empty extras
        refuse(key in ("role", "content", "name") or value in (None, [], ""),
               f"{at}.{str(key)[:40]} is not supported (a message has role, content and name)", "messages")
    name = m.get("name")
    refuse(name is None or isinstance(name, str) and 0 < len(name) <= MAX_NAME and name.isprintable(),
           f"{at}.name must be 1 to {MAX_NAME} printable characters on one line", "messages")
    return Message(name or ROLE_NAMES[role], text_of(m.get("content"), at), role == "assistant")


def conversation(body: dict) -> list[Message]:
    messages = body.get("messages")
    refuse(isinstance(messages, list) and messages, "messages is required: a list of {role, content} objects",
           "messages")
    return [message(m, i) for i, m in enumerate(messages)]


def render(fmt: ChatFormat, messages: list[Message]) -> tuple[str, tuple[str, ...]]:
    """(the prompt, the stop strings of the answer): the conversation as `fmt` writes it, then the answer's head."""
    told = messages[:-1] if messages[-1].assistant else messages
    text = "".join(fmt.turn_head(m.name) + m.content + fmt.end for m in told)
    if messages[-1].assistant:  # continued: its head and what it has said so far
        speaker, text = messages[-1].name, text + fmt.turn_head(messages[-1].name) + messages[-1].content
    else:
        speaker = next((m.name for m in reversed(messages) if m.assistant), ROLE_NAMES["assistant"])
        text += fmt.turn_head(speaker)
    names = list(dict.fromkeys(m.name for m in reversed(messages)))[::-1]  # each once, most recent last
    return text, fmt.stops([n for n in names if n != speaker] + [speaker])


def chat_fields(body: dict) -> dict:
    """A chat body's fields as /v1/completions has them: max_completion_tokens, logprobs + top_logprobs."""
    out = {k: v for k, v in body.items() if k not in ("messages", "max_completion_tokens", "logprobs", "top_logprobs")}
    if body.get("max_completion_tokens") is not None:
        refuse(body.get("max_tokens") is None, "give max_tokens or max_completion_tokens, not both",
               "max_completion_tokens")
        out["max_tokens"] = body["max_completion_tokens"]
    wants, top = body.get("logprobs"), body.get("top_logprobs")
    refuse(wants is None or isinstance(wants, bool), "logprobs must be true or false", "logprobs")
    refuse(top is None or isinstance(top, int) and not isinstance(top, bool) and 0 <= top <= MAX_LOGPROBS,
           f"top_logprobs must be an integer from 0 to {MAX_LOGPROBS} on this server", "top_logprobs")
    refuse(top is None or wants, "top_logprobs needs logprobs: true", "top_logprobs")
    if wants:
        out["logprobs"] = top if top is not None else 0
    return out


def parse_chat(body: dict, max_chars: int, fmt: ChatFormat) -> Completion:
    """A checked `POST /v1/chat/completions` request, as the completion of its rendered conversation."""
    refuse_unknown(body, CHAT_FIELDS, CHAT_NEUTRAL)
    prompt, stops = render(fmt, conversation(body))
    refuse(len(prompt) <= max_chars, f"the conversation is {len(prompt):,} characters as the model reads it; "
           f"this server takes at most {max_chars:,} (--max-chars)", "messages")
    return completion_fields({**chat_fields(body), "prompt": prompt}, max_chars, turn_ends=stops)
