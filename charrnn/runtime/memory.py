"""Memory: what this process can still allocate, what each kind of work needs, and refusing what cannot fit.

Every estimate charrnn makes lives here, so that anything that grows with the prompt, the vocabulary,
n, width or length is counted once, in one place, before it is allocated:

    generating   sampling_bytes(m, rows, length)       n streams drawn together (and the text kept)
    searching    search_bytes(m, width, length, ...)   a beam search: scores over width x V, the
                                                       top-k's buffer, the texts every beam keeps;
                 check_search_steps(width, length)     and steps few enough to end
    stepping     kernel_bytes(m, rows)                 a step kernel's buffers (timing holds several)
    reading      read_block(m)                         tokens of a prompt read at once, at batch 1:
                                                       state only, logits for the last position
    evaluating   logits_block(vocab, streams, T)       columns of a block whose logits fit LOGITS_BUDGET
    training     training_bytes(m, batch, seq_len)     weights, AdamW, and one step's activations

`m` is a model's shape (`model.config.ModelConfig`, or anything with its fields: vocab_size, cell,
layers, hidden, embed). The constants were measured where they say so; an estimate errs high.
`check_memory` then refuses what does not fit in the memory there is now, naming the settings.

torch is imported inside the functions only, so light commands can import this for free.
"""

from __future__ import annotations

import os

from charrnn.util.errors import UsageError

FLOAT = 4  # bytes of a float32
GATES = {"lstm": 4, "gru": 3, "rnn": 1}  # gate blocks of H a layer computes per token
NOISE_FLOATS = 1 << 20  # the most Gumbel noise drawn ahead for a batch (4 MB; `sampling.GumbelNoise`)
LOGITS_BUDGET = 4_000_000  # most logits one evaluation block may hold (16 MB of fp32)
READ_BUDGET = 4_000_000  # most floats of activations one block of a prompt read in may hold (16 MB)
MAX_READ_BLOCK = 4096  # ... and at most this many tokens: oneDNN refuses a 2 M-token call outright
KERNEL_UNIT = 40  # bytes per layer unit of one row in a step kernel: h, c, the gates, their bf16 copies and
#                   temporaries (measured: 4 kernels timed at 100,000 rows of a 1x64 LSTM, V 65, took 11.6 KB a row)
DRAW_PER_TOKEN = 40  # bytes per (row, vocabulary entry) of one draw with top-k/top-p: scaled logits, sorted values
#                      and their int64 order, probabilities, their running sum, masks
SEARCH_PER_TOKEN = 34  # per (beam, vocabulary entry) of a search step: log-softmax and scores, masked copies (guard,
#                        no-repeat, stops), and torch's top-k over the flat scores, a (value, int64 index) pair each
BEAM_OBJECTS = 200  # bytes of Python objects per beam besides its text: the str header, list slots, index and score
TEXT_PER_CHAR = 6  # bytes per kept character per beam and per byte of its width: old and new texts live across a
#                    step, and the allocator's leftovers (measured: 5.4 B a character, 20,000 beams, 100 -> 400 steps)
KEPT_PER_TOKEN = 8  # a sample's text kept until it is written: one reference per token


def kernel_bytes(m, rows: int) -> int:
    """A step kernel of `rows` streams: its state, gates and logits (rows, V)."""
    return rows * (FLOAT * m.vocab_size + KERNEL_UNIT * m.layers * m.hidden)


def sampling_bytes(m, rows: int, length: int = 0) -> int:
    """n streams drawn together: the kernel, one draw's temporaries, the noise drawn ahead, and `length`
    tokens of text kept per stream (0: written as they come)."""
    noise = max(FLOAT * NOISE_FLOATS, FLOAT * rows * m.vocab_size)
    return kernel_bytes(m, rows) + rows * (DRAW_PER_TOKEN * m.vocab_size + KEPT_PER_TOKEN * length) + noise


