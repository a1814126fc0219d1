"""Object masks kept as their bounding-box crop, boxes, and the composed label map.

All arrays here are numpy ``[z, y, x]`` on the input image's grid (``sitk.GetArrayFromImage``
order: flattened C-order is the file's voxel order, i fastest). A box is
``((z0, y0, x0), (z1, y1, x1))`` with exclusive ends.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

Box = tuple[tuple[int, int, int], tuple[int, int, int]]


def box_slices(box: Box) -> tuple[slice, slice, slice]:
    (z0, y0, x0), (z1, y1, x1) = box
    return slice(z0, z1), slice(y0, y1), slice(x0, x1)


def box_union(a: Box | None, b: Box | None) -> Box | None:
    if a is None:
        return b
    if b is None:
        return a
    return (
        tuple(min(p, q) for p, q in zip(a[0], b[0])),  # type: ignore[return-value]
        tuple(max(p, q) for p, q in zip(a[1], b[1])),
    )


def box_intersection(a: Box, b: Box) -> Box | None:
    lo = tuple(max(p, q) for p, q in zip(a[0], b[0]))
    hi = tuple(min(p, q) for p, q in zip(a[1], b[1]))
    if any(h <= l for l, h in zip(lo, hi)):
        return None
    return lo, hi  # type: ignore[return-value]


def nonzero_box(array: np.ndarray) -> Box | None:
    """Tight box of the non-zero voxels of a 3D array, or None when it is all zero."""
    ranges = []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        hit = np.flatnonzero(array.any(axis=others))
        if hit.size == 0:
            return None
        ranges.append((int(hit[0]), int(hit[-1]) + 1))
    return tuple(r[0] for r in ranges), tuple(r[1] for r in ranges)  # type: ignore[return-value]


@dataclass
class SparseMask:
    """A binary mask stored as the crop of its bounding box.

    Attributes:
        box: where the crop sits in the full ``[z, y, x]`` grid.
        crop: bool array of the box's shape.
    """

    box: Box
    crop: np.ndarray

    @classmethod
    def from_full(cls, full: np.ndarray) -> "SparseMask | None":
        box = nonzero_box(full)
        if box is None:
            return None
        return cls(box, full[box_slices(box)].astype(bool))

    @property
    def voxels(self) -> int:
        return int(self.crop.sum())

    def to_full(self, shape_zyx: tuple[int, int, int]) -> np.ndarray:
        out = np.zeros(shape_zyx, dtype=np.uint8)
        out[box_slices(self.box)] = self.crop
        return out

    def replaced(self, box: Box, values: np.ndarray) -> "SparseMask | None":
        """This mask with ``box`` set to ``values`` (bool, the box's shape); None when empty."""
        union = box_union(self.box, box)
        shape = tuple(h - l for l, h in zip(union[0], union[1]))
        if union == self.box:
            full = self.crop.copy()
        else:
            full = np.zeros(shape, bool)
            full[tuple(slice(l - u, h - u) for l, h, u in zip(self.box[0], self.box[1], union[0]))] = self.crop
        full[tuple(slice(l - u, h - u) for l, h, u in zip(box[0], box[1], union[0]))] = values
        tight = nonzero_box(full)
        if tight is None:
            return None
        crop = full[box_slices(tight)]
        lo = tuple(u + t for u, t in zip(union[0], tight[0]))
        hi = tuple(u + t for u, t in zip(union[0], tight[1]))
        return SparseMask((lo, hi), crop if crop.base is None and crop.shape == full.shape else crop.copy())

    def read(self, region: Box) -> np.ndarray:
        """The mask over ``region`` as a bool array of its shape (False outside the mask)."""
        shape = tuple(h - l for l, h in zip(region[0], region[1]))
        out = np.zeros(shape, bool)
        inter = box_intersection(self.box, region)
        if inter is not None:
            src = tuple(slice(lo - o, hi - o) for lo, hi, o in zip(inter[0], inter[1], self.box[0]))
            dst = tuple(slice(lo - o, hi - o) for lo, hi, o in zip(inter[0], inter[1], region[0]))
            out[dst] = self.crop[src]
        return out

    def paint(self, labels: np.ndarray, region: Box, value: int) -> None:
        """Set ``labels[region]`` to ``value`` where this mask is on (inside ``region`` only)."""
        inter = box_intersection(self.box, region)
        if inter is None:
            return
        src = tuple(slice(lo - o, hi - o) for lo, hi, o in zip(inter[0], inter[1], self.box[0]))
        labels[box_slices(inter)][self.crop[src]] = value

    def save(self, path: Path, n_clicks: int) -> None:
        """Write atomically (``.npz``: box, shape, packed bits, and the click count it reflects)."""
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            np.savez(
                f,
                box=np.asarray(self.box, dtype=np.int64),
                bits=np.packbits(self.crop.ravel()),
                n_clicks=np.int64(n_clicks),
            )
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> tuple["SparseMask", int]:
        with np.load(path) as z:
            box_arr = z["box"]
            box = (tuple(int(v) for v in box_arr[0]), tuple(int(v) for v in box_arr[1]))
            shape = tuple(h - l for l, h in zip(box[0], box[1]))
            crop = np.unpackbits(z["bits"], count=int(np.prod(shape))).reshape(shape).astype(bool)
            return cls(box, crop), int(z["n_clicks"])  # type: ignore[arg-type]
