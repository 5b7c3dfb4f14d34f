"""Memory: what this process can still allocate, and refusing what cannot fit before allocating it.

torch is imported inside the functions only, so light commands can import this for free.
"""

from __future__ import annotations

import os

from charrnn.util.errors import UsageError


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
