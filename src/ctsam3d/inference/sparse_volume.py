"""A sparse probability volume on the canonical lattice, stored as immutable chunks.

The session keeps each object's probabilities as a dictionary of ``C x C x C`` chunks of
the canonical lattice (``(z, y, x)`` order, float16 probabilities in [0, 1]); voxels in no
chunk are 0. Patches are written at any integer offset; a write builds *new* chunk arrays
instead of modifying old ones, so a snapshot is a shallow copy of the dictionary: this is
what makes ``undo`` exact and cheap.

Writes either take the voxel-wise maximum with what is stored (``mode="max"``: merging
patches computed for the same step, expansion) or replace the region (``mode="replace"``:
a patch re-decoded with the previous mask as input owns its region).
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

__all__ = ["SparseVolume"]

Box = tuple[np.ndarray, np.ndarray]  # half-open [lo, hi) in lattice (z, y, x)


class SparseVolume:
    """Chunked sparse ``(z, y, x)`` probability volume (unbounded, integer coordinates).

    Args:
        chunk: chunk edge in voxels.
        dtype: storage dtype (float16 keeps 1e-3 resolution at half the memory).
    """

    def __init__(self, chunk: int = 32, dtype=np.float16):
        self.chunk = int(chunk)
        self.dtype = np.dtype(dtype)
        self.chunks: dict[tuple[int, int, int], np.ndarray] = {}

    # ------------------------------------------------------------------ snapshots
    def snapshot(self) -> dict[tuple[int, int, int], np.ndarray]:
        """Shallow copy of the chunk table; chunks are never modified in place."""
        return dict(self.chunks)

    def restore(self, snap: dict[tuple[int, int, int], np.ndarray]) -> None:
        self.chunks = dict(snap)

    def clear(self) -> None:
        self.chunks = {}

    def __len__(self) -> int:
        return len(self.chunks)

    @property
    def nbytes(self) -> int:
        return sum(c.nbytes for c in self.chunks.values())

    # ------------------------------------------------------------------ geometry helpers
    def _keys_for(self, start, size) -> Iterator[tuple[int, int, int]]:
        c = self.chunk
        lo = [s // c for s in start]
        hi = [(s + n - 1) // c for s, n in zip(start, size)]
        for kz in range(lo[0], hi[0] + 1):
            for ky in range(lo[1], hi[1] + 1):
                for kx in range(lo[2], hi[2] + 1):
                    yield (kz, ky, kx)

    def _overlap(self, key, start, size):
        """(slices in chunk, slices in the region) of the intersection of a chunk and a region."""
        c = self.chunk
        in_chunk, in_region = [], []
        for k, s, n in zip(key, start, size):
            lo, hi = max(k * c, s), min((k + 1) * c, s + n)
            in_chunk.append(slice(lo - k * c, hi - k * c))
            in_region.append(slice(lo - s, hi - s))
        return tuple(in_chunk), tuple(in_region)

    # ------------------------------------------------------------------ access
    def read(self, start_zyx, size_zyx) -> np.ndarray:
        """Values of the box ``[start, start + size)`` as a float32 ``(D, H, W)`` array."""
        start = [int(s) for s in start_zyx]
        size = [int(n) for n in size_zyx]
        out = np.zeros(size, dtype=np.float32)
        for key in self._keys_for(start, size):
            chunk = self.chunks.get(key)
            if chunk is not None:
                sc, sr = self._overlap(key, start, size)
                out[sr] = chunk[sc]
        return out

    def write(self, start_zyx, values: np.ndarray, mode: str = "replace") -> Box | None:
        """Write ``values`` (``(D, H, W)`` probabilities) at lattice ``start_zyx``.

        Args:
            mode: ``"replace"`` or ``"max"`` (voxel-wise maximum with the stored values).

        Returns:
            The half-open lattice box ``(lo, hi)`` of voxels whose thresholded mask
            (``p > 0.5``) changed, or ``None`` if the mask did not change.
        """
        if mode not in ("replace", "max"):
            raise ValueError(f"mode must be 'replace' or 'max', got {mode!r}")
        start = [int(s) for s in start_zyx]
        values = np.asarray(values)
        size = list(values.shape)
        new_vals = np.clip(values, 0.0, 1.0).astype(self.dtype)
        changed_lo = np.full(3, np.iinfo(np.int64).max)
        changed_hi = np.full(3, np.iinfo(np.int64).min)
        c = self.chunk
        for key in self._keys_for(start, size):
            sc, sr = self._overlap(key, start, size)
            old = self.chunks.get(key)
            new = np.zeros((c, c, c), self.dtype) if old is None else old.copy()
            before = new[sc] > 0.5
            if mode == "max":
                np.maximum(new[sc], new_vals[sr], out=new[sc])
            else:
                new[sc] = new_vals[sr]
            diff = before != (new[sc] > 0.5)
            if diff.any():
                idx = np.argwhere(diff)
                base = np.array([key[a] * c + sc[a].start for a in range(3)])
                changed_lo = np.minimum(changed_lo, idx.min(axis=0) + base)
                changed_hi = np.maximum(changed_hi, idx.max(axis=0) + base + 1)
            if new.max() <= 0:
                self.chunks.pop(key, None)
            else:
                self.chunks[key] = new
        if changed_lo[0] > changed_hi[0]:
            return None
        return changed_lo, changed_hi

    def value_at(self, zyx) -> float:
        """Probability at integer lattice voxel ``zyx`` (0 where nothing is stored)."""
        return float(self.read(zyx, (1, 1, 1))[0, 0, 0])

    def bounds(self, threshold: float | None = None) -> Box | None:
        """Tight lattice box ``[lo, hi)`` of stored voxels (``> threshold`` when given), or None."""
        lo = np.full(3, np.iinfo(np.int64).max)
        hi = np.full(3, np.iinfo(np.int64).min)
        for key, chunk in self.chunks.items():
            m = chunk > (0 if threshold is None else threshold)
            if not m.any():
                continue
            base = np.asarray(key) * self.chunk
            nz = [np.flatnonzero(m.any(axis=tuple(b for b in range(3) if b != a))) for a in range(3)]
            lo = np.minimum(lo, base + [n[0] for n in nz])
            hi = np.maximum(hi, base + [n[-1] + 1 for n in nz])
        if lo[0] > hi[0]:
            return None
        return lo, hi

    def count(self, threshold: float = 0.5) -> int:
        """Number of voxels with probability ``> threshold``."""
        return int(sum(int((c > threshold).sum()) for c in self.chunks.values()))


def diff_box(a: dict, b: dict, chunk: int) -> Box | None:
    """Lattice box of voxels whose mask (``p > 0.5``) differs between two chunk tables."""
    lo = np.full(3, np.iinfo(np.int64).max)
    hi = np.full(3, np.iinfo(np.int64).min)
    for key in set(a) | set(b):
        ca, cb = a.get(key), b.get(key)
        if ca is cb:
            continue
        ma = ca > 0.5 if ca is not None else np.zeros((chunk,) * 3, bool)
        mb = cb > 0.5 if cb is not None else np.zeros((chunk,) * 3, bool)
        d = ma != mb
        if d.any():
            idx = np.argwhere(d)
            base = np.asarray(key) * chunk
            lo = np.minimum(lo, idx.min(axis=0) + base)
            hi = np.maximum(hi, idx.max(axis=0) + base + 1)
    if lo[0] > hi[0]:
        return None
    return lo, hi
