"""PatchGrid, crop_patch, crop_array, paste_patch."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from ctsam3d.errors import GeometryError
from ctsam3d.geometry import PatchGrid, crop_array, crop_patch, paste_patch, to_canonical

from geometry_helpers import make_image, rotation


def test_around_centres_on_voxel_half_size_and_converts_both_ways():
    g = PatchGrid.around((10.0, -20.0, 30.0), 1.5, 64)
    assert g.size == (64, 64, 64)
    np.testing.assert_allclose(g.index_to_world((32, 32, 32)), (10.0, -20.0, 30.0))
    np.testing.assert_allclose(g.center_lps, (10.0, -20.0, 30.0))
    # (z, y, x) patch index: x moves along L (+x), z along S (+z)
    np.testing.assert_allclose(g.index_to_world((32, 32, 33)), (11.5, -20.0, 30.0))
    np.testing.assert_allclose(g.index_to_world((33, 32, 32)), (10.0, -20.0, 31.5))
    pts = np.random.default_rng(0).uniform(-50, 50, (10, 3))
    np.testing.assert_allclose(g.index_to_world(g.world_to_index(pts)), pts, atol=1e-9)
    odd = PatchGrid.around((0, 0, 0), 2.0, (5, 7, 9))
    np.testing.assert_allclose(odd.index_to_world((2, 3, 4)), (0, 0, 0))
    assert odd.contains_index((4, 6, 8)) and not odd.contains_index((5, 0, 0))


def test_snap_moves_less_than_half_voxel_onto_lattice():
    canon = make_image(np.zeros((20, 20, 20), np.int16), (1.5, 1.5, 1.5), "LPS", origin=(0.3, 0.1, -0.2))
    centre = (14.2, 13.9, 15.05)
    g = PatchGrid.around(centre, 1.5, 8, snap_to=canon)
    assert g.is_aligned_with(canon)
    assert np.all(np.abs(np.asarray(g.center_lps) - centre) <= 0.75 + 1e-9)
    assert not PatchGrid.around(centre, 1.5, 8).is_aligned_with(canon)
    with pytest.raises(GeometryError):
        PatchGrid.around(centre, 1.5, 8).start_in(canon)
    with pytest.raises(GeometryError):  # a non-canonical reference
        PatchGrid.around(centre, 1.5, 8, snap_to=make_image(np.zeros((3, 3, 3), np.int16), (1, 1, 1), "RAS"))


def test_from_index_and_start_in_agree():
    canon = make_image(np.zeros((20, 20, 20), np.int16), (1.5, 1.5, 1.5), "LPS", origin=(3.0, 4.0, 5.0))
    g = PatchGrid.from_index(canon, (-2, 5, 7), (4, 6, 8))
    assert g.start_in(canon) == (-2, 5, 7)
    np.testing.assert_allclose(g.origin_lps, (3.0 + 7 * 1.5, 4.0 + 5 * 1.5, 5.0 - 2 * 1.5))


VOL = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)


@pytest.mark.parametrize(
    "start, size",
    [((0, 0, 0), (4, 5, 6)), ((1, 2, 3), 2), ((-2, -1, 4), (3, 3, 4)), ((3, 4, 5), 3), ((10, 0, 0), 2), ((-5, -5, -5), 2)],
)
def test_crop_array_matches_padded_slicing(start, size):
    size3 = (size,) * 3 if np.isscalar(size) else size
    padded = np.pad(VOL, 10, constant_values=-1024)
    ref = padded[tuple(slice(s + 10, s + 10 + n) for s, n in zip(start, size3))]
    out = crop_array(VOL, start, size, -1024)
    assert out.shape == size3 and out.dtype == VOL.dtype
    np.testing.assert_array_equal(out, ref)


def test_crop_patch_aligned_and_resampled_paths_agree():
    z, y, x = np.meshgrid(np.arange(20), np.arange(22), np.arange(24), indexing="ij")
    ramp = (10.0 * x + 3.0 * y - 2.0 * z - 100.0).astype(np.float32)
    ct = make_image(ramp, (1.5, 1.5, 1.5), "LPS", origin=(1, 2, 3))
    g = PatchGrid.from_index(ct, (-3, 4, 10), (8, 9, 16))
    fast = crop_patch(ct, g)
    # the same grid shifted by a negligible amount is resampled with sitk (linear)
    g2 = PatchGrid(tuple(np.asarray(g.origin_lps) + 0.003), g.spacing, g.size)  # 0.002 voxel: off-lattice
    slow = crop_patch(ct, g2)
    assert fast.shape == (8, 9, 16) and fast.dtype == np.float32
    assert np.all(fast[:3] == -1024) and np.all(slow[:3] == -1024)
    assert not g2.is_aligned_with(ct)
    np.testing.assert_allclose(fast[3:], slow[3:], atol=0.1)
    lab = crop_patch(sitk.Cast(ct > 0, sitk.sitkUInt8), g, is_label=True)
    assert lab.dtype == np.uint8 and lab[:3].max() == 0


def test_crop_patch_edge_replicates_the_nearest_voxel_on_both_paths():
    """``edge=True``: outside the image a CT patch takes the nearest image voxel's value (a slab
    continues as its last slice), the same on the aligned and the resampled path; labels pad."""
    z, y, x = np.meshgrid(np.arange(6), np.arange(22), np.arange(24), indexing="ij")
    ramp = (10.0 * x + 3.0 * y - 2.0 * z - 100.0).astype(np.float32)
    ct = make_image(ramp, (1.5, 1.5, 1.5), "LPS", origin=(1, 2, 3))
    g = PatchGrid.from_index(ct, (-3, 4, 10), (12, 9, 16))  # z -3 .. 8 of a 6-slice image
    fast = crop_patch(ct, g, edge=True)
    g2 = PatchGrid(tuple(np.asarray(g.origin_lps) + 0.003), g.spacing, g.size)  # off-lattice: sitk
    slow = crop_patch(ct, g2, edge=True)
    assert fast.dtype == np.float32 and fast.shape == (12, 9, 16)
    for k in range(3):  # below the image: slice 0; above it: slice 5
        np.testing.assert_array_equal(fast[k], fast[3])
    for k in range(9, 12):
        np.testing.assert_array_equal(fast[k], fast[8])
    np.testing.assert_array_equal(fast[3:9, :, :14], crop_patch(ct, g)[3:9, :, :14])  # inside: unchanged
    np.testing.assert_array_equal(fast[:, :, 14], fast[:, :, 13])  # x 24, 25: beyond the image's last column
    np.testing.assert_allclose(fast, slow, atol=0.1)
    lab = crop_patch(sitk.Cast(ct > 0, sitk.sitkUInt8), g, is_label=True, edge=True)
    assert lab[:3].max() == 0 and lab[9:].max() == 0  # labels are never extrapolated


def test_crop_patch_from_oblique_original_matches_canonical():
    """Cropping the original (any direction) or its canonical version gives the same labels."""
    arr = np.zeros((12, 12, 12), np.uint8)
    arr[3:9, 4:10, 2:8] = 1
    orig = make_image(arr, (3.0, 3.0, 3.0), rotation((1, 1, 0), 30.0), origin=(5, 5, 5))
    canon = to_canonical(orig, 1.5, is_label=True)
    centre = orig.TransformContinuousIndexToPhysicalPoint([5.5, 6.5, 5.5])
    g = PatchGrid.around(centre, 1.5, 24, snap_to=canon)
    np.testing.assert_array_equal(crop_patch(orig, g, is_label=True), crop_patch(canon, g, is_label=True))


def test_paste_patch_linear_bool_and_outside():
    ref = make_image(np.zeros((10, 10, 10), np.uint8), (2.0, 2.0, 2.0), "RAS", origin=(0, 0, 0))
    g = PatchGrid.around(ref.TransformIndexToPhysicalPoint([5, 5, 5]), 1.0, 6)
    probs = np.full(g.size, 0.25, np.float32)
    region, vals = paste_patch(probs, g, ref)
    assert vals.dtype == np.float32 and vals.shape == tuple(s.stop - s.start for s in region)
    np.testing.assert_allclose(vals, 0.25)
    region_b, vals_b = paste_patch(np.ones(g.size, bool), g, ref, interpolation="nearest")
    assert vals_b.dtype == bool and vals_b.all() and region_b == region
    far = PatchGrid.around((1000.0, 1000.0, 1000.0), 1.0, 6)
    region_f, vals_f = paste_patch(probs, far, ref)
    assert vals_f.size == 0
    with pytest.raises(ValueError):
        paste_patch(np.zeros((2, 2, 2)), g, ref)
    with pytest.raises(ValueError):
        paste_patch(probs, g, ref, interpolation="cubic")


def test_paste_patch_memory_is_bounded_by_the_patch():
    """On a 512 x 512 x 1000 reference only the patch's bounding box is computed."""
    ref = sitk.Image([512, 512, 1000], sitk.sitkUInt8)
    ref.SetSpacing((0.7, 0.7, 0.5))
    ref.SetDirection((1, 0, 0, 0, 1, 0, 0, 0, 1))
    g = PatchGrid.around(ref.TransformIndexToPhysicalPoint([256, 256, 500]), 1.5, 64)
    region, vals = paste_patch(np.ones(g.size, np.float32), g, ref)
    assert vals.shape == tuple(s.stop - s.start for s in region)
    assert vals.shape == (192, 137, 137)  # 96 mm / 0.5 mm and 96 mm / 0.7 mm
    assert vals.nbytes < 20e6
