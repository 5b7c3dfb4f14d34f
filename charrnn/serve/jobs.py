"""What one request does with its rows of the shared batch: draw samples, or search beams.

A job is made with its prompt's ids; `read_prompt` runs them through the model (as `charrnn
sample` does): a short prompt in the batcher as the job joins (a few single-row steps cost less
than a thread hop), a long one in the request's worker thread, so it never holds up the batch.
Then, once per shared step, the batcher hands the job what it needs for its rows, and the job
answers with what those rows read next:

    SampleJob   n rows (OpenAI's `n`), one generator and its Gumbel noise (n, V), as
                `charrnn sample -N n` draws; `take(ids)` gets the tokens drawn for its rows
                (a byte model's `guard` says which bytes each row may draw next)
    BeamJob     its live beams are its rows (1 at first, up to `width`); `take(logits)` runs
                one `BeamSearch.advance` and says how to reorder its rows

Text leaves through the job's `Outbox` as events for the request's coroutine:

    ("text", choice, "...", scored)          more text of a choice (never part of a stop string), and
                                             with `logprobs` the scores of the tokens that wrote it
    ("end", choice, reason, extra, tokens)   the choice is complete: reason "stop" or "length", and the
                                             tokens the model wrote for it (a stop string's included)
    ("error", message)                       the engine failed; the request ends with this message

Log-probabilities (`logprobs`, sampling only) are those of the model itself: log_softmax of its
logits, before temperature, top-k, top-p or a byte model's UTF-8 guard (what OpenAI reports), so
they say how likely the model found each token, whatever the draw settings. A token is reported
with the text it wrote: one cut off by a stop string, or a byte of a character left incomplete
at the end, is not (it wrote nothing returned).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence

import torch

from charrnn.generation.beam import BeamSearch
from charrnn.model.rnn import CharRNN
from charrnn.generation.sampling import GumbelNoise, prime_model, seeded_generator
from charrnn.generation.settings import Sampling
from charrnn.generation.stops import StopScanner
from charrnn.text.vocab import Vocab


class Outbox:
    """Events from the engine thread to one request's coroutine; many puts wake the reader once."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self.lock = threading.Lock()
        self.items: list[tuple] = []
        self.ready = asyncio.Event()
        self.waking = False  # a wake-up is already on its way to the loop

    def put(self, events: list[tuple]) -> None:
        """Called from the engine thread."""
        with self.lock:
            self.items.extend(events)
            if self.waking:
                return
            self.waking = True
        try:
            self.loop.call_soon_threadsafe(self.ready.set)
        except RuntimeError:  # the loop has closed: nobody is listening any more
            pass

    async def get(self) -> list[tuple]:
        """Every event put since the last call (waits for at least one)."""
        await self.ready.wait()
        with self.lock:
            items, self.items = self.items, []
            self.waking = False
            self.ready.clear()
        return items


class Job:
    """What the batcher needs of every job."""

    rows: int  # rows of the batch it holds now
    cancelled: bool = False  # set by the request (its client went away); the batcher drops it at the next step
    prompt: list[int]  # the ids its rows read before the first draw
    logits: torch.Tensor | None = None  # (rows, V) next-character logits when it joins (None: prompt not read yet)
    state: tuple | None = None  # (L, rows, H) tensors when it joins

    def read_prompt(self, model: CharRNN) -> None:
        """Run the prompt through `model` (once): the logits and state its rows join the batch with."""
        if self.logits is None:
            self.logits, self.state = prime_model(model, self.prompt, self.rows)  # (rows, V), as `charrnn sample`

    def fail(self, message: str) -> None:
        self.outbox.put([("error", message)])


