"""Orientation codes of an image's axes, in the DICOM/nibabel "towards" convention.

Letter ``c`` of the code says towards which patient direction index axis ``c`` (i, j, k)
points: identity direction -> ``"LPS"`` (ITK's enum calls that same grid "RAI", naming where
the axes come *from*); OpenKBP volumes stored P, L, I -> ``"PLI"``. An oblique direction
gets the closest code (the axis permutation best aligned with the direction cosines).
"""

from __future__ import annotations

from itertools import permutations

import numpy as np
import SimpleITK as sitk

_POS = "LPS"
_NEG = "RAI"


def orientation_from_direction(direction) -> str:
    """Orientation code of a 3x3 direction matrix (row-major sequence of 9 or a 3x3 array).

    Column ``c`` of the matrix is the LPS unit vector of index axis ``c``.
    """
    d = np.asarray(direction, dtype=np.float64).reshape(3, 3)
    best, best_score = None, -1.0
    for perm in permutations(range(3)):  # perm[c] = world axis assigned to index axis c
        score = sum(abs(d[perm[c], c]) for c in range(3))
        if score > best_score + 1e-12:
            best, best_score = perm, score
    return "".join(
        (_POS if d[best[c], c] >= 0 else _NEG)[best[c]] for c in range(3)
    )


def orientation_code(image: sitk.Image) -> str:
    """Three-letter orientation code of ``image`` ("towards" convention, e.g. ``"LPS"``, ``"PLI"``)."""
    return orientation_from_direction(image.GetDirection())


def direction_from_code(code: str) -> tuple[float, ...]:
    """Row-major 3x3 direction matrix (9 floats) for an orientation code such as ``"PLI"``."""
    code = code.upper()
    d = np.zeros((3, 3))
    if len(code) != 3:
        raise ValueError(f"orientation code {code!r} must have 3 letters")
    for c, letter in enumerate(code):
        if letter in _POS:
            d[_POS.index(letter), c] = 1.0
        elif letter in _NEG:
            d[_NEG.index(letter), c] = -1.0
        else:
            raise ValueError(f"orientation code {code!r}: unknown letter {letter!r}")
    if abs(abs(np.linalg.det(d)) - 1.0) > 1e-9:
        raise ValueError(f"orientation code {code!r} uses an axis twice")
    return tuple(d.ravel())


#: The anatomical planes, by the LPS world axis normal to each (sagittal: left-right, ...).
PLANE_NORMALS: dict[str, int] = {"sagittal": 0, "coronal": 1, "axial": 2}


def array_axis_of_plane(direction, plane: str) -> int:
    """numpy array axis ``(z, y, x)`` of an image whose slices lie in an anatomical ``plane``.

    ``direction``: the image's 3x3 direction matrix (row-major 9 values, ``image.GetDirection()``);
    ``plane``: ``"axial"``, ``"coronal"`` or ``"sagittal"``. The index axis closest to the plane's
    normal is found as in :func:`orientation_from_direction` (so oblique images get the nearest
    one). E.g. an LPS or RAS CT: axial 0, coronal 1, sagittal 2; an OpenKBP volume stored P, L, I
    (``"PLI"``): axial 0, coronal 2, sagittal 1.

    Raises:
        ValueError: an unknown plane name.
    """
    if plane not in PLANE_NORMALS:
        raise ValueError(f"plane must be one of {sorted(PLANE_NORMALS)}, got {plane!r}")
    code = orientation_from_direction(direction)
    world = PLANE_NORMALS[plane]
    for c, letter in enumerate(code):  # index axis c = i, j, k = numpy axis 2 - c
        if letter in (_POS[world], _NEG[world]):
            return 2 - c
    raise AssertionError(f"orientation code {code!r} lacks world axis {world}")  # a permutation always has it
