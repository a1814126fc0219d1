"""The released pipeline's grid, int16 crops, normalisation and click rounding.

Golden checks (exact) against ``../shared/docs/reference-golden/pipeline`` on OpenKBP pt_201
(skipped when ``../shared`` is absent); the rules themselves on small synthetic images.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from ctsam3d.geometry.reference_grid import (
    ReferenceGrid,
    normalize_reference,
    pixel_dtype,
    reference_click_voxel,
    reference_crop,
    reference_patch_grid,
    resample_reference,
    sample_reference_block,
)

SHARED = Path(__file__).resolve().parents[3] / "shared"
PIPELINE = SHARED / "docs" / "reference-golden" / "pipeline"
PT201 = SHARED / "data" / "openkbp" / "validation"


def _image(size=(11, 9, 7), spacing=(2.3, 1.7, 3.1), direction=(0, 1, 0, 1, 0, 0, 0, 0, -1), origin=(4.2, -7.7, 12.5),
           dtype=np.int16, seed=0):
    arr = np.random.default_rng(seed).integers(-1024, 1500, size[::-1]).astype(dtype)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(spacing)
    img.SetDirection(direction)
    img.SetOrigin(origin)
    return img


# ----------------------------------------------------------------------------- rules
def test_grid_rule_corners_at_0_and_n_float32_origin_rounded_size():
    img = _image()
    g = ReferenceGrid.of(img, 1.5)
    n = np.array(img.GetSize(), float)
    corners = np.array([img.TransformContinuousIndexToPhysicalPoint(list(np.array([a, b, c]) * n))
                        for a in (0, 1) for b in (0, 1) for c in (0, 1)]).astype(np.float32)
    assert g.origin_lps == tuple(float(v) for v in corners.min(0))
    assert g.size_ijk == tuple(int(v) for v in np.round((corners.max(0) - corners.min(0)) / 1.5))
    # no half-voxel shift: the origin is a corner at index 0 or N, not a cell boundary at -0.5
    assert g.origin_lps[2] == pytest.approx(12.5 - 7 * 3.1, abs=1e-4)  # k flipped: index N


def test_round_half_to_even_size():
    img = _image(size=(5, 5, 5), spacing=(0.9, 0.9, 0.9), direction=(1, 0, 0, 0, 1, 0, 0, 0, 1))  # 4.5 mm
    assert ReferenceGrid.of(img, 1.0).size_ijk == (4, 4, 4)  # 4.5 -> 4 (numpy round), not 5


@pytest.mark.parametrize("dtype, is_label", [(np.int16, False), (np.float32, False), (np.uint8, True)])
def test_blocks_equal_the_whole_resampled_volume(dtype, is_label):
    img = _image(size=(23, 19, 13), dtype=dtype)
    g = ReferenceGrid.of(img, 1.5)
    whole = sitk.GetArrayFromImage(resample_reference(img, g, is_label=is_label))
    assert whole.dtype == np.dtype(dtype)  # pixel type kept
    pad = 0 if is_label else -1024
    rng = np.random.default_rng(1)
    for _ in range(12):
        start = rng.integers(-10, np.array(whole.shape) + 2)
        size = rng.integers(1, 30, 3)
        block = sample_reference_block(img, g, start, size, is_label=is_label)
        expect = np.full(tuple(size), pad, dtype=whole.dtype)
        lo, hi = np.maximum(start, 0), np.minimum(start + size, whole.shape)
        if np.all(hi > lo):
            expect[tuple(slice(a - s, b - s) for a, b, s in zip(lo, hi, start))] = whole[
                tuple(slice(a, b) for a, b in zip(lo, hi))]
        np.testing.assert_array_equal(block, expect)


def test_linear_values_truncate_toward_zero():
    arr = np.array([[[0, 3]], [[-3, -4]]], dtype=np.int16)  # (z, y, x) = (2, 1, 2)
    img = sitk.GetImageFromArray(arr)
    g = ReferenceGrid(img.GetOrigin(), 1.0, img.GetSize())
    patch = reference_patch_grid((1.5, 1.0, 1.0), 1.0, (2, 2, 2))  # voxel [0, 0, 0] at x = 0.5, y = z = 0
    crop = reference_crop(img, g, patch)
    assert crop.dtype == np.int16
    assert int(crop[0, 0, 0]) == 1  # 1.5 -> 1
    assert int(crop[1, 0, 0]) == -3  # -3.5 -> -3 (toward zero, not floor or round)
    assert int(crop[0, 1, 0]) == -1024  # y = 1 is outside [-0.5, 0.5): padding


def test_patch_origin_rule_centre_on_voxel_32():
    p = reference_patch_grid((10.3, -4.1, 7.7), 1.5, 64)
    expect = (np.array([10.3, -4.1, 7.7]).astype(np.float32) - np.float32(48)).astype(np.float32)
    assert p.origin_lps == tuple(float(v) for v in expect)
    assert np.allclose(p.index_to_world((32, 32, 32)), (10.3, -4.1, 7.7), atol=1e-5)


def test_normalisation_is_k_over_350():
    k = np.arange(-2000, 3000, dtype=np.int16)
    out = normalize_reference(k, (-125, 225))
    assert out.dtype == np.float32
    expect = (np.clip(k.astype(np.float64), -125, 225) + 125) * (1 / 350)
    np.testing.assert_array_equal(out, expect.astype(np.float32))


def test_click_voxel_rounds_half_to_even():
    p = reference_patch_grid((0.0, 0.0, 0.0), 1.0, 64)  # origin -32
    _, zyx = reference_click_voxel((0.5, 1.5, -0.4999), p)  # x 32.5 -> 32, y 33.5 -> 34, z 31.5001 -> 32
    assert zyx == (32, 34, 32)


# ----------------------------------------------------------------------------- golden
@pytest.fixture(scope="module")
def pt201():
    if not PIPELINE.is_dir() or not (PT201 / "pt_201_ct.nii.gz").is_file():
        pytest.skip(f"needs {PIPELINE} and {PT201} (../shared not present on this machine)")
    ct = sitk.ReadImage(str(PT201 / "pt_201_ct.nii.gz"))
    return ct, ReferenceGrid.of(ct, 1.5)


def _json(name):
    return json.loads((PIPELINE / name).read_text())


def test_golden_resampled_volume(pt201):
    ct, g = pt201
    ref = _json("resampled.json")
    assert g.origin_lps == tuple(ref["origin"]) and g.size_ijk == tuple(ref["size"]) and g.spacing == 1.5
    arr = sitk.GetArrayFromImage(resample_reference(ct, g))
    assert arr.dtype == np.int16
    assert hashlib.sha256(arr.astype("<i2").tobytes()).hexdigest() == ref["sha256_int16_le_zyx_c_order"]
    assert int(arr.sum(dtype=np.int64)) == ref["sum_hu"] and int((arr == -1024).sum()) == ref["count_equal_minus1024"]
    for s in ref["samples"]:
        i, j, k = s["index_xyz"]
        assert int(arr[k, j, i]) == s["hu"]
        assert int(sample_reference_block(ct, g, (k, j, i), (1, 1, 1))[0, 0, 0]) == s["hu"]
    # the two lowest z planes are padding whatever the input holds (flipped axis)
    assert ref["filled_index_range_xyz"]["z"][0] == 2 and np.all(arr[:2] == -1024)


def test_golden_patch_exact(pt201):
    ct, g = pt201
    pc = _json("patch_centre.json")
    patch = reference_patch_grid(pc["centre_world_lps_mm"], 1.5, 64)
    assert patch.origin_lps == tuple(pc["patch_origin_lps_mm"])
    hu = reference_crop(ct, g, patch)
    assert hu.dtype == np.int16
    np.testing.assert_array_equal(hu, np.load(PIPELINE / "patch_hu.npy"))
    image = normalize_reference(hu, (-125, 225))
    np.testing.assert_array_equal(image, np.load(PIPELINE / "patch_image.npy"))  # bit for bit
    labels = reference_crop(sitk.ReadImage(str(PT201 / "pt_201_oars.nii.gz")), g, patch, is_label=True)
    np.testing.assert_array_equal(labels, np.load(PIPELINE / "patch_oars.npy"))
    # the viewer's patch: centre snapped to a resampled voxel -> an exact block copy
    snap = pc["if_centre_snapped_to_resampled_voxel"]
    vpatch = reference_patch_grid(snap["world_lps_mm"], 1.5, 64)
    assert vpatch.origin_lps == tuple(snap["patch_origin_lps_mm"])
    start = tuple(snap["block_start_index_xyz"][::-1])
    np.testing.assert_array_equal(reference_crop(ct, g, vpatch), sample_reference_block(ct, g, start, (64, 64, 64)))


def test_golden_click_voxels(pt201):
    pc = _json("patch_centre.json")
    patch = reference_patch_grid(pc["centre_world_lps_mm"], 1.5, 64)
    for c in _json("clicks.json")["sequence"]:
        xyz, zyx = reference_click_voxel(c["world_lps_mm"], patch)
        assert zyx[::-1] == tuple(c["patch_voxel_xyz"])
        assert np.allclose(xyz, c["patch_voxel_continuous_xyz"], atol=1e-4)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16, np.int32, np.uint32, np.int64, np.float32, np.float64])
def test_pixel_dtype_from_the_pixel_id_matches_the_array(dtype):
    """The dtype of an image is read from its pixel ID, never from a view of its buffer (a view
    taken while another thread filters a shared image crashes SimpleITK)."""
    img = sitk.GetImageFromArray(np.zeros((2, 3, 4), dtype))
    assert pixel_dtype(img) == sitk.GetArrayFromImage(img).dtype == np.dtype(dtype)
    vec = sitk.GetImageFromArray(np.zeros((2, 3, 4, 2), dtype), isVector=True)
    assert pixel_dtype(vec) == np.dtype(dtype)
    # a block wholly outside the grid is padding of the input's pixel type
    grid = ReferenceGrid.of(img, 1.0)
    assert sample_reference_block(img, grid, (-9, -9, -9), (2, 2, 2)).dtype == np.dtype(dtype)
