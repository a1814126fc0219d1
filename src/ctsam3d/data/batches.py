"""Step-indexed batches: batch ``t`` of rank ``r`` is a pure function of ``(seed, r, t)``.

Seeding every batch by its step (instead of carrying one RNG through the run) makes
resumption exact — a resumed run draws the very batches the uninterrupted run would have
drawn — and lets DataLoader workers build batches in any order. Different ranks get
different seeds, so each DDP rank trains on different patches.
"""

from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset

from .sampler import PatchSampler

__all__ = ["StepBatches", "step_rng"]


def step_rng(seed: int, rank: int, step: int, stream: int = 0) -> np.random.Generator:
    """The generator of one (seed, rank, step, stream); stream 0 = data, 1 = click draws."""
    return np.random.default_rng([int(seed), int(rank), int(step), int(stream)])


class StepBatches(Dataset):
    """Map-style dataset: ``ds[step]`` -> the batch dict of :meth:`PatchSampler.sample`.

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
        return self.sampler.sample(step_rng(self.seed, self.rank, step, 0), self.batch_size)
