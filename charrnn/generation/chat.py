"""A conversation with a model: what you type is read into it, it answers, and the state carries on.

A conversation is one long text that the model and you take turns writing; nothing is
re-read: the state after each turn is where the next one starts.

    start   state after "\\n" (as `charrnn sample` starts)
    you     read("ROMEO:\\n")           the line you typed, and its line break, go through the model
    model   reply() -> "Is the day ..."  drawn character by character until the stop string
                                        (default a blank line) or `length` characters
    you     read("JULIET:\\n")          ... and so on; reset() goes back to the start state

Every character the model wrote is part of the state too (it is stepped after each draw), so
the next line you type continues the text as it stands. With `width` > 0 an answer is the beam
search's best continuation, read into the state from where the answer started. The settings
(`CHAT` by default: temperature 0.8, answers end at a blank line) may change between answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import torch

from charrnn.generation.beam import BeamSearch
from charrnn.generation.settings import CHAT, Sampling
from charrnn.model.rnn import CharRNN, reorder_state
from charrnn.generation.sampling import (GumbelNoise, cut_at_stop, default_prime, pick, prime_model, read_ids,
                                        seeded_generator)
from charrnn.text.vocab import Vocab


class Conversation:
    """One conversation: the model's state, its own random generator, and the settings of its answers."""

    def __init__(self, model: CharRNN, vocab: Vocab, settings: Sampling = CHAT):
        self.model, self.vocab = model.eval(), vocab
        self.settings = settings  # what `reply` reads: change it between answers (`dataclasses.replace`)
        self.noise = GumbelNoise(seeded_generator(settings.seed, model.head.weight.device), (1, len(vocab)))
        self.reset()

    @torch.inference_mode()
    def reset(self) -> None:
        """Forget everything: back to the state after a line break."""
        self.logits, self.state = prime_model(self.model, self.vocab.encode(default_prime(self.vocab)))  # (1, V)

    def read(self, text: str) -> list[str]:
        """Run `text` through the model, carrying the state on. Returns the characters it dropped (never seen).

        Read as a prime is (`sampling.read_ids`): in blocks, logits only after the last token, so a line of
        millions of characters takes one block's memory and no longer call than the kernels take.
        """
        unknown = self.vocab.unknown(text)
        ids = self.vocab.encode(text, unk="skip")
        if ids:
            self.logits, self.state = read_ids(self.model, ids, self.state)  # (1, V)
        return unknown

    def reply(self) -> Iterator[str]:
        """The model's answer, a character (or a settled piece, with beam search) at a time, stop string included.

        The state advances as the answer is written: stopping early leaves it after what was yielded.
        """
        yield from self._beam_reply() if self.settings.width else self._sampled_reply()

    @torch.inference_mode()
    def _sampled_reply(self) -> Iterator[str]:
        s = self.settings
        tail, decode, guard = "", self.vocab.decoder(), self.vocab.guard(1)  # guard: a byte model's UTF-8 automaton
        for _ in range(s.length):
            logits = self.logits
            if guard is not None:
                logits = logits.masked_fill(~torch.from_numpy(guard.allowed()).to(logits.device), float("-inf"))
            ids = pick(logits, s.temperature, s.top_k, s.top_p, self.noise)  # (1,)
            if guard is not None:
                guard.advance(ids.tolist())
            self.logits, self.state = self.model.step(ids, self.state)  # the model has read what it wrote
            piece = decode(int(ids[0]))  # a character, a word, or '' until a byte model's character is whole
            stopped = False
            if s.stop and piece:
                piece, stopped = cut_at_stop(tail, piece, s.stop)
                tail = (tail + piece)[-max(map(len, s.stop)):]
            if piece:
                yield piece
            if stopped:
                return

    @torch.inference_mode()  # (as a decorator it is entered and left around each resumption of the generator)
    def _beam_reply(self) -> Iterator[str]:
        s, pieces = self.settings, []
        search = BeamSearch(self.vocab, replace(s, top=1), on_settled=pieces.append)
        logits, state = self.logits, self.state
        while (chosen := search.advance(logits)) is not None:
            tokens, beam_idx = chosen
            state = reorder_state(state, beam_idx)
            logits, state = self.model.step(tokens, state)  # (B', V)
            yield from pieces
            pieces.clear()
        best = search.result()[0].text
        yield from pieces
        self.read(best)  # the winner, read from where the answer started
