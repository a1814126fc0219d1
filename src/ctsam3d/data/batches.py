"""Step-indexed batches: batch ``t`` of rank ``r`` is a pure function of ``(seed, r, t)``.

Seeding every batch by its step (instead of carrying one RNG through the run) makes
resumption exact — a resumed run draws the very batches the uninterrupted run would have
drawn — and lets DataLoader workers build batches in any order. Different ranks get
different seeds, so each DDP rank trains on different patches.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from .heatmap import deepest_points, gaussian_heatmap
from .sampler import PatchSampler

__all__ = ["StepBatches", "step_rng", "compact_batch", "expand_batch"]


def compact_batch(batch: dict) -> dict:
    """What crosses the worker -> trainer boundary (shared memory): targets as uint8, the CPP
    target as its peak voxel ``cpp_point`` (B, 3) instead of a float heatmap (~2.2× less); the
    pairs' ``cpp_offset`` (B, 3) passes through."""
    out = {k: batch[k] for k in ("image", "case_ids", "structures")}
    out["target"] = (batch["target"] > 0.5).to(torch.uint8)
    if "image_v" in batch:
        out["image_v"] = batch["image_v"]
        out["cpp_valid"] = batch["cpp_valid"]
        out["cpp_point"] = batch["cpp_point"] if "cpp_point" in batch else deepest_points(batch["target_v"])[0]
        if "cpp_offset" in batch:
            out["cpp_offset"] = batch["cpp_offset"]
    return out


def expand_batch(batch: dict, device: torch.device, sigma: float) -> dict:
    """Inverse of :func:`compact_batch` on the training device: float targets and the
    Gaussian CPP heatmap ``heatmap_v`` (B, 1, D, H, W)."""
    out = {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
    out["target"] = out["target"].float()
    if "cpp_point" in out:
        size = tuple(out["image"].shape[2:])
        out["heatmap_v"] = gaussian_heatmap(out["cpp_point"], size, sigma, out["cpp_valid"])
    return out


def step_rng(seed: int, rank: int, step: int, stream: int = 0) -> np.random.Generator:
    """The generator of one (seed, rank, step, stream); stream 0 = data, 1 = click draws."""
    return np.random.default_rng([int(seed), int(rank), int(step), int(stream)])


class StepBatches(Dataset):
    """Map-style dataset: ``ds[step]`` -> the step's batch (:func:`compact_batch` of
    :meth:`PatchSampler.sample`; :func:`expand_batch` restores it on the device).

    Use with ``DataLoader(ds, batch_size=None, sampler=range(start, total))``.
    """

    def __init__(self, sampler: PatchSampler, batch_size: int, seed: int, rank: int, total_steps: int) -> None:
        self.sampler = sampler
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.total = total_steps

    def __len__(self) -> int:
        return self.total

    def __getitem__(self, step: int) -> dict:
        return compact_batch(self.sampler.sample(step_rng(self.seed, self.rank, step, 0), self.batch_size))
