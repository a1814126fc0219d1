"""Patch sampler: exact geometry, structure inside the patch, CPP pairs, augmentation ranges."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from dataset_helpers import IDENTITY, make_case, write_pairs

from ctsam3d.data import AugmentConfig, PatchSampler, SamplerConfig, load_cache, open_dataset, preprocess
from ctsam3d.data.augment import draw_spatial
from ctsam3d.geometry import PatchGrid, crop_patch


@pytest.fixture(scope="module")
def pli_cache(tmp_path_factory):
    d = tmp_path_factory.mktemp("pli")
    write_pairs(d / "pairs", 3)
    preprocess(open_dataset(d / "pairs"), d / "cache", progress=False)
    return d


def test_aligned_patch_is_an_exact_crop(tmp_path):
    write_pairs(tmp_path / "pairs", 1, spacing_xyz=(2.0, 2.0, 2.0), direction=IDENTITY)
    preprocess(open_dataset(tmp_path / "pairs"), tmp_path / "cache", progress=False)
    case = load_cache(tmp_path / "cache")[0]
    s = PatchSampler([case], (6, 8, 10), 2.0, augment=None)
    start_zyx = np.array([2, 3, 1])
    # the centre of patch voxel (n-1)/2 sits between voxels for even sizes
    center_idx_xyz = start_zyx[::-1] + (np.array([10, 8, 6]) - 1) / 2
    center = np.array(case.origin_lps) + center_idx_xyz * 2.0
    ct = s.patch(0, center, "ct")[0, 0].numpy()
    lab = s.patch(0, center, "label")[0, 0].numpy()
    z, y, x = start_zyx
    np.testing.assert_allclose(ct, case.ct[z : z + 6, y : y + 8, x : x + 10], atol=1e-3)
    np.testing.assert_array_equal(lab, case.label[z : z + 6, y : y + 8, x : x + 10])


def _body_to_the_z_faces(tmp_path):
    """A case whose body reaches the scan's first and last slices (a scan cut through the body,
    as every CT is along z) and has air around it in y and x (cropped away by the cache)."""
    ct, lab = make_case(seed=0, spacing_xyz=(2.0, 2.0, 2.0), direction=IDENTITY)
    a, la = sitk.GetArrayFromImage(ct), sitk.GetArrayFromImage(lab)
    a[0], a[-1] = a[1], a[-2]  # the body runs out of the scan at both ends
    la[0] = la[1]
    la[:3, 6:9, 6:9] = 2  # a structure running out of the scan's first slice
    out = tmp_path / "pairs"
    out.mkdir()
    for arr, img, name in ((a, ct, "ct"), (la, lab, "oars")):
        im = sitk.GetImageFromArray(arr)
        im.CopyInformation(img)
        sitk.WriteImage(im, str(out / f"pt_1_{name}.nii.gz"))
    preprocess(open_dataset(out), tmp_path / "cache", progress=False)
    return load_cache(tmp_path / "cache")[0]


def test_cache_records_which_faces_are_the_scans(tmp_path):
    case = _body_to_the_z_faces(tmp_path)
    assert case.scan_faces == ((True, True), (False, False), (False, False))
    assert case.ct.shape == (20, 20, 24)  # y and x cropped to the body, z kept


@pytest.mark.parametrize("outside", ["air", "edge"])
def test_patch_beyond_a_scan_face_is_air_or_repeats_ct_and_labels(tmp_path, outside):
    """``SamplerConfig.ct_outside``: beyond the scan's first slice a patch holds -1024 HU and
    label 0, or (``"edge"``) that slice's CT *and* labels, as the session's crops repeat the image."""
    case = _body_to_the_z_faces(tmp_path)
    s = PatchSampler([case], (6, 8, 10), 2.0, augment=None, config=SamplerConfig(ct_outside=outside))
    start_zyx = np.array([-3, 3, 1])  # 3 slices below the scan's first
    center = np.array(case.origin_lps) + (start_zyx[::-1] + (np.array([10, 8, 6]) - 1) / 2) * 2.0
    ct = s.patch(0, center, "ct")[0, 0].numpy()
    lab = s.patch(0, center, "label")[0, 0].numpy()
    inside, inside_lab = case.ct[0:3, 3:11, 1:11], case.label[0:3, 3:11, 1:11]
    np.testing.assert_allclose(ct[3:], inside, atol=1e-3)
    np.testing.assert_array_equal(lab[3:], inside_lab)
    if outside == "edge":
        np.testing.assert_allclose(ct[:3], np.broadcast_to(inside[0], (3, 8, 10)), atol=1e-3)
        np.testing.assert_array_equal(lab[:3], np.broadcast_to(inside_lab[0], (3, 8, 10)))
        assert (lab[:3] == 2).any()  # the structure runs on beyond the scan
    else:
        np.testing.assert_allclose(ct[:3], np.full((3, 8, 10), -1024.0), atol=1e-3)
        assert lab[:3].max() == 0


@pytest.mark.parametrize("outside", ["air", "edge"])
def test_patch_beyond_the_air_crop_is_air_either_way(tmp_path, outside):
    """Beyond a face of the cache's crop to non-air voxels the scan held air: edge mode must
    not repeat the body's outermost voxels there (it did until 2026-12-05)."""
    case = _body_to_the_z_faces(tmp_path)
    s = PatchSampler([case], (6, 8, 10), 2.0, augment=None, config=SamplerConfig(ct_outside=outside))
    start_zyx = np.array([5, 4, -6])  # 6 voxels beyond the crop's first x column
    center = np.array(case.origin_lps) + (start_zyx[::-1] + (np.array([10, 8, 6]) - 1) / 2) * 2.0
    ct = s.patch(0, center, "ct")[0, 0].numpy()
    lab = s.patch(0, center, "label")[0, 0].numpy()
    np.testing.assert_allclose(ct[:, :, 6:], case.ct[5:11, 4:12, 0:4], atol=1e-3)
    assert (case.ct[5:11, 4:12, 0] > -1024).any()  # the crop's face is body...
    np.testing.assert_allclose(ct[:, :, :6], -1024.0, atol=1e-3)  # ...and beyond it, air
    assert lab[:, :, :6].max() == 0


