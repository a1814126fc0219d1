"""Exact round trips: mask on the original grid -> canonical 1.5 mm -> patch(es) -> pasted back.

Why these original spacings make nearest-neighbour round trips mathematically exact: pasting
back samples, for every original voxel centre c, the canonical voxel v nearest to c, which is
at most half a canonical voxel (0.75 mm) from c along each LPS axis. v got its label from the
original voxel whose cell contains v. Measured along the original axes, the offset v - c is
at most 0.75 mm for axis-aligned storage (LPS, RAS, PLI...) and at most 0.75 * sqrt(3) = 1.30 mm
for an oblique direction. So v lies in c's own cell whenever every original spacing exceeds
1.5 mm (axis-aligned) or 2.6 mm (oblique): the cases below use such spacings (coarser than the
canonical grid). Finer originals cannot round-trip exactly through a 1.5 mm grid.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from ctsam3d.geometry import PatchGrid, crop_patch, orientation_code, paste_patch, to_canonical
from ctsam3d.io import read_label

from geometry_helpers import blob_labels, make_image, rotation

CANONICAL = 1.5

CASES = [
    # id, shape (z, y, x), spacing (i, j, k) mm, direction, expected orientation code
    ("LPS", (14, 17, 19), (3.0, 3.0, 3.0), "LPS", "LPS"),
    ("RAS", (15, 18, 16), (2.0, 2.0, 2.0), "RAS", "RAS"),
    ("PLI-openkbp", (16, 20, 20), (3.906, 3.906, 3.0), "PLI", "PLI"),
    ("oblique", (13, 15, 17), (3.0, 3.0, 3.0), rotation((1.0, 2.0, 0.5), 27.0), None),
    ("anisotropic", (9, 21, 24), (1.6, 2.3, 5.0), "LPS", "LPS"),
    ("anisotropic-ASL", (10, 19, 14), (2.2, 1.7, 4.0), "ASL", "ASL"),
]


def _original(case):
    _id, shape, spacing, direction, _code = case
    return make_image(blob_labels(shape, seed=len(_id)), spacing, direction, origin=(-31.7, 12.25, 80.4))


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_single_patch_round_trip_is_exact(case):
    orig = _original(case)
    if case[4]:
        assert orientation_code(orig) == case[4]
    canon = to_canonical(orig, CANONICAL, is_label=True)
    assert canon.GetDirection() == (1, 0, 0, 0, 1, 0, 0, 0, 1)
    # One patch large enough for the whole volume, centred on its middle, snapped to the grid.
    centre = orig.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in orig.GetSize()])
    size = max(canon.GetSize()) + 2
    grid = PatchGrid.around(centre, CANONICAL, size, snap_to=canon)
    patch = crop_patch(canon, grid, is_label=True)
    region, values = paste_patch(patch, grid, orig, interpolation="nearest")
    back = np.zeros(orig.GetSize()[::-1], dtype=np.uint8)
    back[region] = values
    np.testing.assert_array_equal(back, sitk.GetArrayViewFromImage(orig))


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_tiled_patches_round_trip_is_exact(case):
    """Many small 16^3 patches (with offsets in every direction) pasted back one by one."""
    orig = _original(case)
    canon = to_canonical(orig, CANONICAL, is_label=True)
    sentinel = 255
    back = np.full(orig.GetSize()[::-1], sentinel, dtype=np.uint8)
    csize = canon.GetSize()[::-1]
    for z in range(-3, csize[0], 16):
        for y in range(-5, csize[1], 16):
            for x in range(-2, csize[2], 16):
                grid = PatchGrid.from_index(canon, (z, y, x), 16)
                patch = crop_patch(canon, grid, is_label=True)
                region, values = paste_patch(patch, grid, orig, interpolation="nearest", fill=sentinel)
                if values.size:
                    back[region] = np.where(values != sentinel, values, back[region])
    assert not (back == sentinel).any(), "some original voxels were covered by no patch"
    np.testing.assert_array_equal(back, sitk.GetArrayViewFromImage(orig))


def test_real_openkbp_label_map_round_trip(fixture_ct, fixture_labels):
    """The fixture's real OpenKBP label map (PLI, 3.906 x 3.906 x 3 mm) survives the round trip."""
    ct = sitk.ReadImage(str(fixture_ct))
    labels = read_label(fixture_labels, reference=ct)
    canon = to_canonical(labels, CANONICAL, is_label=True)
    arr = sitk.GetArrayViewFromImage(labels)
    back = np.zeros_like(arr)
    zyx = np.argwhere(arr > 0)
    centre_ijk = ((zyx.min(0) + zyx.max(0)) / 2)[::-1]
    centre = labels.TransformContinuousIndexToPhysicalPoint(centre_ijk.tolist())
    grid = PatchGrid.around(centre, CANONICAL, (192, 128, 128), snap_to=canon)  # 288 x 192 x 192 mm
    region, values = paste_patch(crop_patch(canon, grid, is_label=True), grid, labels, interpolation="nearest")
    back[region] = values
    np.testing.assert_array_equal(back, arr)


def test_finer_original_is_not_exact_control():
    """Control: a 1 mm original cannot round-trip through 1.5 mm (isolated voxels are lost),
    so the exactness above is a property of the spacings chosen, not of a lenient test."""
    orig = make_image(blob_labels((12, 14, 16), seed=3), (1.0, 1.0, 1.0), "LPS")
    canon = to_canonical(orig, CANONICAL, is_label=True)
    grid = PatchGrid.around(
        orig.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in orig.GetSize()]), CANONICAL, 32, snap_to=canon
    )
    region, values = paste_patch(crop_patch(canon, grid, is_label=True), grid, orig, interpolation="nearest")
    back = np.zeros(orig.GetSize()[::-1], dtype=np.uint8)
    back[region] = values
    assert not np.array_equal(back, sitk.GetArrayViewFromImage(orig))
