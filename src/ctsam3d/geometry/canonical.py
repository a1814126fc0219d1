"""Resampling to the canonical grid: identity direction, isotropic spacing.

The canonical grid is the model's world: identity direction (ITK "RAI", code ``"LPS"`` in the
towards convention), isotropic ``spacing`` mm, origin chosen so the grid covers the image's
physical extent (the axis-aligned box around every voxel's cell). CT is resampled linearly
with pad -1024 HU (output float32); labels with nearest neighbour and pad 0 (pixel type kept).
"""

from __future__ import annotations

import math

import numpy as np
import SimpleITK as sitk

from .coords import physical_bounds

CT_PAD_HU = -1024.0
LABEL_PAD = 0
IDENTITY_DIRECTION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

# Extent rounding slack (in units of the target spacing): an image whose extent is an exact
# multiple of the spacing must not grow by one voxel because of floating-point noise.
_EPS = 1e-4


def canonical_grid(image: sitk.Image, spacing: float) -> tuple[tuple[float, ...], tuple[int, ...]]:
    """Origin (LPS mm of voxel [0,0,0]) and size ``(i, j, k)`` of the canonical grid of ``image``.

    The grid's cells tile the axis-aligned LPS box that contains the whole image (voxel
    cells included): ``origin = box_min + spacing / 2``, ``size = ceil(extent / spacing)``.
    An image that already has identity direction and this spacing maps onto itself.
    """
    if not spacing > 0:
        raise ValueError(f"canonical spacing must be > 0 mm, got {spacing!r}")
    lo, hi = physical_bounds(image)
    size = tuple(max(1, math.ceil((h - l) / spacing - _EPS)) for l, h in zip(lo, hi))
    origin = tuple(float(l + spacing / 2.0) for l in lo)
    return origin, size


def to_canonical(image: sitk.Image, spacing: float, *, is_label: bool = False) -> sitk.Image:
    """Resample ``image`` onto its canonical grid (identity direction, isotropic ``spacing`` mm).

    Args:
        image: a 3D SimpleITK image in any orientation (LPS world).
        spacing: target isotropic spacing in mm (1.5 for the paper preset).
        is_label: labels use nearest neighbour, pad 0 and keep their pixel type; CT uses
            linear interpolation, pad -1024 HU and float32 output.

    Returns:
        The resampled image. The world position of every point is preserved: voxel ``ijk`` of
        the result lies at ``origin + spacing * ijk`` (LPS mm).
    """
    origin, size = canonical_grid(image, spacing)
    if is_label:
        interp, pad, ptype = sitk.sitkNearestNeighbor, LABEL_PAD, image.GetPixelID()
    else:
        interp, pad, ptype = sitk.sitkLinear, CT_PAD_HU, sitk.sitkFloat32
    return sitk.Resample(
        image,
        [int(s) for s in size],
        sitk.Transform(),
        interp,
        origin,
        (float(spacing),) * 3,
        IDENTITY_DIRECTION,
        float(pad),
        ptype,
    )


def is_canonical(image: sitk.Image, spacing: float | None = None, tol: float = 1e-6) -> bool:
    """True if ``image`` has identity direction (and isotropic ``spacing`` mm when given)."""
    if not np.allclose(image.GetDirection(), IDENTITY_DIRECTION, atol=tol):
        return False
    if spacing is not None and not np.allclose(image.GetSpacing(), (spacing,) * 3, rtol=tol, atol=tol):
        return False
    return True