def search_bytes(m, width: int, length: int, chars_per_token: float = 1.0, char_bytes: int = 1) -> int:
    """A beam search of `width` beams over `length` tokens, at its last step: every beam's row in the kernel, the
    scores of its V extensions and their top-k, and its text (`chars_per_token` characters of `char_bytes`
    bytes each, as Python keeps them: 1 for Latin-1 text, 2 or 4 beyond)."""
    text = TEXT_PER_CHAR * char_bytes * chars_per_token * length
    return kernel_bytes(m, width) + width * (SEARCH_PER_TOKEN * m.vocab_size + BEAM_OBJECTS + int(text))


MAX_BEAM_STEPS = 10**8  # width x length of one beam search: each beam-step is ~6-10 us of Python bookkeeping (its
#                         text, index and score; measured: 80,000 beams x 100 steps in 81 s), so 10^8 is ~15 minutes


def check_search_steps(width: int, length: int) -> None:
    """Refuse a beam search that would run for hours before it starts: its steps are width x length, whatever
    memory there is (a million beams fit in 24 GB, and would take an hour and a half over 500 tokens)."""
    if width * length > MAX_BEAM_STEPS:
        raise UsageError(f"a beam search of width {width:,} over {length:,} tokens is {width * length:,} beam-steps, "
                         f"more than the {MAX_BEAM_STEPS:,} one search may take (each costs ~10 us, so this one would "
                         f"run for hours): lower width or length", "width", "length")


def read_block(m) -> int:
    """Tokens of a prompt read in one call at batch 1: its activations (embedding, every layer's gates and
    states) stay under READ_BUDGET floats, and no call is longer than MAX_READ_BLOCK tokens."""
    per_token = m.embed + m.layers * (GATES[m.cell] + 2) * m.hidden
    return max(1, min(MAX_READ_BLOCK, READ_BUDGET // per_token))


def logits_block(vocab_size: int, streams: int, seq_len: int) -> int:
    """Columns of a (streams, T) evaluation block, at most `seq_len`, whose logits (streams, T, V) stay under
    LOGITS_BUDGET numbers: with a large vocabulary (6,000 distinct characters) 64 x 256 x V floats would
    take gigabytes."""
    return max(1, min(seq_len, LOGITS_BUDGET // max(1, streams * vocab_size)))


def training_bytes(m, batch_size: int, seq_len: int) -> int:
    """Bytes a training run needs at its peak, estimated from the shape alone (fp32).

    Weights, gradients and AdamW's two moments (16 bytes per parameter), plus what one step
    keeps for back-propagation: per character of the (B, T) block its embedding, every layer's
    gates and states, and the logits with their softmax and gradient (3 x V).
    """
    per_char = m.embed + m.layers * (GATES[m.cell] + 2) * m.hidden + 3 * m.vocab_size
    return 16 * m.num_params() + FLOAT * batch_size * seq_len * per_char


def _proc_bytes(path: str, key: str) -> int | None:
    """The `key: N kB` line of a /proc file, in bytes; None when there is none."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def available_memory() -> int | None:
    """Bytes this process can still allocate on the host, best estimate; None if unknown.

    The smaller of the memory the system reports available (MemAvailable, else free pages)
    and what an address-space limit (`ulimit -v`) leaves above this process's current size.
    """
    avail = _proc_bytes("/proc/meminfo", "MemAvailable:")
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, AttributeError):
            pass
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            left = soft - (_proc_bytes("/proc/self/status", "VmSize:") or 0)
            avail = left if avail is None else min(avail, left)
    except (ImportError, OSError, ValueError):
        pass
    return None if avail is None else max(0, avail)


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"


def check_memory(need: int, what: str, hint: str, device: str = "cpu", *settings: str) -> None:
    """Raise a UsageError if `need` bytes (an estimate) will not fit in the memory there is now.

    `device` 'cuda...' checks the GPU's free memory instead of the host's. `settings`: those that
    `what` and `hint` name (see `CharrnnError.naming`).
    """
    if device.startswith("cuda"):
        import torch

        try:
            avail = torch.cuda.mem_get_info(torch.device(device))[0]
        except (RuntimeError, AssertionError):
            return
    else:
        avail = available_memory()
    if avail is not None and need > avail:
        raise UsageError(f"{what} needs about {fmt_bytes(need)} of memory, more than the {fmt_bytes(avail)} "
                         f"available: {hint}", *settings)
