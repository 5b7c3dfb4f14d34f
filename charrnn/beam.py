"""Beam search: the continuation the model itself believes most, not a random draw.

Sampling shows what a model *could* write. Beam search looks for the continuation with the
highest total log-probability, sum_t log p(c_t | prime, c_1 .. c_t-1). Trying all V^n
continuations is impossible, so it keeps the `width` best partial continuations ("beams")
and extends them one character at a time. Each step is a handful of small moves:

    live beams (B <= width) --model.step--> logits (B, V)
      1. score    every extension: beam log-prob + log_softmax(logits)          (B, V)
      2. guard    --no-repeat bans -> -inf; extensions completing a --stop string
                  leave for the pool of finished beams
      3. top-k    over the flattened (B * V) scores: the `width` best extensions
      4. split    flat index -> (beam it extends, character it adds)
      5. reorder  the recurrent state by beam index: h[:, beam_idx] (and c for an LSTM)
      6. finish?  stop when no live beam can beat the finished ones any more
      7. settle   report the prefix that every possible winner already shares

Search starts from the primed state with ONE live beam, so the first top-k picks distinct
characters instead of `width` copies of the same one. Everything is deterministic: width 1
is greedy decoding, and a width of V^n or more is exhaustive search over n characters.

Length penalty (`length_penalty`, alpha): finished beams of different lengths are compared
by logprob / len**alpha, the simple power form (as in Hugging Face transformers), not GNMT's
((5 + len) / 6)**alpha. alpha = 0 compares raw sums (every character costs, so shorter
wins); alpha = 1 compares the mean log-probability per character.

Streaming: the winner is always either the best finished beam or a descendant of a live
beam, so the prefix shared by all live beams and the best finished one can never change.
`on_settled` receives that prefix piece by piece as it grows, and the rest of the winner when
search ends: the pieces joined are exactly the best beam's text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch

from charrnn.errors import UsageError
from charrnn.evaluation import LN2
from charrnn.model import CharRNN
from charrnn.sampling import ThreadWatch, prime_ids_for, prime_model
from charrnn.stepkernels import make_kernel
from charrnn.vocab import Vocab



@dataclass
class Beam:
    text: str  # the continuation (the prime is not part of it)
    logprob: float  # total log-probability of `text` after the prime, in nats (sum of per-character log p)
    finished: bool = False  # True when it ended by producing a --stop string
    bits_per_char: float = field(init=False)  # -logprob / len(text) / ln 2 (0 for an empty text)

    def __post_init__(self) -> None:
        self.bits_per_char = -self.logprob / len(self.text) / LN2 if self.text else 0.0

    def score(self, length_penalty: float = 0.0) -> float:
        """What beams are ranked by: logprob / len**alpha (plain logprob when alpha is 0)."""
        return self.logprob / len(self.text) ** length_penalty if self.text else self.logprob

    def to_dict(self) -> dict:
        return {**asdict(self), "chars": len(self.text)}


def check_beam_args(width: int, length: int, top: int, no_repeat: int, stop: Sequence[str],
                    length_penalty: float = 0.0) -> None:
    if width < 1:
        raise UsageError("--width must be >= 1")
    if length < 0:
        raise UsageError("--length must be >= 0")
    if not math.isfinite(length_penalty):
        raise UsageError("--length-penalty must be a number (0 = total log-prob, 1 = per character)")
    if not 1 <= top <= width:
        raise UsageError(f"--top must be between 1 and --width ({width}): search only keeps --width beams")
    if no_repeat < 0:
        raise UsageError("--no-repeat must be >= 0 (0 = off)")
    if any(s == "" for s in stop):
        raise UsageError("--stop strings must not be empty")


def repeat_mask(texts: list[str], n: int, ids: dict[str, int], vocab_size: int) -> torch.Tensor:
    """(B, V) True where adding that character would repeat an n-character sequence the beam already wrote.

    The last n-1 characters plus the new one form the candidate n-gram; it is banned if the
    same n-1 characters occur earlier in the beam's text followed by that character.
    """
    mask = torch.zeros(len(texts), vocab_size, dtype=torch.bool)  # (B, V)
    for b, text in enumerate(texts):
        if len(text) < n - 1:
            continue
        context = text[len(text) - (n - 1) :]
        after = re.findall(f"(?={re.escape(context)}(.))", text, re.S)  # every char that followed it
        mask[b, [ids[c] for c in set(after)]] = True
    return mask


def stop_mask(texts: list[str], stops: list[tuple[str, int]], vocab_size: int) -> torch.Tensor:
    """(B, V) True where adding that character completes a stop string. stops: (all but last char, last id)."""
    mask = torch.zeros(len(texts), vocab_size, dtype=torch.bool)  # (B, V)
    for b, text in enumerate(texts):
        for head, last in stops:
            if text.endswith(head):
                mask[b, last] = True
    return mask


def shared_prefix_len(texts: list[str], start: int) -> int:
    """Length of the prefix all `texts` share, given that they share the first `start` characters.

    Gallops forward from `start` (1, 2, 4 ... characters, compared in C by `startswith`), so
    a step costs about as much as the newly shared stretch, not the length of the texts.
    """
    first, end = texts[0], min(map(len, texts))

    def shared(k: int) -> bool:
        piece = first[start:k]
        return all(t.startswith(piece, start) for t in texts[1:])

    lo, step = start, 1  # invariant: texts share [:lo]
    while lo < end and shared(min(lo + step, end)):
        lo, step = min(lo + step, end), step * 2
    hi = min(lo + step, end)  # texts differ somewhere in [lo, hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if shared(mid) else (lo, mid)
    return lo


def best_possible(logprob: float, cur_len: int, length: int, alpha: float) -> float:
    """The highest score a live beam could still reach: log-probs only fall as it grows, and its
    length stays in [cur_len, length], so logprob / L**alpha peaks at one of the two ends."""
    return max(logprob / cur_len**alpha, logprob / length**alpha)


def pool_finished(scores: torch.Tensor, texts: list[str], stops: list, vocab: Vocab, finished: list[Beam],
                  top: int, alpha: float) -> tuple[torch.Tensor, list[Beam]]:
    """Extensions that complete a stop string leave the search: kept in the finished pool (its
    `top` best), their scores (B, V) set to -inf so no live beam continues past a stop."""
    ends = stop_mask(texts, stops, len(vocab))  # (B, V)
    if not ends.any():
        return scores, finished
    ends = ends.to(scores.device)
    for (b, v), lp in zip(ends.nonzero().tolist(), scores[ends].tolist()):
        if lp > float("-inf"):
            finished.append(Beam(texts[b] + vocab.chars[v], lp, finished=True))
    finished = sorted(finished, key=lambda x: x.score(alpha), reverse=True)[:top]
    return scores.masked_fill(ends, float("-inf")), finished


class BeamSearch:
    """One search, advanced a character at a time by whoever steps the model: steps 1-7 above.

    `beam_search` below drives one search alone. `charrnn serve` drives many at once, each
    search's live beams being rows of one shared batch: it hands `advance` the logits of its
    rows and reorders those rows by the beam index it gets back.
    """

    def __init__(self, vocab: Vocab, width: int = 5, length: int = 500, stop: Sequence[str] = (),
                 length_penalty: float = 0.0, no_repeat: int = 0, top: int = 1,
                 on_settled: Callable[[str], object] | None = None):
        check_beam_args(width, length, top, no_repeat, stop)
        self.vocab, self.width, self.length, self.top = vocab, width, length, top
        self.alpha, self.no_repeat, self.on_settled = length_penalty, no_repeat, on_settled
        self.ids = {c: i for i, c in enumerate(vocab.chars)}
        # a stop string holding a character the model never saw can never be produced
        self.stops = [(s[:-1], self.ids[s[-1]]) for s in stop if all(c in self.ids for c in s)]
        self.texts = [""]  # live beams' continuations: ONE live beam at the start
        self.logprobs: torch.Tensor | None = None  # (B,) their total log-probabilities
        self.finished: list[Beam] = []  # the `top` best finished beams, best first
        self.settled = 0  # characters of the best text already reported to on_settled
        self.t = 0  # characters added so far
        self.over = length == 0

    @property
    def rows(self) -> int:
        """Live beams: the rows of the batch this search steps."""
        return len(self.texts)

    def advance(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Logits (B, V) after the live beams -> (tokens (B',), beam_idx (B',)) to step next; None once over.

        The caller reorders the recurrent state by beam_idx (`reorder_state`) and steps the tokens.
        """
        if self.over:
            return None
        V, alpha, t = len(self.vocab), self.alpha, self.t
        if self.logprobs is None:
            self.logprobs = torch.zeros(1, device=logits.device)
        texts, finished = self.texts, self.finished
        # 1. score every one-character extension of every live beam
        scores = self.logprobs[:, None] + torch.log_softmax(logits.float(), dim=-1)  # (B, V)
        # 2. guard: banned repeats can't be chosen; stop-completing extensions go to the pool
        if self.no_repeat:
            scores = scores.masked_fill(repeat_mask(texts, self.no_repeat, self.ids, V).to(scores.device), float("-inf"))
        if self.stops:
            scores, finished = pool_finished(scores, texts, self.stops, self.vocab, finished, self.top, alpha)
            self.finished = finished
        # 3. top-k over (beams x vocab); sorted, so any banned (-inf) ones come last
        best, flat = scores.flatten().topk(min(self.width, scores.numel()))  # (k,)
        best_list = best.tolist()  # on the host: stopping decisions are made there
        alive = sum(lp > float("-inf") for lp in best_list)
        if not alive:  # no extension is allowed: search ends here
            if finished:  # the finished beams win; otherwise the stuck ones are returned unfinished
                self.texts, self.logprobs = [], self.logprobs[:0]
            return self._end()
        best, flat = best[:alive], flat[:alive]
        # 4. split the flat index into the beam it extends and the character it adds
        beam_idx, tokens = flat // V, flat % V  # (B',)
        # 5. the caller reorders the recurrent state by beam index; the texts are reordered here
        self.texts = [texts[b] + self.vocab.chars[v] for b, v in zip(*torch.stack([beam_idx, tokens]).tolist())]
        self.logprobs = best
        self.t = t + 1
        # 6. finished? the top finished beams can no longer be beaten by any live one
        if len(finished) >= self.top and finished[-1].score(alpha) >= best_possible(best_list[0], t + 1, self.length, alpha):
            return self._end()
        # 7. settle: the prefix every possible winner shares is final
        common = shared_prefix_len(self.texts + [finished[0].text] if finished else self.texts, self.settled)
        if self.on_settled is not None and common > self.settled:
            if self.on_settled(self.texts[0][self.settled : common]) is False:
                self.on_settled = None  # the caller stopped listening: return what we have
                return self._end()
        self.settled = common
        if self.t >= self.length:
            return self._end()
        return tokens, beam_idx

    def _end(self) -> None:
        self.over = True
        return None

    def result(self) -> list[Beam]:
        """The `top` best beams, best first; reports the rest of the best text to on_settled (once)."""
        self.over = True
        logprobs = self.logprobs.tolist() if self.logprobs is not None else [0.0]  # None: never advanced
        live = [Beam(text, lp) for text, lp in zip(self.texts, logprobs)]
        beams = sorted(self.finished + live, key=lambda x: x.score(self.alpha), reverse=True)[: self.top]
        if self.on_settled is not None and beams and len(beams[0].text) > self.settled:
            self.on_settled(beams[0].text[self.settled :])
            self.settled = len(beams[0].text)
        return beams


