"""Prompts other than clicks: box restriction and initial masks (edit mode), on the lattice."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..errors import GeometryError
from ..geometry import crop_patch, index_to_lps
from .lattice import Lattice
from .sparse_volume import SparseVolume

__all__ = ["box_clip", "check_same_grid", "mask_to_store"]


def box_clip(lo_zyx, hi_zyx, patch_size):
    """A ``clip(start, probs) -> probs`` that zeroes patch probabilities outside a lattice box.

    ``[lo_zyx, hi_zyx)`` is a half-open lattice box; ``probs`` is a ``(D, H, W)`` patch whose
    voxel ``[0, 0, 0]`` is lattice voxel ``start``.
    """
    lo, hi, size = np.asarray(lo_zyx), np.asarray(hi_zyx), np.asarray(patch_size)

    def clip(start, probs: np.ndarray) -> np.ndarray:
        out = np.zeros_like(probs)
        s = np.asarray(start)
        r0, r1 = np.clip(lo - s, 0, size), np.clip(hi - s, 0, size)
        if np.all(r1 > r0):
            sl = tuple(slice(int(a), int(b)) for a, b in zip(r0, r1))
            out[sl] = probs[sl]
        return out

    return clip


def check_same_grid(mask: sitk.Image, image: sitk.Image) -> None:
    """Raise GeometryError unless ``mask`` lies on ``image``'s grid (size, spacing, origin, direction)."""
    ok = (
        mask.GetSize() == image.GetSize()
        and np.allclose(mask.GetSpacing(), image.GetSpacing(), rtol=1e-4, atol=1e-4)
        and np.allclose(mask.GetOrigin(), image.GetOrigin(), atol=1e-3)
        and np.allclose(mask.GetDirection(), image.GetDirection(), atol=1e-4)
    )
    if not ok:
        raise GeometryError(
            f"initial mask: its grid (size {mask.GetSize()}, spacing {mask.GetSpacing()}, origin "
            f"{mask.GetOrigin()}) differs from the image's (size {image.GetSize()}, spacing "
            f"{image.GetSpacing()}, origin {image.GetOrigin()})"
        )


def mask_to_store(mask: sitk.Image, image: sitk.Image, lattice: Lattice, store: SparseVolume, slab: int = 64) -> None:
    """Write ``mask != 0`` (on ``image``'s grid) into ``store`` as probabilities 0/1.

    Only the lattice box around the mask's bounding box is sampled (nearest neighbour), in
    slabs of ``slab`` lattice slices, so a small mask on a huge image stays cheap.
    """
    binary = sitk.Cast(mask != 0, sitk.sitkUInt8)
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(binary)
    if not stats.HasLabel(1):
        return
    x, y, z, sx, sy, sz = stats.GetBoundingBox(1)
    corners = np.array([[x + a * sx, y + b * sy, z + c * sz] for a in (0, 1) for b in (0, 1) for c in (0, 1)], float)
    zyx = lattice.world_to_zyx(index_to_lps(image, corners - 0.5))
    lo = np.floor(zyx.min(axis=0)).astype(int)
    hi = np.ceil(zyx.max(axis=0)).astype(int) + 1
    for z0 in range(int(lo[0]), int(hi[0]), slab):
        size = (min(slab, int(hi[0]) - z0), int(hi[1] - lo[1]), int(hi[2] - lo[2]))
        start = (z0, int(lo[1]), int(lo[2]))
        vals = crop_patch(binary, lattice.grid(start, size), is_label=True).astype(np.float32)
        store.write(start, vals, mode="replace")
