"""What a prompt may change: box restriction, initial masks (edit mode), the acted region.

After the model has run for a prompt, :func:`restrict_change` cuts the step's change of the
lattice probabilities down to what the prompt may change (see :class:`ActedRegion`); the
input-grid mask then follows the flips of that change (:mod:`.mask_layer`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..errors import GeometryError
from ..geometry import crop_patch, index_to_lps
from .lattice import Lattice
from .sparse_volume import SparseVolume, levels_diff_box

__all__ = ["ActedRegion", "box_clip", "check_same_grid", "mask_to_store", "restrict_change"]

_FULL = ndimage.generate_binary_structure(3, 3)  # 26-connectivity


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


@dataclass(frozen=True)
class ActedRegion:
    """Where one step's model change is kept (lattice voxels ``(z, y, x)``).

    Attributes:
        kind: ``"all"`` (everything the decoded patches changed), ``"box"`` (inside the
            half-open lattice box ``[lo, hi)``) or ``"connected"`` (the 26-connected piece of
            the change that holds the clicked voxel ``click``: for a positive click the piece
            of voxels that entered the mask, for a negative one the piece that left it;
            nothing when the clicked voxel did not flip).
        negative: a negative click: probabilities never rise (voxel-wise minimum with before).
    """

    kind: str = "all"
    negative: bool = False
    click: tuple[int, int, int] | None = None
    lo: tuple[int, int, int] | None = None
    hi: tuple[int, int, int] | None = None


def restrict_change(store: SparseVolume, before: dict, region: ActedRegion) -> np.ndarray | None:
    """Cut the change of ``store`` since the chunk table ``before`` down to ``region``.

    Lattice voxels outside the region get their ``before`` level back (exactly); with
    ``region.negative`` no level ends above its ``before`` value. Works on the box of changed
    levels only. Returns the boolean mask of the kept flipped voxels over that box for
    ``"connected"`` (else None).
    """
    if region.kind == "all" and not region.negative:
        return None
    box = levels_diff_box(before, store.chunks, store.chunk)
    if box is None:
        return None
    lo, hi = box
    old = SparseVolume.from_snapshot((before, {}), store.chunk).read_levels(lo, hi - lo)
    new = store.read_levels(lo, hi - lo)
    if region.negative:
        new = np.minimum(old, new)
    kept = None
    if region.kind == "box":
        inside = np.zeros(new.shape, bool)
        a = np.clip(np.asarray(region.lo) - lo, 0, hi - lo)
        b = np.clip(np.asarray(region.hi) - lo, 0, hi - lo)
        if np.all(b > a):
            inside[a[0] : b[0], a[1] : b[1], a[2] : b[2]] = True
        new = np.where(inside, new, old)
    elif region.kind == "connected":
        was, now = old >= 128, new >= 128
        flipped = (was & ~now) if region.negative else (now & ~was)
        kept = np.zeros(new.shape, bool)
        c = np.asarray(region.click) - lo
        if np.all(c >= 0) and np.all(c < hi - lo) and flipped[tuple(c)]:
            labels, _ = ndimage.label(flipped, structure=_FULL)
            kept = labels == labels[tuple(c)]
        new = np.where(kept, new, old)
    elif region.kind != "all":
        raise ValueError(f"region kind must be 'all', 'box' or 'connected', got {region.kind!r}")
    store.write_levels(lo, new)
    return kept
