"""Synthetic CT from label maps (tiny in-memory label maps; one test on ../shared)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from ctsam3d.data.hu_stats import load_hu_stats
from ctsam3d.data.synthetic import deform_labels, labelmap_names, synthesize_ct, synthesize_variant

NAMES = {1: "liver", 2: "aorta", 3: "kidney_left"}
SPACING = (3.0, 2.0, 2.0)


def tiny_labelmap() -> np.ndarray:
    """[z, y, x] 24 x 164 x 172 (2 mm in-plane): a liver block, an aorta tube, a kidney ball (canonical axes)."""
    lab = np.zeros((24, 64, 72), np.uint8)
    lab[4:20, 14:34, 8:34] = 1
    zz, yy, xx = np.mgrid[:24, :64, :72]
    lab[((yy - 34) ** 2 + (xx - 40) ** 2 <= 16)] = 2
    lab[((zz - 12) * 1.5) ** 2 + ((yy - 38) ** 2 + (xx - 56) ** 2) <= 49] = 3
    return np.pad(lab, ((0, 0), (40, 60), (50, 50)))  # room for the body, spine and air


def test_synthetic_volume_properties():
    lab = tiny_labelmap()
    ct, info = synthesize_ct(lab, NAMES, SPACING, np.random.default_rng(0), phase="arterial")
    assert ct.dtype == np.int16 and ct.shape == lab.shape
    assert info["phase"] == "arterial" and 200 <= info["means"]["aorta"] <= 380
    for i, name in NAMES.items():
        core = ndi.binary_erosion(lab == i, iterations=2)
        assert abs(float(ct[core].mean()) - info["means"][name]) < 12, name
    liver = ndi.binary_erosion(lab == 1, iterations=2)
    assert ct[liver].std() > 3  # noise and texture present
    # air outside the body (exactly -1024), e.g. the anterior-right corner of every slice
    assert (ct[:, 0, 0] == -1024).all() and (ct == -1024).mean() > 0.05
    assert (ct[lab > 0] > -1024).all()


def test_phase_non_contrast_uses_measured_stats():
    stats = load_hu_stats()
    ct, info = synthesize_ct(tiny_labelmap(), NAMES, SPACING, np.random.default_rng(1), phase="non_contrast")
    aorta = stats["structures"]["aorta"]
    assert abs(info["means"]["aorta"] - aorta["p50"]) <= 15.01


def test_variants_differ_in_shape_and_intensity():
    lab = tiny_labelmap()
    ct1, l1, _ = synthesize_variant(lab, NAMES, SPACING, np.random.default_rng(1))
    ct2, l2, _ = synthesize_variant(lab, NAMES, SPACING, np.random.default_rng(2))
    assert l1.shape == l2.shape == lab.shape and l1.dtype == np.uint8
    assert (l1 != l2).mean() > 0.005
    assert np.abs(ct1.astype(int) - ct2.astype(int)).mean() > 5
    again, l1b, _ = synthesize_variant(lab, NAMES, SPACING, np.random.default_rng(1))
    assert np.array_equal(ct1, again) and np.array_equal(l1, l1b)


def test_deform_keeps_grid_and_labels():
    lab = tiny_labelmap()
    out = deform_labels(lab, SPACING, np.random.default_rng(3))
    assert out.shape == lab.shape and out.dtype == lab.dtype
    assert set(np.unique(out)) == set(np.unique(lab))


def test_known_labelmap_names():
    assert labelmap_names("x/torso_labels.nii.gz")[8] == "aorta"
    assert labelmap_names("flare22_tr_0001_labels.nii.gz")[5] == "aorta"
    assert labelmap_names("other.nii.gz") is None


#: a real label map beside the project (../shared/data); the test skips without it
FLARE22 = Path(__file__).resolve().parents[3] / "shared" / "data" / "labelmaps" / "flare22_tr_0001_labels.nii.gz"


@pytest.mark.skipif(not FLARE22.is_file(), reason=f"needs {FLARE22} (../shared is not present on this machine)")
def test_synthesize_real_labelmap():
    from ctsam3d.data.synth_cache import load_labelmap

    lab, names, sp, _ = load_labelmap(FLARE22, min_spacing=4.0)
    ct, lab2, info = synthesize_variant(lab, names, sp, np.random.default_rng(0))
    assert ct.shape == lab.shape and tuple(sp) == (4.0, 4.0, 4.0)
    aorta = ndi.binary_erosion(lab2 == 5)
    assert abs(float(ct[aorta].mean()) - info["means"]["aorta"]) < 25
