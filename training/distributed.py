"""torchrun / DDP plumbing: process group setup and gradient averaging.

Gradients are averaged by hand (one flat all-reduce per network) rather than through the DDP
wrapper, because a step updates D and G from the same forward with two backward passes over
disjoint parameter sets (the official simultaneous update), which DDP's reducer does not expect.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self) -> torch.device:
        """This process's GPU (by local rank) when there is one, else the CPU."""
        if torch.cuda.is_available():
            return torch.device(f"cuda:{self.local_rank}")
        return torch.device("cpu")


def launch_env() -> DistInfo:
    """This process's place as torchrun's environment gives it (RANK, WORLD_SIZE, LOCAL_RANK):
    the one place they are read; one process without them."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank = int(os.environ.get("RANK", "0"))
    return DistInfo(rank, world, int(os.environ.get("LOCAL_RANK", "0")))


def init_distributed() -> DistInfo:
    """Read torchrun's environment; start gloo (CPU) or nccl (GPU) when there are >1 processes."""
    info = launch_env()
    if not info.enabled:
        return info
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend)
    return info


def average_gradients(module: nn.Module, info: DistInfo) -> None:
    if not info.enabled:
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= info.world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def average_buffers(module: nn.Module, info: DistInfo) -> None:
    """Average floating-point buffers (BN running statistics) so every rank holds the same."""
    if not info.enabled:
        return
    for b in module.buffers():
        if b.is_floating_point():
            dist.all_reduce(b)
            b /= info.world_size


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def any_flag(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every rank if it is True on any (so all ranks stop at the same step)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t)
    return bool(t.item() > 0)


def broadcast_module(module: nn.Module, info: DistInfo) -> None:
    """Start every rank from rank 0's parameters and buffers."""
    if not info.enabled:
        return
    for t in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(t.data, src=0)


def gather_lists(values: list[int], info: DistInfo) -> list[list[int]]:
    """Every rank's `values`, by rank, on every rank (a collective: all ranks must call it)."""
    if not info.enabled:
        return [list(values)]
    gathered: list[list[int] | None] = [None] * info.world_size
    dist.all_gather_object(gathered, list(values))
    return [list(v or []) for v in gathered]
