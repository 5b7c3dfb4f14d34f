"""Multi-process training on torch.distributed (DistributedDataParallel), launched by torchrun.

    torchrun --nproc_per_node 8 -m charrnn train linux --preset large

How the work is split. `--batch-size` is the *global* number of parallel streams B. The
corpus is laid out into B streams exactly as in a single process; rank r of W processes
trains streams [r·B/W, (r+1)·B/W). DDP averages gradients over ranks, and since every
rank holds the same number of streams, the averaged gradient equals the single-process
gradient of the mean loss over all B streams: a run's result does not depend on W (up
to floating-point summation order). Validation streams are split the same way and the
summed log-likelihoods are all-reduced, so every rank reports the same figure. Only rank
0 writes checkpoints, logs and progress. Checkpoints hold the cursor and the carried
hidden state for all B streams (gathered to rank 0), so a run can resume on any W that
divides B.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from charrnn.util.errors import CharrnnError


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0  # this process's global rank
    world: int = 1  # number of processes
    local_rank: int = 0  # rank on this machine (selects the GPU)
    joined: bool = False  # in a process group (torchrun started us, even as its only process)

    @property
    def enabled(self) -> bool:
        return self.joined or self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, batch_size: int) -> slice:
        """The streams this rank trains, out of `batch_size` global streams."""
        per = batch_size // self.world
        return slice(self.rank * per, (self.rank + 1) * per)


def launched_by_torchrun() -> bool:
    """torchrun sets RANK, WORLD_SIZE and MASTER_ADDR; one process (--nproc_per_node 1) still joins a group of one."""
    env = os.environ
    return "RANK" in env and "WORLD_SIZE" in env and (int(env["WORLD_SIZE"]) > 1 or "MASTER_ADDR" in env)


def is_main_process() -> bool:
    """Rank 0, or no torchrun at all: the process that reports and writes (known before any group is joined)."""
    return os.environ.get("RANK", "0") == "0"


def setup(device: torch.device, batch_size: int) -> DistInfo:
    """Join the process group if torchrun started us (NCCL on CUDA, gloo on CPU); else a 1-process DistInfo."""
    if not launched_by_torchrun():
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)),
                    joined=True)
    if batch_size % info.world:
        raise CharrnnError(
            f"batch_size {batch_size} (the global number of streams) is not divisible by the "
            f"{info.world} processes torchrun started: use a multiple of {info.world}", "batch_size"
        )
    if device.type == "mps":
        raise CharrnnError("distributed training is not supported on mps: use device cpu or cuda", "device")
    if not dist.is_initialized():
        if device.type == "cuda":
            if info.local_rank >= torch.cuda.device_count():
                raise CharrnnError(f"torchrun started process {info.local_rank + 1} on this machine, which has "
                                   f"{torch.cuda.device_count()} GPU(s): start at most {torch.cuda.device_count()} "
                                   f"processes per machine (torchrun's nproc_per_node), or use device cpu", "device")
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return info


def device_for(info: DistInfo, device: torch.device) -> torch.device:
    """Each rank on a CUDA machine uses its own GPU (LOCAL_RANK)."""
    if info.enabled and device.type == "cuda":
        return torch.device("cuda", info.local_rank)
    return device


def all_reduce(values: list[float], device: torch.device, info: DistInfo, op: str = "sum") -> list[float]:
    """Combine floats over ranks (float64): op "sum", or "max" so all ranks take the same decision."""
    if not info.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return t.tolist()


def gather_streams(state: tuple[torch.Tensor, ...], info: DistInfo) -> tuple[torch.Tensor, ...]:
    """Each rank's carried state (L, B/W, H) -> the full (L, B, H) state, in stream order."""
    if not info.enabled:
        return state
    full = []
    for s in state:
        parts = [torch.empty_like(s) for _ in range(info.world)]
        dist.all_gather(parts, s.contiguous())
        full.append(torch.cat(parts, dim=1))
    return tuple(full)


def wrap(model: torch.nn.Module, info: DistInfo, device: torch.device) -> torch.nn.Module:
    """The model as training calls it: wrapped in DistributedDataParallel under torchrun, else itself."""
    if not info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def cleanup(info: DistInfo) -> None:
    """End the process group: after every rank got here, and after the caller dropped its DDP wrapper.

    A DDP wrapper left alive holds gloo work that its threads would destroy during interpreter shutdown,
    aborting the process ("terminate called without an active exception"): so `gc.collect()` first.
    """
    if info.enabled and dist.is_initialized():
        dist.barrier()  # no rank tears down its connections while another still talks (gloo aborts otherwise)
        gc.collect()
        dist.destroy_process_group()
