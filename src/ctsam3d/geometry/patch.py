"""Patches: fixed-size canonical-aligned grids in world space, cropping and pasting back.

A patch is a ``(D, H, W)`` = ``(z, y, x)`` array on a :class:`PatchGrid`: identity direction,
isotropic spacing (mm), LPS origin of voxel ``[0, 0, 0]``. Patch voxel ``(z, y, x)`` lies at
LPS ``origin + spacing * (x, y, z)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..errors import GeometryError
from .canonical import CT_PAD_HU, IDENTITY_DIRECTION, LABEL_PAD
from .coords import index_to_lps, lps_to_index

# How far (in voxels) a grid may be off a reference lattice and still count as aligned.
_ALIGN_TOL = 1e-3


def _size3(size) -> tuple[int, int, int]:
    if np.isscalar(size):
        size = (int(size),) * 3
    out = tuple(int(s) for s in size)
    if len(out) != 3 or min(out) < 1:
        raise ValueError(f"patch size must be a positive int or 3 positive ints (z, y, x), got {size!r}")
    return out  # type: ignore[return-value]


@dataclass(frozen=True)
class PatchGrid:
    """A canonical-aligned patch grid.

    Attributes:
        origin_lps: LPS mm of the centre of voxel ``[0, 0, 0]``.
        spacing: isotropic voxel size in mm.
        size: ``(D, H, W)`` = ``(z, y, x)`` voxels.
    The direction is always the identity (x = L, y = P, z = S).
    """

    origin_lps: tuple[float, float, float]
    spacing: float
    size: tuple[int, int, int]

    def __post_init__(self):
        object.__setattr__(self, "origin_lps", tuple(float(v) for v in self.origin_lps))
        object.__setattr__(self, "spacing", float(self.spacing))
        object.__setattr__(self, "size", _size3(self.size))
        if not self.spacing > 0:
            raise ValueError(f"patch spacing must be > 0 mm, got {self.spacing}")

    # ----------------------------------------------------------------- constructors
    @classmethod
    def around(
        cls,
        center_lps,
        spacing: float,
        size,
        *,
        snap_to: sitk.Image | None = None,
    ) -> "PatchGrid":
        """Patch of ``size`` voxels (int or ``(z, y, x)``) at ``spacing`` mm centred on ``center_lps``.

        ``center_lps`` (LPS mm) falls on patch voxel ``size // 2`` on each axis (the exact middle
        for odd sizes; for 64 it is voxel 32). With ``snap_to`` (an identity-direction image of
        the same spacing, e.g. the canonical CT), the origin is moved by less than half a voxel
        onto that image's voxel lattice, so cropping copies voxels without interpolation.
        """
        size3 = _size3(size)
        half_xyz = np.array(size3[::-1], dtype=np.float64) // 2
        origin = np.asarray(center_lps, dtype=np.float64) - half_xyz * float(spacing)
        if not np.all(np.isfinite(origin)):
            raise ValueError(f"patch centre must be finite LPS mm, got {center_lps!r}")
        if snap_to is not None:
            _check_lattice(snap_to, float(spacing))
            ref_origin = np.asarray(snap_to.GetOrigin(), dtype=np.float64)
            origin = ref_origin + np.round((origin - ref_origin) / spacing) * spacing
        return cls(tuple(origin), float(spacing), size3)

    @classmethod
    def from_index(cls, reference: sitk.Image, start_zyx, size) -> "PatchGrid":
        """Patch whose voxel ``[0,0,0]`` is voxel ``start_zyx`` of the canonical ``reference``."""
        spacing = float(reference.GetSpacing()[0])
        _check_lattice(reference, spacing)
        start_ijk = np.asarray(start_zyx, dtype=np.float64)[::-1]
        origin = index_to_lps(reference, start_ijk)
        return cls(tuple(origin), spacing, _size3(size))

    # ----------------------------------------------------------------- conversions
    @property
    def center_lps(self) -> tuple[float, float, float]:
        """LPS mm of patch voxel ``size // 2`` (the point :meth:`around` centres on)."""
        return tuple(self.index_to_world(np.array(self.size) // 2))  # type: ignore[return-value]

    def index_to_world(self, zyx) -> np.ndarray:
        """Patch voxel index ``(z, y, x)`` (``(3,)`` or ``(N, 3)``, may be fractional) -> LPS mm."""
        zyx = np.asarray(zyx, dtype=np.float64)
        return np.asarray(self.origin_lps) + zyx[..., ::-1] * self.spacing

    def world_to_index(self, lps) -> np.ndarray:
        """LPS mm (``(3,)`` or ``(N, 3)``) -> continuous patch index ``(z, y, x)`` (not rounded)."""
        xyz = (np.asarray(lps, dtype=np.float64) - np.asarray(self.origin_lps)) / self.spacing
        return xyz[..., ::-1].copy()

    def contains_index(self, zyx) -> np.ndarray | bool:
        """True where the (rounded) patch index ``(z, y, x)`` lies inside the patch."""
        idx = np.rint(np.asarray(zyx, dtype=np.float64))
        inside = np.all((idx >= 0) & (idx < np.asarray(self.size)), axis=-1)
        return bool(inside) if np.ndim(inside) == 0 else inside

    def start_in(self, reference: sitk.Image) -> tuple[int, int, int]:
        """Integer voxel ``(z, y, x)`` of the canonical ``reference`` that is patch voxel ``[0,0,0]``.

        Raises:
            GeometryError: the patch is not on the reference's voxel lattice.
        """
        _check_lattice(reference, self.spacing)
        ijk = lps_to_index(reference, self.origin_lps)
        rounded = np.rint(ijk)
        if np.max(np.abs(ijk - rounded)) > _ALIGN_TOL:
            raise GeometryError(
                f"patch origin {self.origin_lps} is not on the voxel lattice of the reference image"
            )
        return tuple(int(v) for v in rounded[::-1])  # type: ignore[return-value]

    def is_aligned_with(self, reference: sitk.Image) -> bool:
        """True if the patch lies on ``reference``'s voxel lattice (same spacing, identity direction)."""
        try:
            self.start_in(reference)
        except GeometryError:
            return False
        return True


def _check_lattice(reference: sitk.Image, spacing: float) -> None:
    if not np.allclose(reference.GetDirection(), IDENTITY_DIRECTION, atol=1e-6) or not np.allclose(
        reference.GetSpacing(), (spacing,) * 3, rtol=1e-6, atol=1e-9
    ):
        raise GeometryError(
            f"reference image is not canonical at {spacing} mm "
            f"(spacing {reference.GetSpacing()}, direction {reference.GetDirection()})"
        )


# --------------------------------------------------------------------------- cropping
def crop_array(volume_zyx: np.ndarray, start_zyx, size_zyx, pad) -> np.ndarray:
    """Crop ``volume_zyx[start : start + size]`` with ``pad`` where the box leaves the volume.

    Args:
        volume_zyx: a ``(Z, Y, X)`` array, e.g. a cached canonical CT.
        start_zyx: voxel ``(z, y, x)`` of the crop's first voxel (may be negative / outside).
        size_zyx: crop size, an int or ``(D, H, W)``.
        pad: value for voxels outside the volume (-1024 for CT, 0 for labels).

    Returns:
        A new ``(D, H, W)`` array of ``volume_zyx.dtype``.
    """
    size = _size3(size_zyx)
    start = [int(s) for s in start_zyx]
    out = np.full(size, pad, dtype=volume_zyx.dtype)
    src, dst = [], []
    for s, n, dim in zip(start, size, volume_zyx.shape):
        lo, hi = max(s, 0), min(s + n, dim)
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - s, hi - s))
    out[tuple(dst)] = volume_zyx[tuple(src)]
    return out


