"""A sparse probability volume on the canonical lattice, stored as immutable chunks.

The session keeps each object's probabilities as a dictionary of ``C x C x C`` chunks of
the canonical lattice (``(z, y, x)`` order); voxels in no chunk are 0. Probabilities are
stored as uint8 levels ``q`` (probability ``(q + 0.5) / 256``, level 0 = exactly 0), quantised so
that ``q >= 128`` exactly when the probability was ``> 0.5``: the mask is never changed by the
storage, and probabilities below 1/256 are stored as 0 (not stored at all when a whole chunk is).
Patches are written at any integer offset; a write builds *new* chunk arrays
instead of modifying old ones, so a snapshot is a shallow copy of the dictionary: this is
what makes ``undo`` exact and cheap.

Writes either take the voxel-wise maximum with what is stored (``mode="max"``: merging
patches computed for the same step, expansion), the minimum (``mode="min"``: a negative click
never adds), or replace the region (``mode="replace"``: a patch re-decoded with the previous
mask as input owns its region).

The same class holds an object's *mask on the input grid* (:mod:`.mask_layer`): there the
array axes are the input image's ``(k, j, i)`` and the levels are 0 or 255.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

__all__ = ["SparseVolume", "diff_box", "levels_diff_box", "quantize"]

Box = tuple[np.ndarray, np.ndarray]  # half-open [lo, hi) in lattice (z, y, x)


class SparseVolume:
    """Chunked sparse ``(z, y, x)`` probability volume (unbounded, integer coordinates).

    Args:
        chunk: chunk edge in voxels.
    """

    def __init__(self, chunk: int = 32):
        self.chunk = int(chunk)
        self.chunks: dict[tuple[int, int, int], np.ndarray] = {}
        self._counts: dict[tuple[int, int, int], int] = {}  # mask voxels per chunk

    # ------------------------------------------------------------------ snapshots
    def snapshot(self) -> tuple[dict, dict]:
        """Shallow copy of the chunk table; chunks are never modified in place."""
        return dict(self.chunks), dict(self._counts)

    def restore(self, snap: tuple[dict, dict]) -> None:
        self.chunks, self._counts = dict(snap[0]), dict(snap[1])

    @classmethod
    def from_snapshot(cls, snap: tuple[dict, dict], chunk: int) -> "SparseVolume":
        """A volume holding a snapshot's chunks (shared, read-only by convention)."""
        v = cls(chunk)
        v.restore(snap)
        return v

    def clear(self) -> None:
        self.chunks, self._counts = {}, {}

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
    def read_levels(self, start_zyx, size_zyx) -> np.ndarray:
        """Stored uint8 levels of the box ``[start, start + size)`` (0 where nothing is stored)."""
        start = [int(s) for s in start_zyx]
        size = [int(n) for n in size_zyx]
        out = np.zeros(size, dtype=np.uint8)
        for key in self._keys_for(start, size):
            chunk = self.chunks.get(key)
            if chunk is not None:
                sc, sr = self._overlap(key, start, size)
                out[sr] = chunk[sc]
        return out

    def read(self, start_zyx, size_zyx) -> np.ndarray:
        """Probabilities of the box ``[start, start + size)``: float32 ``(D, H, W)``, 0 where empty."""
        q = self.read_levels(start_zyx, size_zyx)
        return np.where(q > 0, (q.astype(np.float32) + 0.5) / 256.0, np.float32(0.0))

    def read_mask(self, start_zyx, size_zyx) -> np.ndarray:
        """Boolean mask (probability > 0.5) of the box ``[start, start + size)``."""
        return self.read_levels(start_zyx, size_zyx) >= 128

    def write(self, start_zyx, values: np.ndarray, mode: str = "replace") -> Box | None:
        """Write ``values`` (``(D, H, W)`` probabilities) at lattice ``start_zyx``.

        Args:
            mode: ``"replace"``, ``"max"`` or ``"min"`` (voxel-wise maximum / minimum with the
                stored values).

        Returns:
            The half-open lattice box ``(lo, hi)`` of voxels whose thresholded mask
            (``p > 0.5``) changed, or ``None`` if the mask did not change.
        """
        return self.write_levels(start_zyx, quantize(values), mode)

    def write_levels(self, start_zyx, levels: np.ndarray, mode: str = "replace") -> Box | None:
        """:meth:`write` with uint8 levels (as :meth:`read_levels` returns them): no requantising."""
        if mode not in ("replace", "max", "min"):
            raise ValueError(f"mode must be 'replace', 'max' or 'min', got {mode!r}")
        start = [int(s) for s in start_zyx]
        new_vals = np.asarray(levels, dtype=np.uint8)
        size = list(new_vals.shape)
        changed_lo = np.full(3, np.iinfo(np.int64).max)
        changed_hi = np.full(3, np.iinfo(np.int64).min)
        c = self.chunk
        for key in self._keys_for(start, size):
            sc, sr = self._overlap(key, start, size)
            old = self.chunks.get(key)
            new = np.zeros((c, c, c), np.uint8) if old is None else old.copy()
            view = new[sc]
            before = view >= 128
            if mode == "max":
                np.maximum(view, new_vals[sr], out=view)
            elif mode == "min":
                np.minimum(view, new_vals[sr], out=view)
            else:
                view[...] = new_vals[sr]
            diff = before != (view >= 128)
            if diff.any():
                lo_, hi_ = _box_of(diff)
                base = np.array([key[a] * c + sc[a].start for a in range(3)])
                changed_lo = np.minimum(changed_lo, lo_ + base)
                changed_hi = np.maximum(changed_hi, hi_ + base)
                self._counts[key] = self._counts.get(key, 0) + int(diff.sum() - 2 * (diff & before).sum())
            if not new.any():
                self.chunks.pop(key, None)
                self._counts.pop(key, None)
            else:
                self.chunks[key] = new
                self._counts.setdefault(key, 0)
        if changed_lo[0] > changed_hi[0]:
            return None
        return changed_lo, changed_hi

    def value_at(self, zyx) -> float:
        """Probability at integer lattice voxel ``zyx`` (0 where nothing is stored)."""
        return float(self.read(zyx, (1, 1, 1))[0, 0, 0])

    def bounds(self, mask_only: bool = False) -> Box | None:
        """Tight lattice box ``[lo, hi)`` of stored voxels (of mask voxels with ``mask_only``), or None."""
        lo = np.full(3, np.iinfo(np.int64).max)
        hi = np.full(3, np.iinfo(np.int64).min)
        for key, chunk in self.chunks.items():
            m = chunk >= 128 if mask_only else chunk > 0
            if not m.any():
                continue
            base = np.asarray(key) * self.chunk
            b_lo, b_hi = _box_of(m)
            lo = np.minimum(lo, base + b_lo)
            hi = np.maximum(hi, base + b_hi)
        if lo[0] > hi[0]:
            return None
        return lo, hi

    def count(self) -> int:
        """Number of mask voxels (probability > 0.5)."""
        return int(sum(self._counts.values()))