def test_edge_mode_refuses_a_cache_without_scan_faces(tmp_path):
    from ctsam3d.errors import InputError

    case = _body_to_the_z_faces(tmp_path)
    case.scan_faces = None  # a cache written before the field existed
    with pytest.raises(InputError, match="rebuild"):
        PatchSampler([case], (6, 8, 10), 2.0, config=SamplerConfig(ct_outside="edge"))
    PatchSampler([case], (6, 8, 10), 2.0, config=SamplerConfig(ct_outside="air"))  # air needs nothing


def test_ct_outside_must_be_air_or_edge():
    with pytest.raises(ValueError, match="ct_outside"):
        SamplerConfig(ct_outside="mirror")


def test_patch_matches_simpleitk_resampling_of_the_original(pli_cache):
    """Cache (reoriented, cropped) + affine sampling == SimpleITK resampling of the PLI file."""
    case = load_cache(pli_cache / "cache", case_ids=["pt_1"])[0]
    s = PatchSampler([case], (12, 12, 12), 1.7, augment=None)
    img = sitk.ReadImage(str(pli_cache / "pairs" / "pt_1_ct.nii.gz"))
    lab = sitk.ReadImage(str(pli_cache / "pairs" / "pt_1_oars.nii.gz"))
    center = np.array(img.TransformContinuousIndexToPhysicalPoint((13.3, 11.1, 9.7)))
    grid = PatchGrid(tuple(center - 1.7 * 5.5), 1.7, (12, 12, 12))
    ref_ct = crop_patch(img, grid)
    ref_lab = crop_patch(lab, grid, is_label=True)
    ct = s.patch(0, center, "ct")[0, 0].numpy()
    lb = s.patch(0, center, "label")[0, 0].numpy()
    inner = (slice(2, -2),) * 3
    np.testing.assert_allclose(ct[inner], ref_ct[inner], atol=0.05)
    assert (lb == ref_lab).mean() > 0.99


def test_sampled_patches_contain_their_structure(pli_cache):
    cases = load_cache(pli_cache / "cache")
    s = PatchSampler(cases, (16, 16, 16), 4.0, augment=AugmentConfig(), config=SamplerConfig(cpp=True))
    b = s.sample(np.random.default_rng(3), 12)
    assert b["image"].shape == (12, 1, 16, 16, 16) and b["target"].shape == (12, 1, 16, 16, 16)
    assert float(b["image"].min()) >= 0.0 and float(b["image"].max()) <= 1.0
    assert (b["target"].flatten(1).sum(1) > 0).all()
    assert set(b["structures"]) <= {"brainstem", "spinal_cord"}
    # CPP: valid neighbours contain the structure and the heatmap peaks inside it
    ok = b["cpp_valid"]
    assert ok.any()
    for i in torch.nonzero(ok)[:, 0].tolist():
        tv, hm = b["target_v"][i, 0], b["heatmap_v"][i, 0]
        assert tv.sum() >= s.config.cpp_min_voxels
        peak = np.unravel_index(int(hm.argmax()), hm.shape)
        assert tv[peak] == 1 and float(hm.max()) == pytest.approx(1.0)
    for i in torch.nonzero(~ok)[:, 0].tolist():
        assert float(b["heatmap_v"][i].abs().max()) == 0.0


