"""Sampling text from a trained model: temperature, top-k, top-p (nucleus) and greedy decoding.

`generate` yields text as it is produced: a character per step for a character model, a word
for a word model, and for a byte model each character once its last byte is drawn (a byte model
draws only bytes that continue valid UTF-8, `vocab.guard`). Randomness comes only from the
`torch.Generator` seeded here, never from global state: the same seed gives the same text.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import replace

import torch

from charrnn.runtime.memory import NOISE_FLOATS, read_block
from charrnn.runtime.threads import set_threads
from charrnn.runtime.timing import SlowdownWatch
from charrnn.generation.settings import Sampling
from charrnn.model.rnn import CharRNN, State
from charrnn.model.kernels import make_kernel
from charrnn.text.vocab import Vocab


class ThreadWatch:
    """`with watch:` around each step: falls back to one thread when steps on several slow down (another
    process took a core; `runtime.timing.SlowdownWatch`). The thread count never changes the text."""

    def __init__(self, model: CharRNN, enabled: bool = True):
        self.active = enabled and model.head.weight.device.type == "cpu" and torch.get_num_threads() > 1
        self.slowdown = SlowdownWatch()
        self.t0 = 0.0

    def __enter__(self) -> None:
        if self.active:
            self.t0 = time.perf_counter()

    def __exit__(self, *exc) -> None:
        if self.active and self.slowdown.record(time.perf_counter() - self.t0):
            set_threads(1)
            self.active = False


def check_batch_memory(model: CharRNN, settings: Sampling, keep: bool = True, vocab: Vocab | None = None,
                       precision: str = "fp32") -> None:
    """Refuse a batch of streams (n samples, or width beams) that would not fit in memory, before anything is made.

    What it needs is `runtime.memory`'s estimate: a draw's (`sampling_bytes`) or a search's (`search_bytes`: scores
    over width x V, their top-k, every beam's text, spelled as `vocab` spells it), or, where it is more, the step
    kernels that `choose_kernel` times side by side at this batch (`precision` auto, never timed here before).
    First the batch alone (lower n or width), then the timing, then with `length` tokens of text kept per stream
    (`keep`). A beam search must also be one that ends (`check_search_steps`).
    """
    from charrnn.runtime.memory import check_memory, check_search_steps, kernel_bytes, sampling_bytes, search_bytes

    m, device = model.config, model.head.weight.device.type
    batch, what = (settings.width, "width") if settings.width else (settings.n, "n")
    if settings.width:
        shape = text_shape(vocab) if vocab is not None else (1.0, 4)
        need = lambda length: search_bytes(m, batch, length, *shape)  # noqa: E731
    else:
        need = lambda length: sampling_bytes(m, batch, length)  # noqa: E731
    check_memory(need(0), f"{what} {batch:,} with this model", f"lower {what}", device, what)
    timing = kernel_bytes(m, batch) * timed_kernels(model, batch, precision, settings.length)
    if timing > need(0):  # (once per machine and batch: the verdict is cached)
        check_memory(timing, f"timing every step kernel at {what} {batch:,}", f"lower {what}, or choose a precision",
                     device, what, "precision")
    if keep:  # too many streams, or too long
        check_memory(need(settings.length), f"{what} {batch:,} with length {settings.length:,}",
                     f"lower length or {what}", device, what, "length")
    if settings.width:
        check_search_steps(settings.width, settings.length)


def text_shape(vocab: Vocab) -> tuple[float, int]:
    """(characters per token on average, bytes per character as Python stores them) of text written in `vocab`."""
    pieces = vocab.pieces
    widest = ord(max("".join(pieces), default="\0"))
    return sum(map(len, pieces)) / max(1, len(pieces)), 1 if widest < 256 else 2 if widest < 65536 else 4


def timed_kernels(model: CharRNN, batch: int, precision: str, steps: int) -> int:
    """Step kernels `model.kernels.choose_kernel` holds at once to time them at `batch` streams (0: none timed)."""
    from charrnn.model.kernels import kernel_key, kernels_for
    from charrnn.runtime.cache import TuneCache

    if precision != "auto" or steps <= 1 or model.head.weight.device.type != "cpu":
        return 0
    cached = TuneCache().get(kernel_key(model, batch)) is not None
    return 0 if cached else len(kernels_for(model))


GREEDY_BELOW = 1e-30  # a temperature this small draws what greedy decoding chooses (see `draw`)
FLOAT32_TINY = 1.1754943508222875e-38  # float32's smallest normal number: top_p is never taken below it


def filter_logits(logits: torch.Tensor, temperature: float, top_k: int = 0, top_p: float = 1.0) -> torch.Tensor:
    """Scale by temperature and mask everything outside the top-k / the top-p nucleus with -inf: (B, V) -> (B, V).

    The most likely token is always kept: a top_p below float32's smallest number (1e-50 rounds to 0) keeps
    it alone, as the nucleus's definition says, instead of masking every token (at no cost per step).
    """
    logits = logits.float() / temperature
    if top_k and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
        probs = torch.softmax(sorted_logits, dim=-1)  # (B, V), descending
        # keep the smallest prefix reaching p, and so the most likely token: its cumsum - prob is exactly 0,
        # which a top_p that float32 rounds to 0 (1e-50) would drop
        drop = probs.cumsum(dim=-1) - probs >= max(top_p, FLOAT32_TINY)
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    return logits


class GumbelNoise:
    """Random noise for `pick`, drawn from one generator a block of steps at a time.

    A draw from softmax(l / T) is the index of the largest l / T + G, each G independent Gumbel
    noise (the Gumbel-max trick): noise for a block of steps drawn in one call replaces a softmax
    and a `multinomial` per character, a tenth of a small model's ~100 µs step at batch 1.
    G = -log(-log U), U uniform on (0, 1) clamped away from 0, so every G is finite: `uniform_`
    draws ~7x faster than `exponential_`, which matters to `charrnn serve` (every request draws its own).

    Blocks double from 8 steps up to `block`, so a request that just arrived draws 8 steps of noise
    before its first character. The schedule depends on the shape alone: same generator state,
    same noise, however the logits are computed and however long the sample is.
    """

    FIRST_BLOCK = 8

    def __init__(self, generator: torch.Generator, shape: tuple[int, int], block: int = 256):
        self.generator = generator
        self.shape = shape  # (B, V)
        self.block = max(1, min(block, NOISE_FLOATS // max(1, shape[0] * shape[1])))  # <= ~4 MB of noise
        self.size = min(self.FIRST_BLOCK, self.block)  # steps in the next block drawn
        self.rows: list[torch.Tensor] = []  # the block's (B, V) slices, made in one call when it is drawn
        self.used = 0

    def next(self) -> torch.Tensor:
        """Noise for one step: (B, V)."""
        if self.used == len(self.rows):
            u = torch.empty(self.size, *self.shape, device=self.generator.device)  # (steps, B, V)
            u.uniform_(generator=self.generator).clamp_(min=torch.finfo(u.dtype).tiny)  # U in (0, 1)
            self.rows, self.used = u.log_().neg_().log_().neg_().unbind(0), 0  # G = -log(-log U): steps x (B, V)
            self.size = min(2 * self.size, self.block)
        self.used += 1
        return self.rows[self.used - 1]


def pick(logits: torch.Tensor, temperature: float, top_k: int, top_p: float, noise: GumbelNoise) -> torch.Tensor:
    """Choose the next ids: argmax when temperature is 0, else a draw. (B, V) -> (B,)"""
    return draw(logits, temperature, top_k, top_p, None if temperature == 0 else noise.next())


def draw(logits: torch.Tensor, temperature: float, top_k: int, top_p: float, gumbel: torch.Tensor | None) -> torch.Tensor:
    """The ids `pick` chooses, given this step's Gumbel noise (B, V) (None when temperature is 0).

    Row b depends only on logits[b] and gumbel[b], so rows of different samples that share
    the settings can be drawn in one call, each with noise from its own generator (charrnn serve).

    Below GREEDY_BELOW the draw is the greedy choice, and is made as one: the noise is bounded
    (U >= float32's tiny: -4.5 <= G <= 16.7), so argmax(l / T + G) can differ from argmax(l) only between
    logits less than 21 T (2e-29) apart, ties in float32 for logits of any size a model writes; and l / T
    would overflow float32 (T = 1e-46 rounds to 0), leaving no finite candidate. The greedy token is always
    in the top-k and the nucleus.
    """
    if temperature < GREEDY_BELOW:
        return logits.argmax(dim=-1)
    if not top_k and top_p >= 1.0:  # argmax(l / T + G) = argmax(l + T * G): one op fewer per step
        return torch.add(logits.float(), gumbel, alpha=temperature).argmax(dim=-1)
    return (filter_logits(logits, temperature, top_k, top_p) + gumbel).argmax(dim=-1)


def seeded_generator(seed: int | None, device: torch.device | str = "cpu") -> torch.Generator:
    """A random generator of one sample's own: seeded with `seed`, or at random when it is None."""
    generator = torch.Generator(device=device)
    generator.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, ()).item()))
    return generator


