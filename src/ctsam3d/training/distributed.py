"""Distributed set-up for ``torchrun`` (DDP): NCCL on CUDA, gloo on CPU.

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``; without them the run is single-process. Each rank uses
``cuda:LOCAL_RANK`` when training on CUDA.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["DistInfo", "setup", "cleanup", "any_flag"]


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def _device(requested: str, local_rank: int) -> torch.device:
    req = requested.lower().replace("gpu", "cuda")
    if req == "auto":
        req = "cuda" if torch.cuda.is_available() else "cpu"
    if req.startswith("cuda"):
        if not torch.cuda.is_available():
            from ..errors import InputError

            raise InputError(f"device {requested!r}: CUDA is not available on this machine")
        if req == "cuda":
            return torch.device("cuda", local_rank)
    return torch.device(req)


def setup(requested_device: str = "auto") -> DistInfo:
    """Initialise the process group when launched by torchrun; pick this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = _device(requested_device, local)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistInfo(rank, world, local, device)


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def any_flag(flag: bool, info: DistInfo) -> bool:
    """True on every rank when ``flag`` is True on any rank (e.g. the time budget ran out)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def min_int(value: int, info: DistInfo) -> int:
    """The minimum of ``value`` over all ranks."""
    if not info.enabled:
        return int(value)
    t = torch.tensor([int(value)], dtype=torch.long, device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier(device_ids=[info.device.index]) if info.device.type == "cuda" else dist.barrier()