def crop_patch(image: sitk.Image, grid: PatchGrid, *, is_label: bool = False, pad=None, edge: bool = False) -> np.ndarray:
    """Sample ``image`` on ``grid``; returns a ``(D, H, W)`` array.

    CT: linear interpolation, float32, ``pad`` (default -1024 HU) outside the image, or with
    ``edge`` the value of the nearest image voxel there (edge replication: a CT that ends
    inside the body -- a thin slab, a cropped scan -- continues as its last slice instead of
    air). Labels (``is_label``): nearest neighbour, pixel type kept, ``pad`` (default 0)
    outside. When the grid lies on ``image``'s voxel lattice (a canonical image) the voxels
    are copied without interpolation.
    """
    if pad is None:
        pad = LABEL_PAD if is_label else CT_PAD_HU
    edge = edge and not is_label
    if grid.is_aligned_with(image):
        view = sitk.GetArrayViewFromImage(image)
        start = np.asarray(grid.start_in(image), int)
        if edge:  # index of the nearest voxel, clipped per axis
            idx = [np.clip(np.arange(s, s + n), 0, d - 1) for s, n, d in zip(start, _size3(grid.size), view.shape)]
            return view[np.ix_(*idx)].astype(np.float32)
        out = crop_array(view, start, grid.size, pad)
        return out if is_label else out.astype(np.float32, copy=False)
    interp = sitk.sitkNearestNeighbor if is_label else sitk.sitkLinear
    ptype = image.GetPixelID() if is_label else sitk.sitkFloat32
    out = sitk.Resample(
        image,
        list(grid.size[::-1]),
        sitk.Transform(),
        interp,
        grid.origin_lps,
        (grid.spacing,) * 3,
        IDENTITY_DIRECTION,
        float(pad),
        ptype,
        bool(edge),  # useNearestNeighborExtrapolator
    )
    return sitk.GetArrayFromImage(out)