STEP_PRIME = 32  # texts up to this long are read one token at a time with `CharRNN.step`


@torch.inference_mode()
def read_ids(model: CharRNN, ids: Sequence[int], state: State | None = None,
             fast: bool = True) -> tuple[torch.Tensor, State]:
    """Run `ids` through the model at batch 1, from `state` (None: zeros): (logits (1, V) after the last id, state).

    A short text (a name, a line) goes through `CharRNN.step`, as the text after it will: one nn.LSTM
    call costs as much as dozens of steps on a CPU (oneDNN's set-up, ~1-4 ms). A longer one goes through
    nn.LSTM in blocks of `runtime.memory.read_block` tokens, the state carried from block to block, and
    the output layer reads only the last position: memory stays one block's activations however long the
    text (logits for every position took tokens x V floats: 19 GB for `. ` x 75,000 with a word model at
    -N 4), and no call is longer than the kernels take (oneDNN refuses a 2 M-token call). `fast=False`
    always uses nn.LSTM; the logits agree to rounding.
    """
    if not ids:
        raise ValueError("ids must hold at least one token")
    device = model.head.weight.device
    state = model.init_state(1) if state is None else state
    if fast and len(ids) <= STEP_PRIME:
        for i in ids:
            logits, state = model.step(torch.full((1,), i, device=device), state)  # (1, V)
        return logits, state
    x, block = torch.as_tensor(ids, device=device).unsqueeze(0), read_block(model.config)  # (1, P)
    for t0 in range(0, x.shape[1], block):
        h = model.embedding(x[:, t0 : t0 + block])  # (1, T, E)
        h, hx = model.rnn(h, state if model.n_state == 2 else state[0])  # (1, T, H): nn.LSTM, as `CharRNN.forward`
        state = tuple(hx) if model.n_state == 2 else (hx,)
    return model.head(model.drop(h[:, -1])), state  # (1, V)


