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

Length penalty alpha: beams of different lengths are ranked by logprob / len**alpha (Hugging Face's
power form, not GNMT's): 0 compares raw sums (shorter wins), 1 the mean log-probability per character.

Streaming: the winner is the best finished beam or a descendant of a live one, so the prefix
they all share can never change. `on_settled` receives it piece by piece as it grows, and the
rest of the winner when search ends: the pieces joined are exactly the best beam's text.

Any kind of token: a step adds one token, a beam's text is built from the tokens' `pieces` (for
a byte model the bytes as characters chr(b), turned into text by `vocab.surface_decoder` and
`vocab.from_surface`), and stop strings are matched in it, also inside a word token.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace

import torch

from charrnn.generation.settings import BEAM, Sampling
from charrnn.util.errors import UsageError
from charrnn.inspect.evaluation import LN2
from charrnn.model.rnn import CharRNN
from charrnn.generation.sampling import ThreadWatch, prime_ids_for, prime_model
from charrnn.model.kernels import make_kernel
from charrnn.runtime.memory import check_search_steps
from charrnn.text.vocab import Vocab


@dataclass
class Beam:
    text: str  # the continuation (the prime is not part of it)
    logprob: float  # total log-probability of `text` after the prime, in nats (sum of per-token log p)
    finished: bool = False  # True when it ended by producing a --stop string
    bits_per_char: float = field(init=False)  # -logprob / len(text) / ln 2 (0 for an empty text)

    def __post_init__(self) -> None:
        self.bits_per_char = -self.logprob / len(self.text) / LN2 if self.text else 0.0

    def score(self, length_penalty: float = 0.0) -> float:
        """What beams are ranked by: logprob / len**alpha (plain logprob when alpha is 0)."""
        return self.logprob / len(self.text) ** length_penalty if self.text else self.logprob

    def to_dict(self) -> dict:
        return {**asdict(self), "chars": len(self.text)}


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


def stop_targets(pieces, stops: Sequence[str]) -> list[tuple[str, list[int]]]:
    """For each way a token can complete a stop string s: (the text it must follow, those tokens' ids).

    A token whose piece holds s follows anything (""); one whose piece starts with s[k:] must
    follow s[:k]. For characters this is just (s[:-1], [id of s[-1]]). A stop string holding a
    character no token has can never be produced, and gets no entries.
    """
    out, written = [], set().union(*pieces)
    for s in stops:
        if not set(s) <= written:
            continue
        cases = [("", [v for v, p in enumerate(pieces) if s in p])]
        cases += [(s[:k], [v for v, p in enumerate(pieces) if p.startswith(s[k:])]) for k in range(1, len(s))]
        out += [(head, ids) for head, ids in cases if ids]
    return out


def token_symbols(n: int) -> str:
    """n distinct characters, one per token id, to spell token sequences as strings (for --no-repeat)."""
    return "".join(chr(i if i < 0xD800 else i + 0x800) for i in range(n))  # (skipping the surrogates)


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


def pool_finished(scores: torch.Tensor, texts: list[str], stops: list, vocab: Vocab, finished: list[tuple[Beam, str]],
                  top: int, alpha: float) -> tuple[torch.Tensor, list[tuple[Beam, str]]]:
    """Extensions that complete a stop string leave the search: kept in the finished pool (its
    `top` best, each with its surface text), their scores (B, V) set to -inf so no live beam
    continues past a stop. stops: (text before, ids that complete it), from `stop_targets`."""
    ends = torch.zeros(len(texts), len(vocab), dtype=torch.bool)  # (B, V) True where the token completes a stop
    for b, text in enumerate(texts):
        for head, last in stops:
            if text.endswith(head):
                ends[b, last] = True
    if not ends.any():
        return scores, finished
    ends = ends.to(scores.device)
    for (b, v), lp in zip(ends.nonzero().tolist(), scores[ends].tolist()):
        if lp > float("-inf"):
            surface = texts[b] + vocab.pieces[v]
            finished.append((Beam(vocab.from_surface(surface), lp, finished=True), surface))
    finished = sorted(finished, key=lambda x: x[0].score(alpha), reverse=True)[:top]
    return scores.masked_fill(ends, float("-inf")), finished


class BeamSearch:
    """One search, advanced a token at a time by whoever steps the model: steps 1-7 above.

    `beam_search` drives one alone; `charrnn serve` many at once, each one's live beams rows of a
    shared batch: it hands `advance` their logits and reorders them by the beam index it gets back.
    """

    def __init__(self, vocab: Vocab, settings: Sampling = BEAM, on_settled: Callable[[str], object] | None = None):
        s = settings
        if not s.width:
            raise UsageError("width must be at least 1 for a beam search", "width")
        check_search_steps(s.width, s.length)  # (its memory: `sampling.check_batch_memory`, before a model is stepped)
        self.vocab, self.width, self.length, self.top = vocab, s.width, s.length, s.top
        self.alpha, self.no_repeat = s.length_penalty, s.no_repeat
        self.pieces = vocab.pieces  # what each token adds to a beam's text ("surface": bytes as chr(b))
        self.single = all(len(p) == 1 for p in self.pieces)  # one character per token: a text is its token sequence
        self.symbols = self.pieces if self.single else token_symbols(len(self.pieces))
        self.ids = {c: i for i, c in enumerate(self.symbols)}
        self.stops = stop_targets(self.pieces, [vocab.surface(stop) for stop in s.stop])
        self.longest = s.length if (vocab.char_counts == 1).all() else math.inf  # characters: unknown for words, bytes
        self.guard = vocab.guard(1)  # a byte model's UTF-8 automaton, or None
        self.on_settled = None
        if on_settled is not None:
            to_text = vocab.surface_decoder()
            self.on_settled = lambda surface: on_settled(to_text(surface))
        self.texts = [""]  # live beams' continuations, as surface text: ONE live beam at the start
        self.seqs = self.texts  # ... as token symbols (--no-repeat): the same unless a token is several characters
        self.logprobs: torch.Tensor | None = None  # (B,) their total log-probabilities
        self.finished: list[tuple[Beam, str]] = []  # the `top` best finished beams (and surface texts), best first
        self.settled = 0  # surface characters of the best text already reported to on_settled
        self.t = 0  # tokens added so far
        self.over = s.length == 0

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
        # 1. score every one-token extension of every live beam
        scores = self.logprobs[:, None] + torch.log_softmax(logits.float(), dim=-1)  # (B, V)
        # 2. guard: invalid bytes and banned repeats can't be chosen; stop-completing extensions go to the pool
        if self.guard is not None:
            scores = scores.masked_fill(~torch.from_numpy(self.guard.allowed()).to(scores.device), float("-inf"))
        if self.no_repeat:
            scores = scores.masked_fill(repeat_mask(self.seqs, self.no_repeat, self.ids, V).to(scores.device),
                                        float("-inf"))
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
        # 4. split the flat index into the beam it extends and the token it adds
        beam_idx, tokens = flat // V, flat % V  # (B',)
        # 5. the caller reorders the recurrent state by beam index; the texts (and the guard) are reordered here
        pairs = torch.stack([beam_idx, tokens]).tolist()
        self.texts = [texts[b] + self.pieces[v] for b, v in zip(*pairs)]
        if not self.single and self.no_repeat:
            self.seqs = [self.seqs[b] + self.symbols[v] for b, v in zip(*pairs)]
        else:
            self.seqs = self.texts
        if self.guard is not None:
            self.guard.reorder(pairs[0])
            self.guard.advance(pairs[1])
        self.logprobs = best
        self.t = t + 1
        # 6. finished? the top finished beams can no longer be beaten by any live one: log-probs only fall
        # as a beam grows, its length stays in [t + 1, longest], so logprob / len**alpha peaks at an end
        if len(finished) >= self.top and finished[-1][0].score(alpha) >= max(
                best_list[0] / (t + 1) ** alpha, best_list[0] / self.longest**alpha):
            return self._end()
        # 7. settle: the prefix every possible winner shares is final
        common = shared_prefix_len(self.texts + [finished[0][1]] if finished else self.texts, self.settled)
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
        live = [(Beam(self.vocab.from_surface(text), lp), text) for text, lp in zip(self.texts, logprobs)]
        ranked = sorted(self.finished + live, key=lambda x: x[0].score(self.alpha), reverse=True)[: self.top]
        if self.on_settled is not None and ranked and len(ranked[0][1]) > self.settled:
            self.on_settled(ranked[0][1][self.settled :])
            self.settled = len(ranked[0][1])
        return [beam for beam, _ in ranked]


@torch.inference_mode()
def beam_search(model: CharRNN, vocab: Vocab, prime: str = "", settings: Sampling = BEAM,
                on_settled: Callable[[str], object] | None = None, kernel: str = "fp32", **options) -> list[Beam]:
    """The `top` best continuations of `prime` (up to `length` tokens: characters for a character model), best first.

    `settings` with `options` of `Sampling` over it (`beam_search(model, vocab, "The ", width=8, top=3)`).
    on_settled: called with each newly certain piece of the best text (see the module doc);
    returning False stops the search early (e.g. the reader of a pipe went away).
    kernel: the step kernel (`model.kernels`): fp32 scores exactly as `CharRNN.step`; the smaller
    ones are ~1e-3 nats per character off, which can reorder near-ties.
    """
    settings = replace(settings, **options) if options else settings
    search = BeamSearch(vocab, settings, on_settled)
    model.eval()
    logits, state = prime_model(model, prime_ids_for(vocab, prime, settings.unk))  # (1, V), state of batch 1
    stepper = make_kernel(model, kernel, 1)  # holds the live beams' state from here on
    stepper.reset(state)
    watch = ThreadWatch(model)  # one thread from the step the search slows down (a core got busy)
    while (chosen := search.advance(logits)) is not None:
        tokens, beam_idx = chosen
        stepper.reorder(beam_idx)
        with watch:
            logits = stepper.step(tokens)  # (B', V), overwritten by the next step
    return search.result()