# --------------------------------------------------------------------------- pasting
def patch_region(grid: PatchGrid, reference: sitk.Image) -> tuple[slice, slice, slice]:
    """Bounding box ``[z, y, x]`` slices of the ``reference`` voxels whose centres lie in the patch.

    The box is clipped to the reference; it is empty (``slice(0, 0)``) when they do not meet.
    """
    size_xyz = np.asarray(grid.size[::-1], dtype=np.float64)
    corners = np.array(
        [[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], dtype=np.float64
    ) * size_xyz - 0.5
    corners_lps = np.asarray(grid.origin_lps) + corners * grid.spacing
    ijk = lps_to_index(reference, corners_lps)
    eps = 1e-6
    lo = np.maximum(np.ceil(ijk.min(axis=0) - eps), 0).astype(int)
    hi = np.minimum(np.floor(ijk.max(axis=0) + eps), np.asarray(reference.GetSize()) - 1).astype(int)
    if np.any(hi < lo):
        return (slice(0, 0),) * 3
    return tuple(slice(int(lo[a]), int(hi[a]) + 1) for a in (2, 1, 0))  # type: ignore[return-value]


def paste_patch(
    values_zyx: np.ndarray,
    grid: PatchGrid,
    reference: sitk.Image,
    *,
    interpolation: str = "linear",
    fill=0,
) -> tuple[tuple[slice, slice, slice], np.ndarray]:
    """Resample a patch's values onto the part of ``reference``'s grid the patch covers.

    Only the reference-grid bounding box of the patch is computed, so memory stays bounded
    by the patch size even for very large references.

    Args:
        values_zyx: ``(D, H, W)`` patch values on ``grid`` (probabilities, logits, labels, bool).
        grid: the patch's grid.
        reference: the image whose grid receives the values (any orientation).
        interpolation: ``"linear"`` (float32 result) or ``"nearest"`` (dtype kept).
        fill: value for region voxels outside the patch (an oblique reference's box holds some).

    Returns:
        ``(region, values)``: ``region`` = ``(slice_z, slice_y, slice_x)`` of the reference array
        ``[z, y, x]``, and ``values`` with the region's shape. Use
        ``array[region] = values`` (or a max-merge) to paste.
    """
    values_zyx = np.asarray(values_zyx)
    if values_zyx.shape != grid.size:
        raise ValueError(f"patch values have shape {values_zyx.shape}, grid size is {grid.size}")
    if interpolation not in ("linear", "nearest"):
        raise ValueError(f"interpolation must be 'linear' or 'nearest', got {interpolation!r}")
    region = patch_region(grid, reference)
    shape = tuple(s.stop - s.start for s in region)
    is_bool = values_zyx.dtype == np.bool_
    src = values_zyx.astype(np.uint8) if is_bool else values_zyx
    out_dtype = np.float32 if interpolation == "linear" else values_zyx.dtype
    if min(shape) == 0:
        return region, np.zeros(shape, dtype=out_dtype)
    patch_img = sitk.GetImageFromArray(src)
    patch_img.SetOrigin(grid.origin_lps)
    patch_img.SetSpacing((grid.spacing,) * 3)
    if interpolation == "linear":
        interp, ptype = sitk.sitkLinear, sitk.sitkFloat32
    else:
        interp, ptype = sitk.sitkNearestNeighbor, patch_img.GetPixelID()
    start_ijk = [region[2].start, region[1].start, region[0].start]
    out = sitk.Resample(
        patch_img,
        list(shape[::-1]),
        sitk.Transform(),
        interp,
        reference.TransformIndexToPhysicalPoint(start_ijk),
        reference.GetSpacing(),
        reference.GetDirection(),
        float(fill),
        ptype,
    )
    arr = sitk.GetArrayFromImage(out)
    if is_bool:
        arr = arr.astype(bool)
    return region, arr
