"""Contrast-phase augmentation (data/contrast.py): which structures enhance, by how much, and
that it leaves the random stream alone when off."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from dataset_helpers import write_totalseg

from ctsam3d.data import AugmentConfig, PatchSampler, load_cache, open_dataset, preprocess
from ctsam3d.data.contrast import ENHANCEMENT, apply_contrast, group_of


@pytest.mark.parametrize(
    "name, group",
    [("aorta", "artery"), ("iliac_artery_left", "artery"), ("pulmonary_artery", "artery"),
     ("heart", "heart"), ("inferior_vena_cava", "vein"), ("portal_vein_and_splenic_vein", "portal_vein"),
     ("kidney_right", "kidney"), ("liver", "liver"), ("spleen", "spleen"), ("colon", "bowel"),
     ("autochthon_left", "muscle"), ("adrenal_gland_left", "adrenal"),
     ("vertebrae_L1", None), ("rib_left_7", None), ("brainstem", None), ("parotid_left", None),
     ("lung_upper_lobe_left", None), ("urinary_bladder", None), ("", None)],
)
def test_groups(name, group):
    assert group_of(name) == group


def _volume():
    lab = torch.zeros((1, 1, 20, 20, 20), dtype=torch.int64)
    lab[..., 2:9, 2:9, 2:9] = 1    # liver
    lab[..., 11:18, 2:9, 2:9] = 2  # kidney_left
    lab[..., 11:18, 11:18, 2:9] = 3  # kidney_right
    lab[..., 2:9, 11:18, 11:18] = 4  # a vertebra: never enhanced
    names = {1: "liver", 2: "kidney_left", 3: "kidney_right", 4: "vertebrae_L1"}
    return torch.full(lab.shape, 40.0), lab, names


def test_off_returns_the_patch_and_draws_nothing():
    hu, lab, names = _volume()
    rng = np.random.default_rng(3)
    state = rng.bit_generator.state
    assert apply_contrast(hu, lab, names, 0.0, rng) is hu
    assert rng.bit_generator.state == state


def test_on_adds_a_phase_offset_inside_enhancing_structures_only():
    hu, lab, names = _volume()
    phases = set()
    for seed in range(20):
        out = apply_contrast(hu, lab, names, 1.0, np.random.default_rng(seed)) - hu
        liver, kl, kr = out[0, 0, 5, 5, 5].item(), out[0, 0, 14, 5, 5].item(), out[0, 0, 14, 14, 5].item()
        assert kl == pytest.approx(kr)  # one offset per group: both kidneys alike
        lo = min(r[0] for r in ENHANCEMENT["liver"])
        hi = max(r[1] for r in ENHANCEMENT["liver"])
        assert lo - 1e-4 <= liver <= hi + 1e-4
        assert out[0, 0, 5, 14, 14].item() == 0.0  # vertebra
        assert out[0, 0, 19, 19, 19].item() == 0.0  # unlabelled
        phases.add("portal" if liver >= ENHANCEMENT["liver"][1][0] else "arterial")
        # the step at a structure's edge is softened (3-voxel box): half-way at the boundary
        edge = out[0, 0, 5, 5, 9].item()
        assert 0.0 < edge < liver
    assert phases == {"arterial", "portal"}


@pytest.fixture(scope="module")
def totalseg_cases(tmp_path_factory):
    d = tmp_path_factory.mktemp("contrast")
    write_totalseg(d / "ts")
    preprocess(open_dataset(d / "ts"), d / "cache", progress=False)
    return load_cache(d / "cache")


def test_sampler_applies_it_to_real_patches_and_is_unchanged_when_off(totalseg_cases):
    def sampler(p=None):
        aug = AugmentConfig(p_spatial=0.0, p_intensity=0.0) if p is None else \
            AugmentConfig(p_spatial=0.0, p_intensity=0.0, p_contrast=p)
        return PatchSampler(totalseg_cases, (16, 16, 16), 3.0, augment=aug)

    off, default, on = sampler(0.0), sampler(), sampler(1.0)
    brighter = 0
    for seed in range(6):  # one patch per draw: the contrast's draws come after its placement
        plain = off.sample(np.random.default_rng(seed), 1)
        torch.testing.assert_close(plain["image"], default.sample(np.random.default_rng(seed), 1)["image"])
        enhanced = on.sample(np.random.default_rng(seed), 1)
        assert plain["structures"] == enhanced["structures"]
        torch.testing.assert_close(plain["target"], enhanced["target"])
        inside = plain["target"] > 0
        a, b = plain["image"][:, :1][inside], enhanced["image"][:, :1][inside]
        assert (b >= a).all()  # liver and spleen enhance in both phases
        brighter += int((b > a).float().mean() > 0.5)
    assert brighter >= 4  # (voxels already at the window's top cannot get brighter)


# ---- bolus gradient -----------------------------------------------------------------------------

def test_bolus_ramp_spans_one_plus_minus_amplitude_along_a_line():
    from ctsam3d.data.contrast import bolus_ramp

    for seed in range(5):
        r = bolus_ramp((9, 7, 5), 0.6, np.random.default_rng(seed))[0, 0]
        assert r.shape == (9, 7, 5)
        assert r.min().item() == pytest.approx(0.4, abs=1e-5) and r.max().item() == pytest.approx(1.6, abs=1e-5)
        # linear: constant steps along every axis
        for axis in range(3):
            d = torch.diff(r, dim=axis)
            assert torch.allclose(d, d.flatten()[0].expand_as(d), atol=1e-5)
    assert torch.equal(bolus_ramp((4, 4, 4), 0.0, np.random.default_rng(0)), torch.ones(1, 1, 4, 4, 4))


def test_gradient_makes_one_structure_drift_and_zero_changes_nothing():
    hu = torch.full((1, 1, 24, 8, 8), 40.0)
    lab = torch.zeros(hu.shape, dtype=torch.int64)
    lab[..., :, 2:6, 2:6] = 1  # a vessel along the first axis
    names = {1: "aorta"}
    flat = apply_contrast(hu, lab, names, 1.0, np.random.default_rng(7)) - hu
    same = apply_contrast(hu, lab, names, 1.0, np.random.default_rng(7), gradient=0.0) - hu
    torch.testing.assert_close(flat, same)  # gradient 0 draws nothing more
    along = flat[0, 0, 2:-2, 4, 4]
    assert (along.max() - along.min()).item() < 1e-3  # one offset all along
    spreads = []
    for seed in range(12):
        out = apply_contrast(hu, lab, names, 1.0, np.random.default_rng(seed), gradient=0.6) - hu
        a = out[0, 0, 2:-2, 4, 4]
        assert (a > 0).all()  # a ≤ 0.6 keeps every offset positive
        spreads.append(((a.max() - a.min()) / a.mean()).item())
        assert out[0, 0, :, 0, 0].abs().max().item() == 0.0  # unlabelled stays
    assert max(spreads) > 0.3  # a real drift along the vessel for some draws
    assert max(spreads) < 2 * 0.6 / 0.4 + 1e-3  # never more than (1 + g) / (1 - g) - 1


def test_augment_config_refuses_a_gradient_outside_0_1():
    with pytest.raises(ValueError, match="contrast_gradient"):
        AugmentConfig(contrast_gradient=1.5)


def test_sampler_passes_the_gradient_on(totalseg_cases):
    def sampler(g):
        aug = AugmentConfig(p_spatial=0.0, p_intensity=0.0, p_contrast=1.0, contrast_gradient=g)
        return PatchSampler(totalseg_cases, (16, 16, 16), 3.0, augment=aug)

    flat, ramped = sampler(0.0), sampler(0.6)
    differ = 0
    for seed in range(6):
        a = flat.sample(np.random.default_rng(seed), 1)
        b = ramped.sample(np.random.default_rng(seed), 1)
        torch.testing.assert_close(a["target"], b["target"])  # same placement: the ramp draws come last
        differ += int(not torch.allclose(a["image"], b["image"]))
    assert differ >= 4
