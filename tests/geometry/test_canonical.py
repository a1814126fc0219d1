"""Canonical resampling: identity direction, isotropic spacing, world positions preserved."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from ctsam3d.geometry import CT_PAD_HU, index_to_lps, is_canonical, lps_to_index, physical_bounds, to_canonical

from geometry_helpers import make_image, rotation

GEOMETRIES = {
    "LPS": ((2.0, 2.0, 2.0), "LPS"),
    "RAS": ((0.9, 0.9, 2.5), "RAS"),
    "PLI": ((3.906, 3.906, 3.0), "PLI"),
    "oblique": ((1.7, 2.2, 3.1), rotation((1.0, -0.4, 0.3), 33.0)),
}


def _ramp_ct(shape_zyx, spacing, direction, coef=(0.7, -1.3, 2.1), offset=-200.0):
    """CT whose HU is an affine function of the LPS position of each voxel centre."""
    img = make_image(np.zeros(shape_zyx, np.float32), spacing, direction, origin=(-40.0, 25.0, -70.0))
    zyx = np.stack(np.meshgrid(*[np.arange(s) for s in shape_zyx], indexing="ij"), -1).reshape(-1, 3)
    lps = index_to_lps(img, zyx[:, ::-1])
    hu = (lps @ np.asarray(coef) + offset).reshape(shape_zyx).astype(np.float32)
    out = sitk.GetImageFromArray(hu)
    out.CopyInformation(img)
    return out, np.asarray(coef), offset


@pytest.mark.parametrize("spacing, direction", GEOMETRIES.values(), ids=GEOMETRIES.keys())
def test_world_position_of_voxels_is_preserved(spacing, direction):
    """Linear interpolation of a linear field is exact: the canonical voxel at LPS q must hold
    f(q) wherever q lies between original voxel centres; so any shift or flip would show."""
    ct, coef, offset = _ramp_ct((12, 14, 16), spacing, direction)
    canon = to_canonical(ct, 1.5)
    assert is_canonical(canon, 1.5)
    arr = sitk.GetArrayViewFromImage(canon)
    zyx = np.stack(np.meshgrid(*[np.arange(s) for s in arr.shape], indexing="ij"), -1).reshape(-1, 3)
    q = index_to_lps(canon, zyx[:, ::-1])
    # reference positions through SimpleITK's own transform, not ours
    q_sitk = np.array([canon.TransformIndexToPhysicalPoint([int(v) for v in p]) for p in zyx[::97, ::-1]])
    np.testing.assert_allclose(q[::97], q_sitk, atol=1e-9)
    cont = lps_to_index(ct, q)
    interior = np.all((cont >= 0) & (cont <= np.asarray(ct.GetSize()) - 1), axis=1)
    assert interior.sum() > 100
    np.testing.assert_allclose(arr.reshape(-1)[interior], (q @ coef + offset)[interior], atol=2e-3)


@pytest.mark.parametrize("spacing, direction", GEOMETRIES.values(), ids=GEOMETRIES.keys())
def test_single_voxel_label_lands_at_its_world_position(spacing, direction):
    arr = np.zeros((9, 10, 11), np.uint8)
    arr[4, 6, 3] = 1
    lab = make_image(arr, spacing, direction, origin=(5.0, -7.0, 12.0))
    canon = to_canonical(lab, 1.0, is_label=True)
    point = lab.TransformIndexToPhysicalPoint([3, 6, 4])  # (i, j, k) = reversed [z, y, x]
    idx = canon.TransformPhysicalPointToIndex(point)
    assert canon.GetPixel(idx) == 1
    assert canon.GetPixelID() == sitk.sitkUInt8


def test_canonical_grid_covers_extent_and_pads():
    ct, _, _ = _ramp_ct((6, 7, 8), (3.906, 3.906, 3.0), "PLI")
    canon = to_canonical(ct, 1.5)
    lo, hi = physical_bounds(ct)
    clo, chi = physical_bounds(canon)
    assert np.all(clo <= lo + 1e-6) and np.all(chi >= hi - 1e-6)
    assert np.all(chi - clo < hi - lo + 1.5 + 1e-6)  # at most one extra voxel per axis
    assert canon.GetPixelID() == sitk.sitkFloat32
    oblique = make_image(np.zeros((6, 6, 6), np.int16), (3, 3, 3), rotation((0, 0, 1), 45.0))
    oblique_canon = to_canonical(oblique, 1.5)  # keep a reference: array views do not
    corner = sitk.GetArrayViewFromImage(oblique_canon)[0, 0, 0]
    assert corner == CT_PAD_HU  # outside the rotated image


def test_already_canonical_image_is_unchanged():
    arr = np.random.default_rng(0).integers(-1000, 1000, (5, 6, 7)).astype(np.int16)
    img = make_image(arr, (1.5, 1.5, 1.5), "LPS", origin=(1.0, 2.0, 3.0))
    canon = to_canonical(img, 1.5)
    assert canon.GetSize() == img.GetSize() and canon.GetOrigin() == img.GetOrigin()
    np.testing.assert_allclose(sitk.GetArrayViewFromImage(canon), arr, atol=1e-3)
