"""Where torch runs and in what precision: the device, and the autocast dtype for a precision name.

torch is imported inside the functions only, so light commands can import this for free.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from charrnn.util.errors import CharrnnError, UsageError

if TYPE_CHECKING:
    import torch

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def cpu_has_fast_bf16() -> bool:
    """True when this CPU reports native bf16 matrix products (AVX512-BF16 or AMX): shown, never used to choose."""
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
        raise CharrnnError("device cuda was asked for but no CUDA GPU is available: use device cpu", "device")
    if name == "mps" and not (mps and mps.is_available()):
        raise CharrnnError("device mps was asked for but MPS is not available: use device cpu", "device")
    return torch.device(name)


def resolve_precision(precision: str, device: "torch.device") -> "torch.dtype | None":
    """The autocast dtype for `precision` (one of PRECISIONS: TrainConfig checks it) on this device (None = fp32).

    `auto` is bf16 (or fp16) autocast on a CUDA GPU and fp32 elsewhere; on the CPU the trainer and the
    step kernels then time bf16 against fp32 (`runtime.timing`).
    """
    import torch

    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return None
    if precision == "fp16" and device.type != "cuda":
        raise UsageError("precision fp16 needs a CUDA GPU; use bf16 or fp32 on this device", "precision")
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
