"""The session's canonical lattice: where patches live and how input indices map onto it.

A session never resamples the whole input volume. It fixes one *canonical lattice* for the
image -- identity direction, the model's isotropic spacing, origin and extent from
:func:`ctsam3d.geometry.canonical_grid` (so it is exactly the grid ``to_canonical`` would
produce) -- and places every patch at an integer voxel offset of it. Patches therefore
share voxels, and their probabilities merge voxel by voxel without interpolation.
For a reference-exact model the lattice is instead the released pipeline's RAI grid
(:class:`ctsam3d.geometry.reference_grid.ReferenceGrid`: origin and size rule of the release),
and patches are cut from it as int16 block copies (``reference=True``).

Axis orders: lattice voxel indices are numpy order ``(z, y, x)``; input-image indices are
ITK ``(i, j, k)`` (i fastest); world points are LPS millimetres.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..geometry import PatchGrid, canonical_grid, index_to_lps, lps_to_index
from ..geometry.reference_grid import ReferenceGrid

__all__ = ["Lattice"]


@dataclass(frozen=True)
class Lattice:
    """Canonical lattice of one input image.

    Attributes:
        origin_lps: LPS mm of lattice voxel ``(0, 0, 0)``.
        spacing: isotropic voxel size in mm (the model's spacing).
        shape_zyx: number of lattice voxels ``(Z, Y, X)`` covering the image's physical extent.
        patch_size: model patch size ``(D, H, W)`` in voxels.
        reference: the released pipeline's RAI grid (reference-exact models), not the canonical one.
    """

    origin_lps: tuple[float, float, float]
    spacing: float
    shape_zyx: tuple[int, int, int]
    patch_size: tuple[int, int, int]
    reference: bool = False

    @classmethod
    def for_image(cls, image: sitk.Image, spacing: float, patch_size, *, reference: bool = False) -> "Lattice":
        """Lattice covering ``image`` (any orientation) at ``spacing`` mm with ``patch_size`` patches
        (``reference``: the released pipeline's grid rule, see :mod:`ctsam3d.geometry.reference_grid`)."""
        if reference:
            ref = ReferenceGrid.of(image, float(spacing))
            origin, size_ijk = ref.origin_lps, ref.size_ijk
        else:
            origin, size_ijk = canonical_grid(image, float(spacing))
        ps = (int(patch_size),) * 3 if np.isscalar(patch_size) else tuple(int(p) for p in patch_size)
        return cls(tuple(origin), float(spacing), tuple(int(s) for s in size_ijk[::-1]), ps, bool(reference))

    def reference_grid(self) -> ReferenceGrid:
        """The lattice as a :class:`ReferenceGrid` (meaningful when ``reference``)."""
        return ReferenceGrid(self.origin_lps, self.spacing, tuple(self.shape_zyx[::-1]))

    # ------------------------------------------------------------------ conversions
    def world_to_zyx(self, lps) -> np.ndarray:
        """LPS mm ``(..., 3)`` -> continuous lattice index ``(..., 3)`` in ``(z, y, x)``."""
        xyz = (np.asarray(lps, dtype=np.float64) - np.asarray(self.origin_lps)) / self.spacing
        return xyz[..., ::-1].copy()

    def zyx_to_world(self, zyx) -> np.ndarray:
        """Lattice index ``(..., 3)`` ``(z, y, x)`` (may be fractional) -> LPS mm ``(..., 3)``."""
        zyx = np.asarray(zyx, dtype=np.float64)
        return np.asarray(self.origin_lps) + zyx[..., ::-1] * self.spacing

    def grid(self, start_zyx, size_zyx=None) -> PatchGrid:
        """:class:`PatchGrid` whose voxel ``[0, 0, 0]`` is lattice voxel ``start_zyx``."""
        size = self.patch_size if size_zyx is None else tuple(int(s) for s in size_zyx)
        return PatchGrid(tuple(self.zyx_to_world(start_zyx)), self.spacing, size)

    def patch_start_around(self, zyx) -> tuple[int, int, int]:
        """Start (lattice ``(z, y, x)``) of the patch centred on lattice point ``zyx``.

        The point falls on patch voxel ``size // 2`` (rounded to the nearest lattice voxel),
        the same convention as :meth:`PatchGrid.around`.
        """
        c = np.rint(np.asarray(zyx, dtype=np.float64)).astype(int)
        return tuple(int(v) for v in c - np.asarray(self.patch_size) // 2)  # type: ignore[return-value]

    def image_box_zyx(self, image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
        """Lattice box ``[lo, hi)`` ``(z, y, x)`` of the voxels whose centres lie in ``image``'s extent."""
        size = np.asarray(image.GetSize(), dtype=np.float64)
        corners = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], float) * size - 0.5
        zyx = self.world_to_zyx(index_to_lps(image, corners))
        lo = np.maximum(np.ceil(zyx.min(axis=0) - 1e-6), 0).astype(int)
        hi = np.minimum(np.floor(zyx.max(axis=0) + 1e-6) + 1, np.asarray(self.shape_zyx)).astype(int)
        return lo, hi

    def box_to_input_bbox(self, lo_zyx, hi_zyx, image: sitk.Image) -> tuple[tuple[int, int], ...] | None:
        """Input-image index box ``((i0, i1), (j0, j1), (k0, k1))`` (half-open) covering a lattice box.

        ``[lo_zyx, hi_zyx)`` is a half-open lattice box; every input voxel whose value can depend
        on it (linear interpolation reaches one lattice voxel) lies in the returned box, which is
        clipped to the image. ``None`` if they do not meet.
        """
        lo = np.asarray(lo_zyx, dtype=np.float64) - 1.0
        hi = np.asarray(hi_zyx, dtype=np.float64)  # last voxel + 1 = one voxel of interpolation reach
        corners = np.array(
            [[(lo, hi)[a][0], (lo, hi)[b][1], (lo, hi)[c][2]] for a in (0, 1) for b in (0, 1) for c in (0, 1)]
        )
        ijk = lps_to_index(image, self.zyx_to_world(corners))
        i_lo = np.maximum(np.floor(ijk.min(axis=0)), 0).astype(int)
        i_hi = np.minimum(np.ceil(ijk.max(axis=0)) + 1, np.asarray(image.GetSize())).astype(int)
        if np.any(i_hi <= i_lo):
            return None
        return tuple((int(a), int(b)) for a, b in zip(i_lo, i_hi))