@torch.inference_mode()
def prime_model(model: CharRNN, prime_ids: Sequence[int], batch: int = 1, fast: bool = True) -> tuple[torch.Tensor, State]:
    """Run the prime through the model once, at batch 1 (`read_ids`), and start `batch` streams where it
    leaves off: (logits (B, V) for the next token, state (L, B, H) each).

    Every stream reads the same prime: reading it once and copying the state costs what reading it at
    batch 1 does, whatever n or width, and all streams start from the very same state.
    """
    if not prime_ids:
        raise ValueError("prime_ids must hold at least one character")
    logits, state = read_ids(model, prime_ids, fast=fast)
    if batch == 1:
        return logits, state
    return logits.expand(batch, -1).contiguous(), tuple(s.expand(-1, batch, -1).contiguous() for s in state)


def default_prime(vocab: Vocab) -> str:
    """With no prime, start as if after a line break (or the first character of the vocabulary)."""
    return "\n" if "\n" in vocab else vocab.chars[0]


def prime_ids_for(vocab: Vocab, prime: str, unk: str = "error") -> list[int]:
    """The ids the model reads before it writes: the prime, read as if it starts a line.

    Training carries the hidden state from one batch to the next, so a model rarely sees
    the all-zeros state a prime starts from; reading a line break first puts it in the
    state it knows ("ROMEO:" then reads as a speaker's name, not the end of a word). The
    line break is not part of the output. Unknown prime characters follow `unk`.
    """
    start = default_prime(vocab)
    if prime.startswith(start):
        return vocab.encode(prime, unk=unk) or vocab.encode(start)
    return vocab.encode(start + prime, unk=unk)  # in one piece: word tokens may join across the line break


def prompt_tokens(vocab: Vocab, prompt: str) -> int:
    """A prompt's size as usage reports it (the API's `prompt_tokens`, `llm`'s input): its own tokens, not the
    line break `prime_ids_for` reads before it; characters the model never saw are not counted."""
    return len(vocab.encode(prompt, unk="skip"))


