"""assemble(): slab-wise paste of lattice probabilities equals one paste_patch over the box."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from inference_fakes import make_volume

from ctsam3d.geometry import PatchGrid, paste_patch
from ctsam3d.inference.assemble import assemble


@pytest.mark.parametrize("direction", ["RAS", "PLI", "oblique"])
def test_slabs_equal_a_single_paste(direction):
    ct, _ = make_volume(direction, size=(30, 26, 22))
    rng = np.random.default_rng(1)
    grid = PatchGrid((-12.0, -9.0, -14.0), 1.5, (16, 14, 18))
    probs = rng.random(grid.size).astype(np.float32)
    region, vals = paste_patch(probs, grid, ct)
    expected = np.zeros(sitk.GetArrayViewFromImage(ct).shape, np.uint8)
    expected[region] = vals > 0.5
    for slab in (10_000_000, 700, 1):
        got = sitk.GetArrayFromImage(assemble(ct, [(1, probs, grid)], slab_voxels=slab))
        np.testing.assert_array_equal(got, expected)


def test_overlapping_objects_take_the_most_probable_and_large_ids():
    ct, _ = make_volume("LPS", size=(12, 12, 12), spacing=(1.5, 1.5, 1.5))
    origin = ct.GetOrigin()
    grid = PatchGrid(origin, 1.5, (12, 12, 12))
    a = np.zeros(grid.size, np.float32)
    b = np.zeros(grid.size, np.float32)
    a[:, :, :8] = 0.9
    b[:, :, 4:] = 0.7
    b[:, :, 10:] = 0.95
    lm = sitk.GetArrayFromImage(assemble(ct, [(3, a, grid), (300, b, grid)]))
    assert lm.dtype == np.uint16
    assert np.all(lm[:, :, :8] == 3) and np.all(lm[:, :, 8:10] == 300) and np.all(lm[:, :, 10:] == 300)
    empty = assemble(ct, [])
    assert empty.GetSize() == ct.GetSize() and not sitk.GetArrayViewFromImage(empty).any()
