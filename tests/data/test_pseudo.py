"""Pseudo-structures: connected, within size bounds, named pseudo_###."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ctsam3d.data.pseudo import pseudo_structures


def tiny_ct(seed: int = 0) -> np.ndarray:
    """[z, y, x] 32 x 64 x 64 HU: air, a soft-tissue ellipsoid body with fat, a bone rod, a gas pocket."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.mgrid[:32, :64, :64]
    ct = np.full((32, 64, 64), -1024.0)
    body = ((yy - 32) / 26.0) ** 2 + ((xx - 32) / 28.0) ** 2 <= 1
    ct[body] = 40
    ct[body & (((yy - 32) / 26.0) ** 2 + ((xx - 32) / 28.0) ** 2 > 0.7)] = -100  # subcutaneous fat
    ct[((yy - 44) ** 2 + (xx - 32) ** 2) <= 25] = 700  # bone rod along z
    ct[((zz - 16) ** 2 + (yy - 24) ** 2 + (xx - 24) ** 2) <= 25] = -900  # gas
    ct[body] += rng.normal(0, 8, int(body.sum()))
    return ct.astype(np.int16)


def test_pseudo_structures_connected_and_bounded():
    ct = tiny_ct()
    lab, names = pseudo_structures(ct, (2.0, 2.0, 2.0), np.random.default_rng(0), min_voxels=50, max_fraction=0.2, supervoxel_voxels=1500)
    assert lab.dtype == np.uint8 and lab.shape == ct.shape
    assert len(names) >= 5
    body = int((ct > -500).sum())
    for i, name in names.items():
        assert name == f"pseudo_{i:03d}"
        m = lab == i
        assert 50 <= m.sum() <= 0.2 * body + 1
        assert ndi.label(m)[1] == 1, name
    assert not lab[ct == -1024].any()  # nothing outside the body


def test_pseudo_structures_respect_n_max_and_seed():
    ct = tiny_ct()
    a, na = pseudo_structures(ct, (2.0, 2.0, 2.0), np.random.default_rng(3), n_max=4, min_voxels=50, supervoxel_voxels=1500)
    b, nb = pseudo_structures(ct, (2.0, 2.0, 2.0), np.random.default_rng(3), n_max=4, min_voxels=50, supervoxel_voxels=1500)
    assert len(na) == 4 and np.array_equal(a, b) and na == nb


def test_all_air_gives_nothing():
    lab, names = pseudo_structures(np.full((8, 16, 16), -1024, np.int16), (1.0, 1.0, 1.0), np.random.default_rng(0))
    assert names == {} and not lab.any()