class SampleJob(Job):
    """n samples of one prompt, drawn as `charrnn sample -N n --seed S` draws them."""

    def __init__(self, prompt: Sequence[int], vocab: Vocab, outbox: Outbox, settings: Sampling, first_choice: int = 0,
                 device: torch.device | str = "cpu", logprobs: int | None = None):
        s = settings
        self.prompt, self.rows, self.outbox, self.first_choice = list(prompt), s.n, outbox, first_choice
        self.logprobs = logprobs  # score each token, listing this many of the likeliest (None: no scores)
        self.length = s.length
        self.settings = (s.temperature, s.top_k, s.top_p)  # rows with equal settings are drawn in one call
        self.noise = GumbelNoise(seeded_generator(s.seed, device), (self.rows, len(vocab)))
        self.scanners = [StopScanner(s.stop) for _ in range(self.rows)]
        self.decoders = [vocab.decoder() for _ in range(self.rows)]  # token -> text (bytes: once a character is whole)
        self.guard = vocab.guard(self.rows)  # a byte model's UTF-8 automaton, or None
        self.done = [False] * self.rows
        self.drawn = 0  # tokens drawn per row so far
        self.written = [0] * self.rows  # characters each row's tokens decoded to (stop strings included)
        self.shown = [0] * self.rows  # ... of which sent
        self.scored: list[list[tuple]] = [[] for _ in range(self.rows)]  # scores of tokens whose text is held back

    def take(self, ids: list[int], logits: torch.Tensor | None = None) -> bool:
        """The tokens drawn for its rows this step (and, to score them, the logits (rows, V) they were
        drawn from); True while it needs another step.

        Every row is drawn at every step, even after it has stopped, so choice i is the same
        text whenever the others stop (as in `generate_batch`).
        """
        self.drawn += 1
        if self.guard is not None:
            self.guard.advance(ids)
        scores = score_tokens(logits, ids, self.logprobs) if self.logprobs is not None else None
        events = []
        last = self.drawn == self.length
        for i, idx in enumerate(ids):
            if self.done[i]:
                continue
            scanner, piece = self.scanners[i], self.decoders[i](idx)
            if scores is not None:
                self.scored[i].append((self.written[i], idx, *scores[i]))
            self.written[i] += len(piece)
            text = scanner.feed(piece)
            if last and not scanner.stopped:
                text += scanner.flush()
            self.shown[i] += len(text)
            sent = self.release(i) if scores is not None else None
            if text or sent:
                events.append(("text", self.first_choice + i, text, sent))
            if scanner.stopped or last:
                self.done[i] = True
                events.append(("end", self.first_choice + i, "stop" if scanner.stopped else "length", {}, self.drawn))
        if events:
            self.outbox.put(events)
        return not all(self.done)

    def release(self, i: int) -> list[tuple]:
        """The scores of row i's tokens whose text has now been sent (those that start before its end)."""
        held, k = self.scored[i], 0
        while k < len(held) and held[k][0] < self.shown[i]:
            k += 1
        self.scored[i] = held[k:]
        return held[:k]


def score_tokens(logits: torch.Tensor, ids: list[int], top: int) -> list[tuple[float, list[tuple[int, float]]]]:
    """Per row: (the natural log-probability of the drawn token, the `top` likeliest (id, logprob)), under the
    model's own distribution (log_softmax of the logits (rows, V): no temperature, top-k or top-p)."""
    logp = torch.log_softmax(logits.float(), dim=-1)  # (rows, V)
    chosen = logp.gather(1, torch.tensor(ids, device=logp.device).unsqueeze(1))[:, 0].tolist()  # (rows,)
    if not top:
        return [(lp, []) for lp in chosen]
    values, index = logp.topk(min(top, logp.shape[1]), dim=-1)  # (rows, top)
    return [(lp, list(zip(i, v))) for lp, i, v in zip(chosen, index.tolist(), values.tolist())]


class BeamJob(Job):
    """One beam search; its live beams are its rows. The best beam's settled text streams as choice 0."""

    def __init__(self, prompt: Sequence[int], vocab: Vocab, outbox: Outbox, settings: Sampling, first_choice: int = 0):
        self.prompt, self.outbox, self.first_choice, self.stop = list(prompt), outbox, first_choice, settings.stop
        self.vocab = vocab
        self.scanner = StopScanner(self.stop)  # a finished beam ends with its stop string: never shown
        self.search = BeamSearch(vocab, settings, self._settled)

    @property
    def rows(self) -> int:
        return self.search.rows

    def _settled(self, piece: str) -> None:
        text = self.scanner.feed(piece)
        if text:
            self.outbox.put([("text", self.first_choice, text, None)])

    def take(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Logits (rows, V) of its live beams -> (tokens, beam_idx) for the next step, or None when done."""
        chosen = self.search.advance(logits)
        if chosen is None:
            self._finish()
        return chosen

    def _finish(self) -> None:
        beams = self.search.result()  # the rest of the best text goes out through _settled
        events = []
        rest = "" if self.scanner.stopped else self.scanner.flush()
        if rest:
            events.append(("text", self.first_choice, rest, None))
        for rank, beam in enumerate(beams):
            text = beam.text
            if beam.finished:
                text = text[: len(text) - max(len(s) for s in self.stop if text.endswith(s))]
            if rank:
                events.append(("text", self.first_choice + rank, text, None))
            extra = {"logprob": beam.logprob, "bits_per_char": beam.bits_per_char}
            tokens = len(self.vocab.encode(beam.text, unk="skip"))  # (its text as the vocabulary spells it)
            events.append(("end", self.first_choice + rank, "stop" if beam.finished else "length", extra, tokens))
        self.outbox.put(events)
