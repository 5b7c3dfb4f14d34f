"""How text is written: one settings object, checked once, for sampling, beam search and chat.

    Sampling(temperature=0.8, top_p=0.9, stop=("\\n\\n",), length=300)    draws (width 0)
    Sampling(width=5, top=3, no_repeat=12)                               beam search of width 5

`charrnn sample`, `beam`, `chat`, `serve` and the Python API each build one from what they were
given, and it refuses a bad value naming the setting (`temperature must be a number from 0 to
100 (0 = greedy), not -1`). Each edge shows that name in its own words: the CLI as its flag
(`--temp`), the HTTP API as its JSON field (`max_tokens` for `length`), chat as its /command.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from charrnn.text.kinds import UNK_POLICIES
from charrnn.util.errors import UsageError
from charrnn.util.fields import check, setting

MAX_SEED = 2**64 - 1  # torch's generators take 64-bit seeds (a negative one is the same as its 2**64 complement)
MAX_TEMP = 100.0  # at 100 every token is already near-uniform; above, logits/T underflows
MAX_LENGTH_PENALTY = 10.0  # beam ranking logprob / len**alpha: beyond +-10, len**alpha overflows or underflows
MAX_LENGTH = 10**12  # tokens: a bound on the arithmetic, far beyond any memory (which is checked where it is known)


@dataclass(frozen=True)
class Sampling:
    length: int = setting(500, lo=0, hi=MAX_LENGTH)  # tokens to write at most: characters for a character model
    temperature: float = setting(1.0, lo=0, hi=MAX_TEMP, note="0 = greedy")  # logits / T before the draw
    top_k: int = setting(0, lo=0, note="0 = off")  # draw only from the k most likely tokens
    top_p: float = setting(1.0, above=0, hi=1)  # ... from the smallest set holding this much probability
    seed: int | None = setting(None, lo=-(2**63), hi=MAX_SEED, shown="an integer from -2**63 to 2**64 - 1")
    stop: tuple[str, ...] = ()  # a text ends once it writes one of these
    n: int = setting(1, lo=1)  # samples drawn together in one batch, each its own stream
    unk: str = setting("error", choices=UNK_POLICIES)  # prime characters the model never saw: refuse, or skip them
    width: int = setting(0, lo=0, note="0 = sample")  # beam search of this width instead of a draw
    top: int = setting(1, lo=1)  # beams reported, best first (at most width)
    no_repeat: int = setting(0, lo=0, note="0 = off")  # a beam may not write any N-token sequence twice
    length_penalty: float = setting(0.0, lo=-MAX_LENGTH_PENALTY, hi=MAX_LENGTH_PENALTY,
                                    note="0 = total log-prob, 1 = per character")  # beams ranked by logprob / len**alpha

    def __post_init__(self) -> None:
        check(self)
        if "" in self.stop:
            raise UsageError("stop strings must not be empty", "stop")
        if self.width and self.top > self.width:
            raise UsageError(f"top must be between 1 and width ({self.width}): search only keeps width beams",
                             "top", "width")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def describe(self, names: dict[str, str] | None = None) -> str:
        """'temperature 0.8, top_k 0, ...': every setting, each called what `names` calls it."""
        names = names or {}
        return ", ".join(f"{names.get(f.name, f.name)} {getattr(self, f.name)!r}" for f in fields(self))


CHAT = Sampling(temperature=0.8, stop=("\n\n",))  # `charrnn chat`'s answers: until a blank line
BEAM = Sampling(width=5)  # `charrnn beam`'s search
