"""CPU threads: how many this process may use, a user's count checked, and torch set to one for a block.

torch is imported inside the functions only, so light commands can import this for free.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from charrnn.util.errors import UsageError


def default_threads() -> int:
    """One thread per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS
        return max(1, os.cpu_count() or 1)


def check_threads(n: int) -> int:
    """A thread count as given by a user: 0 (= one per core) up to the cores there are."""
    if n < 0:
        raise UsageError("threads must be >= 0 (0 = one per core)", "threads")
    cores = default_threads()
    if n > cores:
        raise UsageError(f"threads {n} is more than the {cores} core(s) this process may use: "
                         f"give 0 (one per core) or at most {cores}", "threads")
    return n


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch uses n CPU threads inside the block (0 = one per core), the previous count after."""
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(n or default_threads())
    try:
        yield
    finally:
        torch.set_num_threads(saved)