def test_same_rng_same_batch(pli_cache):
    cases = load_cache(pli_cache / "cache")
    s = PatchSampler(cases, (16, 16, 16), 4.0, augment=AugmentConfig())
    a, b = s.sample(np.random.default_rng(7), 3), s.sample(np.random.default_rng(7), 3)
    for k in ("image", "target", "heatmap_v"):
        assert torch.equal(a[k], b[k])


def test_balanced_draws_skip_unknown_structures(pli_cache):
    cases = load_cache(pli_cache / "cache")
    cases[1].known = ["brainstem"]  # spinal_cord unknown in case 1
    s = PatchSampler(cases, (16, 16, 16), 4.0)
    rng = np.random.default_rng(0)
    draws = [s.draw(rng) for _ in range(400)]
    assert (1, "spinal_cord") not in draws
    names = [n for _, n in draws]
    assert 0.4 < names.count("brainstem") / len(names) < 0.6


def _extent(case, name):
    b = case.structures[name].bbox_zyx
    return max((b[3 + a] - b[a]) * case.spacing_zyx[a] for a in range(3))


@pytest.mark.parametrize("sources", [False, True])
def test_p_large_draws_large_structures_and_zero_changes_nothing(pli_cache, sources):
    """``SamplerConfig.p_large``: that share of draws goes to structures at least ``large_mm``
    long (per source when there are several); 0 keeps the balanced stream draw for draw."""
    cases = load_cache(pli_cache / "cache")
    ext = {n: max(_extent(c, n) for c in cases if n in c.structures) for n in cases[0].structures}
    long_name = max(ext, key=ext.get)
    assert min(ext.values()) < ext[long_name]  # the fixture has a longer and a shorter structure
    cut = (min(ext.values()) + ext[long_name]) / 2
    kw = dict(groups=[0, 0, 1], group_weights=[1.0, 1.0]) if sources else {}
    plain = PatchSampler(cases, (16, 16, 16), 4.0, **kw)
    off = PatchSampler(cases, (16, 16, 16), 4.0, config=SamplerConfig(p_large=0.0, large_mm=cut), **kw)
    r1, r2 = np.random.default_rng(5), np.random.default_rng(5)
    assert [plain.draw(r1) for _ in range(200)] == [off.draw(r2) for _ in range(200)]
    on = PatchSampler(cases, (16, 16, 16), 4.0, config=SamplerConfig(p_large=1.0, large_mm=cut), **kw)
    rng = np.random.default_rng(0)
    draws = [on.draw(rng) for _ in range(200)]
    assert all(_extent(cases[i], n) >= cut for i, n in draws)
    half = PatchSampler(cases, (16, 16, 16), 4.0, config=SamplerConfig(p_large=0.5, large_mm=cut), **kw)
    names = [n for _, n in (half.draw(rng) for _ in range(1000))]
    assert 0.65 < sum(ext[n] >= cut for n in names) / len(names) < 0.85  # 0.5 + 0.5 * balanced share


def test_p_large_must_be_a_probability():
    with pytest.raises(ValueError, match="p_large"):
        SamplerConfig(p_large=1.5)


@pytest.mark.parametrize("seed", range(5))
def test_spatial_augmentation_ranges_and_no_flips(seed):
    cfg = AugmentConfig(p_spatial=1.0)
    a = draw_spatial(cfg, np.random.default_rng(seed))
    assert np.linalg.det(a.rotation) == pytest.approx(1.0)  # a rotation, never a mirror
    angle = np.degrees(np.arccos(np.clip((np.trace(a.rotation) - 1) / 2, -1, 1)))
    assert angle <= 10.0 + 1e-6
    assert 0.9 <= a.scale <= 1.1 and np.all(np.abs(a.translation) <= 20.0)
