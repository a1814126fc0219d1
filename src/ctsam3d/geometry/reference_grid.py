"""The released CT-SAM3D's own resampling grid, pixel type and patch rules (reference-exact mode).

Our canonical grid (:mod:`.canonical`) tiles the image's physical box with voxel cells and
resamples to float32. The released pipeline (``resample_itkimage_torai`` then
``crop_roi_with_center``, driven by its notebook and viewer) does it differently, and a
reference-exact model is fed exactly what that pipeline feeds it
(``../shared/docs/reference-golden/pipeline/README.md`` pins every rule on a real CT):

* **RAI grid** (:class:`ReferenceGrid`): identity direction, isotropic spacing; origin = the
  minimum over the 8 image corners taken at continuous indices ``0`` and ``N`` (not ``-0.5``
  and ``N - 0.5``: no half-voxel shift), rounded to float32; size (i, j, k) = numpy round
  (half to even) of ``(max - min) / spacing``. On a flipped axis the origin lands one input
  voxel beyond the last voxel centre, so the lowest planes of the grid are padding.
* **Pixel type kept**: linear interpolation (nearest for labels) runs in double and is
  truncated toward zero into the input's pixel type (int16 for most CT), pad -1024 HU
  (labels 0); a sample is inside when its continuous input index is in ``[-0.5, N - 0.5)``.
* **Patch crop** (:func:`reference_patch_grid`): identity direction, the grid's spacing,
  origin = ``centre - size/2 * spacing`` per axis evaluated in float32, so patch voxel
  ``size // 2`` (32 of 64) sits on the centre. A centre on an RAI voxel (the viewer's case)
  makes the crop an exact block copy; an off-grid centre (the notebook's case) re-interpolates
  the int16 RAI image, truncating a second time.
* **Normalisation** (:func:`normalize_reference`): float32, clamp to the window, then
  ``(v - low) * (1 / (high - low))`` in double stored as float32 (k/350 for integer HU).
* **Click to voxel** (:func:`reference_click_voxel`): world -> patch voxel with float32
  matrices, then numpy round (half to even), as the viewer does before calling the predictor.

Blocks of the RAI grid are resampled straight from the input (:func:`sample_reference_block`):
the values are bit-identical to cropping the whole resampled volume (every grid point's LPS
position is exact in double: a float32 origin plus a multiple of the spacing), so a session
never resamples the whole image. Arrays are ``[z, y, x]``; sizes and indices of SimpleITK
images are ``(i, j, k)``; world is LPS mm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from .canonical import CT_PAD_HU, IDENTITY_DIRECTION, LABEL_PAD
from .coords import index_to_lps
from .patch import PatchGrid, crop_array

__all__ = [
    "ReferenceGrid",
    "normalize_reference",
    "pixel_dtype",
    "reference_click_voxel",
    "reference_crop",
    "reference_patch_grid",
    "sample_reference_block",
]


@dataclass(frozen=True)
class ReferenceGrid:
    """The released pipeline's RAI grid of one image.

    Attributes:
        origin_lps: LPS mm of voxel ``(0, 0, 0)`` (float32 values).
        spacing: isotropic spacing in mm.
        size_ijk: voxels along ``(i, j, k)`` = ``(x, y, z)``.
    """

    origin_lps: tuple[float, float, float]
    spacing: float
    size_ijk: tuple[int, int, int]

    @classmethod
    def of(cls, image: sitk.Image, spacing: float) -> "ReferenceGrid":
        """The RAI grid the released ``resample_itkimage_torai`` gives ``image`` at ``spacing`` mm."""
        if not spacing > 0:
            raise ValueError(f"reference spacing must be > 0 mm, got {spacing!r}")
        n = np.asarray(image.GetSize(), dtype=np.float64)
        corners = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], dtype=np.float64) * n
        pts = index_to_lps(image, corners).astype(np.float32)
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        size = np.round((hi - lo) / np.full(3, float(spacing))).astype(np.int64)
        return cls(tuple(float(v) + 0.0 for v in lo), float(spacing), tuple(int(max(s, 1)) for s in size))

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        return tuple(self.size_ijk[::-1])  # type: ignore[return-value]

    def block_origin(self, start_zyx) -> tuple[float, float, float]:
        """LPS mm of grid voxel ``start_zyx`` (exact in double)."""
        start = np.asarray(start_zyx, dtype=np.float64)[::-1]
        return tuple(float(o + self.spacing * s) for o, s in zip(self.origin_lps, start))


def _resample(image: sitk.Image, origin, spacing: float, size_ijk, is_label: bool) -> sitk.Image:
    interp, pad = (sitk.sitkNearestNeighbor, LABEL_PAD) if is_label else (sitk.sitkLinear, CT_PAD_HU)
    return sitk.Resample(
        image,
        [int(s) for s in size_ijk],
        sitk.Transform(),
        interp,
        [float(v) for v in origin],
        (float(spacing),) * 3,
        IDENTITY_DIRECTION,
        float(pad),
        image.GetPixelID(),  # pixel type kept: linear values truncated toward zero into int16
    )


def resample_reference(image: sitk.Image, grid: ReferenceGrid, *, is_label: bool = False) -> sitk.Image:
    """The whole image on its reference grid (what the released pipeline holds in memory).

    Memory: the grid's voxel count times the input's bytes per voxel; sessions use
    :func:`sample_reference_block` instead.
    """
    return _resample(image, grid.origin_lps, grid.spacing, grid.size_ijk, is_label)


_NUMPY_OF_PIXEL_ID = {
    sitk.sitkUInt8: np.uint8, sitk.sitkInt8: np.int8, sitk.sitkUInt16: np.uint16, sitk.sitkInt16: np.int16,
    sitk.sitkUInt32: np.uint32, sitk.sitkInt32: np.int32, sitk.sitkUInt64: np.uint64, sitk.sitkInt64: np.int64,
    sitk.sitkFloat32: np.float32, sitk.sitkFloat64: np.float64,
    sitk.sitkVectorUInt8: np.uint8, sitk.sitkVectorInt8: np.int8, sitk.sitkVectorUInt16: np.uint16,
    sitk.sitkVectorInt16: np.int16, sitk.sitkVectorUInt32: np.uint32, sitk.sitkVectorInt32: np.int32,
    sitk.sitkVectorUInt64: np.uint64, sitk.sitkVectorInt64: np.int64, sitk.sitkVectorFloat32: np.float32,
    sitk.sitkVectorFloat64: np.float64,
}


def pixel_dtype(image: sitk.Image) -> np.dtype:
    """numpy dtype of ``image``'s pixels (of a component, for vector images), from its pixel ID.

    Reads no pixel buffer: taking a numpy view of an image that another thread is running a
    filter on crashes SimpleITK, and a server's sessions share one input image.
    """
    try:
        return np.dtype(_NUMPY_OF_PIXEL_ID[image.GetPixelID()])
    except KeyError:
        raise ValueError(f"unsupported pixel type {image.GetPixelIDTypeAsString()!r}") from None


def sample_reference_block(
    image: sitk.Image, grid: ReferenceGrid, start_zyx, size_zyx, *, is_label: bool = False
) -> np.ndarray:
    """Voxels ``[start, start + size)`` ``(z, y, x)`` of ``image`` resampled on ``grid``.

    Bit-identical to the same block of :func:`resample_reference`; voxels outside the grid
    (negative or beyond its size) are padding (-1024 HU, labels 0), as in a crop of the
    resampled volume. Returns a ``size_zyx`` array of the input's pixel type.
    """
    start = np.asarray([int(s) for s in start_zyx])
    size = np.asarray([int(s) for s in size_zyx])
    lo = np.maximum(start, 0)
    hi = np.minimum(start + size, np.asarray(grid.shape_zyx))
    pad = LABEL_PAD if is_label else CT_PAD_HU
    if np.any(hi <= lo):
        dtype = pixel_dtype(image)
        return np.full(tuple(size), pad, dtype=dtype)
    inner = sitk.GetArrayFromImage(
        _resample(image, grid.block_origin(lo), grid.spacing, tuple((hi - lo)[::-1]), is_label)
    )
    if np.array_equal(lo, start) and np.array_equal(hi, start + size):
        return inner
    return crop_array(inner, start - lo, tuple(size), pad)


def reference_patch_grid(centre_lps, spacing: float, size=(64, 64, 64)) -> PatchGrid:
    """The patch ``crop_roi_with_center`` cuts around ``centre_lps``: origin = centre - size/2 ·
    spacing per axis in float32 (centre cast to float32 first); voxel ``size // 2`` is the centre."""
    size3 = (int(size),) * 3 if np.isscalar(size) else tuple(int(s) for s in size)
    half = np.asarray(size3[::-1], dtype=np.float32) / np.float32(2)
    centre = np.asarray(centre_lps, dtype=np.float64).astype(np.float32)
    if not np.all(np.isfinite(centre)):
        raise ValueError(f"patch centre must be finite LPS mm, got {centre_lps!r}")
    origin = centre + (-half) * np.float32(spacing)
    return PatchGrid(tuple(float(v) for v in origin.astype(np.float32)), float(spacing), size3)