def quantize(p: np.ndarray) -> np.ndarray:
    """Probabilities -> uint8 levels ``floor(256 p)`` with ``q >= 128`` exactly where ``p > 0.5``.

    Level 0 holds ``p < 1/256`` and reads back as exactly 0 (every other level as its
    midpoint), so the error is below 1/256 everywhere. Exact zeros matter: far from an object
    the stored previous mask is 0, chunks of it are not stored, and the decoder's SPADE folding
    (:mod:`ctsam3d.modeling.spade_fold`) recomputes γ/β only around the object on later clicks.
    """
    p = np.clip(np.asarray(p, dtype=np.float32), 0.0, 1.0)
    q = np.minimum(np.floor(p * 256.0), 255.0)
    fg = p > 0.5
    q = np.where(fg, np.maximum(q, 128.0), np.minimum(q, 127.0))
    return q.astype(np.uint8)


def _box_of(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Half-open box ``[lo, hi)`` of the True voxels of a non-empty 3D boolean array."""
    lo, hi = np.zeros(3, np.int64), np.zeros(3, np.int64)
    for a in range(3):
        nz = np.flatnonzero(m.any(axis=tuple(b for b in range(3) if b != a)))
        lo[a], hi[a] = nz[0], nz[-1] + 1
    return lo, hi


def diff_box(a: dict, b: dict, chunk: int) -> Box | None:
    """Lattice box of voxels whose mask (``p > 0.5``) differs between two chunk tables."""
    return _chunks_diff_box(a, b, chunk, lambda c: c >= 128)


def levels_diff_box(a: dict, b: dict, chunk: int) -> Box | None:
    """Box of voxels whose stored level (not only the mask) differs between two chunk tables."""
    return _chunks_diff_box(a, b, chunk, lambda c: c)


def _chunks_diff_box(a: dict, b: dict, chunk: int, view) -> Box | None:
    """Box of voxels where ``view`` of the stored levels differs between two chunk tables (a
    missing chunk holds level 0); chunks shared by both tables are skipped unread."""
    lo = np.full(3, np.iinfo(np.int64).max)
    hi = np.full(3, np.iinfo(np.int64).min)
    zero = None
    for key in set(a) | set(b):
        ca, cb = a.get(key), b.get(key)
        if ca is cb:
            continue
        if (ca is None or cb is None) and zero is None:
            zero = view(np.zeros((chunk,) * 3, np.uint8))
        d = (zero if ca is None else view(ca)) != (zero if cb is None else view(cb))
        if d.any():
            b_lo, b_hi = _box_of(d)
            base = np.asarray(key) * chunk
            lo = np.minimum(lo, b_lo + base)
            hi = np.maximum(hi, b_hi + base)
    if lo[0] > hi[0]:
        return None
    return lo, hi
