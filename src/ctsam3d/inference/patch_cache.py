"""Bounded LRU cache of encoded patches (image crop + encoder features).

The encoder runs once per patch; a session keys its patches by their lattice start
``(z, y, x)`` (see :mod:`ctsam3d.inference.lattice`), so every object and every later click
on the same patch reuses the features. The cache holds at most ``max_items`` patches and
evicts the least recently used one; an evicted patch is simply encoded again when needed.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

__all__ = ["EncodedPatch", "FeatureCache"]

Key = tuple[int, int, int]


@dataclass
class EncodedPatch:
    """One encoded patch.

    Attributes:
        image: ``(1, 1, D, H, W)`` float32 tensor in [0, 1] (HU-windowed crop), on the model device.
        features: the encoder's outputs for this patch (each with batch size 1).
        mirrored: the encoder's outputs for the patch mirrored left-right (lattice x reversed),
            or None when the runner does not average over the mirror (see
            :class:`~ctsam3d.inference.runner.PatchRunner`).
    """

    image: torch.Tensor
    features: list[torch.Tensor]
    mirrored: list[torch.Tensor] | None = None


class FeatureCache:
    """Least-recently-used map ``lattice start (z, y, x) -> EncodedPatch``.

    Args:
        max_items: maximum number of patches kept (>= 1).
    """

    def __init__(self, max_items: int = 32):
        if int(max_items) < 1:
            raise ValueError(f"max_items must be >= 1, got {max_items}")
        self.max_items = int(max_items)
        self._items: OrderedDict[Key, EncodedPatch] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __contains__(self, key: Key) -> bool:
        return tuple(key) in self._items

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Key) -> EncodedPatch | None:
        """The cached patch (marked most recently used), or None."""
        key = tuple(key)
        item = self._items.get(key)
        if item is None:
            self.misses += 1
            return None
        self.hits += 1
        self._items.move_to_end(key)
        return item

    def put(self, key: Key, item: EncodedPatch) -> None:
        key = tuple(key)
        self._items[key] = item
        self._items.move_to_end(key)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)

    def clear(self) -> None:
        self._items.clear()
        self.hits = self.misses = 0
