"""Geometry: orientation, resampling, voxel index <-> world mm, patches, HU windows.

World coordinates are ITK/DICOM LPS mm unless a name says ``ras``; SimpleITK indices are
``(i, j, k)`` (i fastest); numpy arrays and patches are ``[z, y, x]``.
"""

from .canonical import CT_PAD_HU, IDENTITY_DIRECTION, LABEL_PAD, canonical_grid, is_canonical, to_canonical
from .coords import (
    ijk_to_zyx,
    index_to_lps,
    index_to_ras,
    lps_to_index,
    lps_to_ras,
    physical_bounds,
    ras_to_index,
    ras_to_lps,
    zyx_to_ijk,
)
from .intensity import DEFAULT_WINDOW, normalize_hu, normalize_windows
from .orientation import PLANE_NORMALS, array_axis_of_plane, direction_from_code, orientation_code, orientation_from_direction
from .patch import PatchGrid, crop_array, crop_patch, paste_patch, patch_region

__all__ = [
    "CT_PAD_HU",
    "DEFAULT_WINDOW",
    "IDENTITY_DIRECTION",
    "LABEL_PAD",
    "PatchGrid",
    "canonical_grid",
    "crop_array",
    "crop_patch",
    "direction_from_code",
    "ijk_to_zyx",
    "index_to_lps",
    "index_to_ras",
    "is_canonical",
    "lps_to_index",
    "lps_to_ras",
    "normalize_hu",
    "normalize_windows",
    "orientation_code",
    "array_axis_of_plane",
    "PLANE_NORMALS",
    "orientation_from_direction",
    "paste_patch",
    "patch_region",
    "physical_bounds",
    "ras_to_index",
    "ras_to_lps",
    "to_canonical",
    "zyx_to_ijk",
]