def reference_crop(image: sitk.Image, grid: ReferenceGrid, patch: PatchGrid, *, is_label: bool = False) -> np.ndarray:
    """The patch of ``image``'s reference-grid volume, ``patch.size`` ``(z, y, x)``, input pixel type.

    A patch on the grid's voxel lattice is a block copy (:func:`sample_reference_block`);
    otherwise the grid's voxels around the patch are resampled first and then interpolated
    onto the patch (linear, truncated into the pixel type again; nearest for labels).
    """
    if abs(patch.spacing - grid.spacing) > 1e-9:
        raise ValueError(f"patch spacing {patch.spacing} differs from the grid's {grid.spacing}")
    rel = (np.asarray(patch.origin_lps, dtype=np.float64) - np.asarray(grid.origin_lps)) / grid.spacing
    start_xyz = np.rint(rel)
    if np.all(np.abs(rel - start_xyz) < 1e-9):
        return sample_reference_block(image, grid, start_xyz[::-1].astype(int), patch.size, is_label=is_label)
    lo = np.floor(rel).astype(int)[::-1] - 1  # (z, y, x): one voxel of interpolation reach
    hi = np.ceil(rel).astype(int)[::-1] + np.asarray(patch.size) + 1
    lo, hi = np.maximum(lo, 0), np.minimum(hi, np.asarray(grid.shape_zyx))
    pad = LABEL_PAD if is_label else CT_PAD_HU
    if np.any(hi <= lo):
        dtype = pixel_dtype(image)
        return np.full(patch.size, pad, dtype=dtype)
    block = sitk.GetImageFromArray(sample_reference_block(image, grid, lo, hi - lo, is_label=is_label))
    block.SetOrigin(grid.block_origin(lo))
    block.SetSpacing((grid.spacing,) * 3)
    return sitk.GetArrayFromImage(_resample(block, patch.origin_lps, patch.spacing, patch.size[::-1], is_label))