@torch.inference_mode()
def beam_search(
    model: CharRNN,
    vocab: Vocab,
    prime: str = "",
    width: int = 5,
    length: int = 500,
    stop: Sequence[str] = (),
    length_penalty: float = 0.0,
    no_repeat: int = 0,
    top: int = 1,
    unk: str = "error",
    on_settled: Callable[[str], object] | None = None,
    kernel: str = "fp32",
) -> list[Beam]:
    """The `top` best continuations of `prime` (up to `length` characters), best first.

    stop: strings that end a beam (it is kept, stop string included, in a finished pool).
    length_penalty: alpha in logprob / len**alpha for ranking beams of different lengths.
    no_repeat: if N > 0, a beam may not write any N-character sequence twice (guards loops).
    on_settled: called with each newly certain piece of the best text (see module docstring);
        returning False stops the search early (e.g. the reader of a pipe went away).
    kernel: the step kernel (`charrnn.stepkernels`): fp32 scores exactly as `CharRNN.step`;
        bf16 and int8 store the matrices smaller, faster where the CPU is good at them
        (`choose_kernel` measures which), their scores ~1e-3 nats per character off fp32's,
        which can reorder near-ties.
    """
    search = BeamSearch(vocab, width, length, stop, length_penalty, no_repeat, top, on_settled)
    model.eval()
    logits, state = prime_model(model, prime_ids_for(vocab, prime, unk))  # (1, V), state of batch 1
    stepper = make_kernel(model, kernel, 1)  # holds the live beams' state from here on
    stepper.reset(state)
    watch = ThreadWatch(model)  # one thread from the step the search slows down (a core got busy)
    while (chosen := search.advance(logits)) is not None:
        tokens, beam_idx = chosen
        stepper.reorder(beam_idx)
        with watch:
            logits = stepper.step(tokens)  # (B', V), overwritten by the next step
    return search.result()
