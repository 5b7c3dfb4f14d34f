"""Where and how torch runs: the device, the precision, the CPU thread count.

A foundation module: it imports no torch at module level (torch is imported inside the
functions that need it), so light commands can import it for free. Everything that picks a
device, a precision or a thread count goes through here.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from charrnn.util.errors import CharrnnError, UsageError

if TYPE_CHECKING:
    import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def default_threads() -> int:
    """One thread per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS
        return max(1, os.cpu_count() or 1)


def check_threads(n: int, flag: str = "--threads") -> int:
    """A thread count as given by a user: 0 (= one per core) up to the cores there are."""
    if n < 0:
        raise UsageError(f"{flag} must be >= 0 (0 = one per core)")
    cores = default_threads()
    if n > cores:
        raise UsageError(f"{flag} {n} is more than the {cores} core(s) this process may use: "
                         f"pass 0 (one per core) or at most {cores}")
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


def cpu_has_fast_bf16() -> bool:
    """True when this CPU reports native bf16 matrix products (AVX512-BF16 or AMX).

    Reported, not measured: shown by `charrnn bench`, never used to choose a precision."""
    import torch

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, p, lambda: False)() for p in probes)


def resolve_device(name: str) -> "torch.device":
    """`auto` -> cuda, else mps, else cpu; a named device is checked to exist."""
    import torch

    mps = getattr(torch.backends, "mps", None)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CharrnnError("--device cuda was asked for but no CUDA GPU is available: use --device cpu")
    if name == "mps" and not (mps and mps.is_available()):
        raise CharrnnError("--device mps was asked for but MPS is not available: use --device cpu")
    return torch.device(name)


def resolve_precision(precision: str, device: "torch.device") -> "torch.dtype | None":
    """The autocast dtype for this precision on this device (None = plain fp32).

    `auto` is bf16 (or fp16) autocast on a CUDA GPU and fp32 elsewhere. On the CPU that is only
    the starting point: whether bf16 pays depends on the CPU and the model, not on the flags the
    CPU reports, so the trainer measures it (`charrnn.trainspeed`), as do sampling and beam search
    (`charrnn.stepkernels`).
    """
    import torch

    if precision not in PRECISIONS:
        raise UsageError(f"--precision must be one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return None
    if precision == "fp16" and device.type != "cuda":
        raise UsageError("--precision fp16 needs a CUDA GPU; use bf16 or fp32 on this device")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


# ---- memory: refuse what cannot fit, before allocating it ------------------------------------------


def available_memory() -> int | None:
    """Bytes this process can still allocate on the host, best estimate; None if unknown.

    The smaller of the memory the system reports available (MemAvailable, else free pages)
    and what an address-space limit (`ulimit -v`) leaves above this process's current size.
    """
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, AttributeError):
            pass
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            left = soft - _address_space()
            avail = left if avail is None else min(avail, left)
    except (ImportError, OSError, ValueError):
        pass
    return None if avail is None else max(0, avail)


def _address_space() -> int:
    """This process's virtual size in bytes (what `ulimit -v` counts)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"


def check_memory(need: int, what: str, hint: str, device: str = "cpu") -> None:
    """Raise a UsageError if `need` bytes (an estimate) will not fit in the memory there is now.

    `device` 'cuda...' checks the GPU's free memory instead of the host's.
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
                         f"available: {hint}")