def sample_ids(model: CharRNN, prime_ids: Sequence[int], settings: Sampling, kernel: str = "fp32",
               fast: bool = True, watch_threads: bool = True, guard=None) -> Iterator[torch.Tensor]:
    """Yield `settings.length` steps of (n,) next-token ids, each of the n streams sampled independently.

    `fast=True` steps through the step kernel `kernel` (`model.kernels`; fp32 gives `CharRNN.step`'s
    logits bit for bit), `fast=False` through `nn.LSTM` itself (the reference path). `watch_threads`:
    see `ThreadWatch` (a benchmark that sets the thread count turns it off). `guard` (`vocab.guard(n)`)
    masks the ids that may not come next. Not an inference-mode generator: torch would enter and
    leave the mode at every `next()` (~5 µs a character); the kernels record no graph anyway.
    """
    s = settings
    model.eval()
    generator = seeded_generator(s.seed, model.head.weight.device)
    logits, state = prime_model(model, prime_ids, s.n, fast)
    noise = GumbelNoise(generator, tuple(logits.shape))
    stepper, watch = None, ThreadWatch(model, watch_threads)
    for i in range(s.length):
        if guard is not None:
            logits = logits.masked_fill(~torch.from_numpy(guard.allowed()).to(logits.device), float("-inf"))
        ids = pick(logits, s.temperature, s.top_k, s.top_p, noise)  # (n,)
        if guard is not None:
            guard.advance(ids.tolist())
        yield ids
        if i + 1 < s.length:
            if fast:
                if stepper is None:  # made at the first step: a 1-character sample never needs one
                    stepper = make_kernel(model, kernel, s.n)
                    stepper.reset(state)
                with watch:
                    logits = stepper.step(ids)  # (n, V), overwritten by the next step
            else:
                with torch.inference_mode():
                    out, state = model(ids.unsqueeze(1), state)  # (n, 1, V)
                logits = out[:, 0]


def generate(model: CharRNN, vocab: Vocab, settings: Sampling, prime: str = "", kernel: str = "fp32",
             fast: bool = True) -> Iterator[str]:
    """Yield the text of up to `settings.length` generated tokens as it comes, continuing `prime`.

    Stops early after a stop string is produced (it is included). Characters of the prime
    that the model never saw raise a CharrnnError naming them (or are dropped, unk='skip').
    """
    for pieces in generate_batch(model, vocab, replace(settings, n=1), prime, kernel, fast):
        if pieces[0]:
            yield pieces[0]


def sample_text(model: CharRNN, vocab: Vocab, length: int = 500, prime: str = "", kernel: str = "fp32",
                fast: bool = True, **settings) -> str:
    """The whole generated text as one string; `settings` are `Sampling`'s (temperature, top_k, seed, ...)."""
    return "".join(generate(model, vocab, Sampling(length=length, **settings), prime, kernel, fast))


def separator_after(text: str, separator: str) -> str:
    """What to write after a sample so that `separator` stands between it and the next one.

    Line breaks the sample already ends with count toward those the separator starts with:
    a sample ended by `--stop $'\\n\\n'`, then the default blank-line separator, gives one
    blank line between the samples, not three.
    """
    wanted = len(separator) - len(separator.lstrip("\n"))
    present = len(text) - len(text.rstrip("\n"))
    return separator[min(wanted, present):]


def generate_batch(model: CharRNN, vocab: Vocab, settings: Sampling, prime: str = "", kernel: str = "fp32",
                   fast: bool = True) -> Iterator[list[str]]:
    """Generate `settings.n` samples together as one batch; per step, yield each one's new text.

    A step's text is one token's, or for a byte model the character its byte completes ('' until
    then). A sample that has written a stop string (kept) yields '' from then on; the batch ends
    when every sample has stopped or after `length` steps. Sample i depends only on the seed and
    n, never on when the others stop (every stream is drawn at every step).
    """
    n, stop = settings.n, settings.stop
    prime_ids = prime_ids_for(vocab, prime, settings.unk)
    longest_stop = max((len(s) for s in stop), default=0)
    tails, done = [""] * n, [False] * n
    decoders = [vocab.decoder() for _ in range(n)]
    for ids in sample_ids(model, prime_ids, settings, kernel, fast, guard=vocab.guard(n)):
        pieces = []
        for i, idx in enumerate(ids.tolist()):  # (n,) -> one piece of text per sample
            piece = "" if done[i] else decoders[i](idx)
            if stop and piece:
                piece, done[i] = cut_at_stop(tails[i], piece, stop)
                tails[i] = (tails[i] + piece)[-longest_stop:]
            pieces.append(piece)
        yield pieces
        if all(done):
            return


def cut_at_stop(tail: str, piece: str, stop: Sequence[str]) -> tuple[str, bool]:
    """`piece` up to the end of the first stop string that ends inside it, given the text before
    it ends with `tail`; and whether one did. (A word token can hold a stop string and more.)"""
    ends = [at + len(s) for s in stop if (at := (tail + piece).find(s, max(0, len(tail) - len(s) + 1))) >= 0]
    if not ends:
        return piece, False
    return piece[: min(ends) - len(tail)], True