def normalize_reference(hu: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """The released ``normalize_sitk_im``: float32, clamp to ``window``, then
    ``(v - low) * (1 / (high - low))`` in double, stored as float32 (same shape)."""
    low, high = float(window[0]), float(window[1])
    if not high > low:
        raise ValueError(f"HU window {window!r}: high must be greater than low")
    v = np.clip(np.asarray(hu, dtype=np.float32), np.float32(low), np.float32(high))
    return ((v.astype(np.float64) - low) * (1.0 / (high - low))).astype(np.float32)


def reference_click_voxel(world_lps, patch: PatchGrid) -> tuple[np.ndarray, tuple[int, int, int]]:
    """World LPS mm -> ``(continuous (x, y, z) float32, rounded voxel (z, y, x))`` of ``patch``.

    As the released viewer: float32 matrices (identity direction times spacing, inverted),
    then numpy round (half to even). Its predictor would truncate an unrounded float click
    instead (31.99999 -> 31); rounding first is what the viewer passes it.
    """
    m = (np.eye(3, dtype=np.float32) * np.float32(patch.spacing)).astype(np.float32)
    inv = np.linalg.inv(m).astype(np.float32)
    d = np.asarray(world_lps, dtype=np.float64).astype(np.float32) - np.asarray(patch.origin_lps, dtype=np.float32)
    xyz = (inv @ d).astype(np.float32)
    vox = np.round(xyz).astype(np.int64)
    return xyz, (int(vox[2]), int(vox[1]), int(vox[0]))
