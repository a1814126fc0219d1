"""Index <-> world conversions against SimpleITK's own transforms."""

from __future__ import annotations

import numpy as np
import pytest

from ctsam3d.geometry import (
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

from geometry_helpers import make_image, rotation

DIRECTIONS = {
    "LPS": "LPS",
    "RAS": "RAS",
    "PLI": "PLI",
    "oblique": rotation((0.3, -1.0, 0.7), 41.0),
}


@pytest.mark.parametrize("direction", DIRECTIONS.values(), ids=DIRECTIONS.keys())
def test_index_to_lps_matches_simpleitk(direction):
    img = make_image(np.zeros((5, 6, 7), np.int16), (0.8, 1.3, 2.5), direction, origin=(10.0, -20.5, 33.3))
    rng = np.random.default_rng(1)
    idx = rng.uniform(-2, 8, size=(20, 3))
    ours = index_to_lps(img, idx)
    theirs = np.array([img.TransformContinuousIndexToPhysicalPoint(p.tolist()) for p in idx])
    np.testing.assert_allclose(ours, theirs, atol=1e-9)
    np.testing.assert_allclose(lps_to_index(img, ours), idx, atol=1e-9)
    # single point in, single point out
    assert index_to_lps(img, idx[0]).shape == (3,)
    np.testing.assert_allclose(ras_to_index(img, index_to_ras(img, idx)), idx, atol=1e-9)


def test_lps_ras_flip_x_and_y():
    p = np.array([[1.0, 2.0, 3.0], [-4.0, 5.5, -6.0]])
    np.testing.assert_array_equal(lps_to_ras(p), [[-1.0, -2.0, 3.0], [4.0, -5.5, -6.0]])
    np.testing.assert_array_equal(ras_to_lps(lps_to_ras(p)), p)


def test_zyx_ijk_reverse_last_axis_and_keep_dtype():
    ijk = np.array([[1, 2, 3], [4, 5, 6]])
    zyx = ijk_to_zyx(ijk)
    np.testing.assert_array_equal(zyx, [[3, 2, 1], [6, 5, 4]])
    assert zyx.dtype == ijk.dtype
    np.testing.assert_array_equal(zyx_to_ijk(zyx), ijk)
    # numpy [z, y, x] indexing agrees with SimpleITK's (i, j, k) pixel access
    img = make_image(np.arange(60, dtype=np.int16).reshape(3, 4, 5), (1, 1, 1), "LPS")
    arr = np.arange(60).reshape(3, 4, 5)
    assert img.GetPixel(4, 2, 1) == arr[tuple(ijk_to_zyx([4, 2, 1]))]


def test_physical_bounds_cover_voxel_cells():
    img = make_image(np.zeros((4, 3, 2), np.int16), (2.0, 3.0, 5.0), "RAS", origin=(0, 0, 0))
    lo, hi = physical_bounds(img)
    # RAS storage: i runs towards -x (R), j towards -y (A), k towards +z.
    np.testing.assert_allclose(lo, [-1.0 * 2 - 1.0, -2 * 3 - 1.5, -2.5])
    np.testing.assert_allclose(hi, [1.0, 1.5, 3 * 5 + 2.5])
