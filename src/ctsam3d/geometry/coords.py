"""Coordinate conversions: voxel indices <-> world millimetres, LPS <-> RAS, ijk <-> zyx.

Conventions (see docs/architecture.md):

* World coordinates are ITK/DICOM **LPS** millimetres unless a name says ``ras``.
  RAS = (-x, -y, z) of LPS (NIfTI affines, nibabel, NiiVue).
* Voxel indices of a SimpleITK image are ITK ``(i, j, k)``, i fastest (the file's x axis).
  numpy arrays from ``sitk.GetArrayFromImage`` are indexed ``[k, j, i]`` = ``[z, y, x]``.

Every function here is vectorised: points are arrays of shape ``(3,)`` or ``(N, 3)`` and the
result has the same shape (float64). Continuous (non-integer) indices are allowed; integer
voxel ``n`` has its centre at continuous index ``n``.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

_FLIP_LPS_RAS = np.array([-1.0, -1.0, 1.0])


def lps_to_ras(points_lps) -> np.ndarray:
    """World LPS mm -> world RAS mm; ``(..., 3)`` -> ``(..., 3)``."""
    return np.asarray(points_lps, dtype=np.float64) * _FLIP_LPS_RAS


def ras_to_lps(points_ras) -> np.ndarray:
    """World RAS mm -> world LPS mm; ``(..., 3)`` -> ``(..., 3)``."""
    return np.asarray(points_ras, dtype=np.float64) * _FLIP_LPS_RAS


def ijk_to_zyx(index_ijk) -> np.ndarray:
    """ITK index ``(i, j, k)`` -> numpy index ``(z, y, x)`` = ``(k, j, i)`` (last axis reversed).

    The dtype is kept, so integer indices stay integers.
    """
    return np.asarray(index_ijk)[..., ::-1].copy()


def zyx_to_ijk(index_zyx) -> np.ndarray:
    """numpy index ``(z, y, x)`` -> ITK index ``(i, j, k)`` (last axis reversed)."""
    return np.asarray(index_zyx)[..., ::-1].copy()


def direction_matrix(image: sitk.Image) -> np.ndarray:
    """The image's 3x3 direction matrix; column ``c`` is the LPS unit vector of index axis ``c``."""
    return np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)


def index_to_lps(image: sitk.Image, index_ijk) -> np.ndarray:
    """Continuous ITK index ``(i, j, k)`` of ``image`` -> world LPS mm.

    Same as ``image.TransformContinuousIndexToPhysicalPoint`` but vectorised over ``(N, 3)``.
    """
    idx = np.asarray(index_ijk, dtype=np.float64)
    m = direction_matrix(image) * np.asarray(image.GetSpacing(), dtype=np.float64)[None, :]
    return idx @ m.T + np.asarray(image.GetOrigin(), dtype=np.float64)


def lps_to_index(image: sitk.Image, points_lps) -> np.ndarray:
    """World LPS mm -> continuous ITK index ``(i, j, k)`` of ``image`` (not rounded)."""
    p = np.asarray(points_lps, dtype=np.float64) - np.asarray(image.GetOrigin(), dtype=np.float64)
    m = direction_matrix(image) * np.asarray(image.GetSpacing(), dtype=np.float64)[None, :]
    return p @ np.linalg.inv(m).T


def index_to_ras(image: sitk.Image, index_ijk) -> np.ndarray:
    """Continuous ITK index ``(i, j, k)`` -> world RAS mm."""
    return lps_to_ras(index_to_lps(image, index_ijk))


def ras_to_index(image: sitk.Image, points_ras) -> np.ndarray:
    """World RAS mm -> continuous ITK index ``(i, j, k)`` (not rounded)."""
    return lps_to_index(image, ras_to_lps(points_ras))


def physical_bounds(image: sitk.Image) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned LPS bounding box ``(min_lps, max_lps)`` of the image's physical extent.

    The extent includes the half voxel around the outer voxel centres (continuous index
    ``-0.5 .. size-0.5`` on every axis), so it is the region the voxels actually cover.
    """
    size = np.asarray(image.GetSize(), dtype=np.float64)
    corners = np.array(
        [[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], dtype=np.float64
    ) * size - 0.5
    pts = index_to_lps(image, corners)
    return pts.min(axis=0), pts.max(axis=0)
