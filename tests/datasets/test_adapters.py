"""Dataset adapters on tiny synthetic fixtures: every layout lists, caches and loads."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from dataset_helpers import write_manifest, write_nnunet, write_pairs, write_totalseg

from ctsam3d.data import load_cache, open_dataset, preprocess
from ctsam3d.errors import InputError

# (layout writer, format detected by "auto", expected case ids, expected names of label 1/2)
CASES = [
    (lambda d: write_pairs(d / "pairs", 2), "pairs", ["pt_1", "pt_2"], ("brainstem", "spinal_cord")),
    (lambda d: write_totalseg(d / "ts"), "totalseg", ["s0001", "s0002"], ("liver", "spleen")),
    (lambda d: write_nnunet(d / "nn"), "nnunet", ["case_001", "case_002"], ("liver", "spleen")),
    (lambda d: write_manifest(d / "mc", "csv"), "manifest", ["m0", "m1"], ("brainstem", "spinal_cord")),
    (lambda d: write_manifest(d / "mj", "json"), "manifest", ["m0", "m1"], ("liver", "spleen")),
]


@pytest.mark.parametrize("writer,fmt,ids,names", CASES, ids=["pairs", "totalseg", "nnunet", "manifest-csv", "manifest-json"])
def test_adapter_lists_and_caches(tmp_path, writer, fmt, ids, names):
    root = writer(tmp_path)
    cases = open_dataset(root)  # auto-detect
    assert [c.case_id for c in cases] == ids
    assert open_dataset(root, fmt) == cases
    failed = preprocess(cases, tmp_path / "cache", progress=False)
    assert failed == {}
    loaded = load_cache(tmp_path / "cache")
    assert [c.case_id for c in loaded] == ids
    for c in loaded:
        assert set(c.structures) == set(names)
        assert set(c.known) == set(names)
        assert c.ct.dtype == np.int16 and c.label.dtype == np.uint8


def test_totalseg_split_from_meta_csv(tmp_path):
    root = write_totalseg(tmp_path / "ts")
    assert [c.case_id for c in open_dataset(root, split="train")] == ["s0001"]
    assert [c.case_id for c in open_dataset(root, split="val")] == ["s0002"]


def test_cache_keeps_world_positions(tmp_path):
    """Reorientation to identity direction is lossless and keeps every voxel's LPS position."""
    root = write_pairs(tmp_path / "pairs", 1)
    preprocess(open_dataset(root), tmp_path / "cache", progress=False)
    case = load_cache(tmp_path / "cache")[0]
    ct = sitk.ReadImage(str(root / "pt_1_ct.nii.gz"))
    lab = sitk.ReadImage(str(root / "pt_1_oars.nii.gz"))
    arr, larr = sitk.GetArrayFromImage(ct), sitk.GetArrayFromImage(lab)
    rng = np.random.default_rng(0)
    body = np.argwhere(arr != -1024)
    for z, y, x in body[rng.choice(len(body), 50, replace=False)]:
        lps = np.array(ct.TransformIndexToPhysicalPoint((int(x), int(y), int(z))))
        idx_xyz = (lps - np.array(case.origin_lps)) / np.array(case.spacing_zyx[::-1])
        i, j, k = np.rint(idx_xyz).astype(int)
        assert np.allclose(idx_xyz, [i, j, k], atol=1e-3)
        assert case.ct[k, j, i] == arr[z, y, x]
        assert case.label[k, j, i] == larr[z, y, x]
    # sorted spacing of a lossless reorientation is a permutation of the original
    assert sorted(case.spacing_zyx) == pytest.approx(sorted(ct.GetSpacing()))


def test_absent_structure_is_unknown(tmp_path):
    root = tmp_path / "pairs"
    write_pairs(root, 1)
    write_pairs(tmp_path / "tmp2", 1, labels=(1,))
    (tmp_path / "tmp2" / "pt_1_ct.nii.gz").rename(root / "pt_2_ct.nii.gz")
    (tmp_path / "tmp2" / "pt_1_oars.nii.gz").rename(root / "pt_2_oars.nii.gz")
    preprocess(open_dataset(root), tmp_path / "cache", progress=False)
    cases = {c.case_id: c for c in load_cache(tmp_path / "cache")}
    assert cases["pt_1"].known == ["brainstem", "spinal_cord"]
    assert cases["pt_2"].known == ["brainstem"]  # spinal_cord unknown there, not background


def test_corrupt_and_missing_cases_are_skipped_with_a_message(tmp_path, caplog):
    root = write_pairs(tmp_path / "pairs", 4)
    (root / "pt_2_ct.nii.gz").write_bytes(b"this is not a nifti file")
    (root / "pt_3_oars.nii.gz").unlink()
    failed = preprocess(open_dataset(root), tmp_path / "cache", workers=1, progress=False)
    assert set(failed) == {"pt_2", "pt_3"}
    assert "pt_2_ct.nii.gz" in failed["pt_2"]
    assert "pt_3_oars.nii.gz" in failed["pt_3"] and "missing" in failed["pt_3"]
    assert [c.case_id for c in load_cache(tmp_path / "cache")] == ["pt_1", "pt_4"]
    assert "skipped case pt_2" in caplog.text


def test_preprocess_resumes(tmp_path, monkeypatch):
    root = write_pairs(tmp_path / "pairs", 2)
    cases = open_dataset(root)
    preprocess(cases[:1], tmp_path / "cache", progress=False)
    done = []
    import ctsam3d.data.cache as cache_mod

    real = cache_mod.preprocess_case
    monkeypatch.setattr(cache_mod, "preprocess_case", lambda spec, *a, **k: done.append(spec.case_id) or real(spec, *a, **k))
    preprocess(cases, tmp_path / "cache", progress=False)
    assert done == ["pt_2"]


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda d: d / "nope", "does not exist"),
        (lambda d: (d / "empty").mkdir() or d / "empty", "no '<case>_ct.nii.gz'"),
    ],
)
def test_bad_dataset_paths(tmp_path, make, message):
    with pytest.raises(InputError, match=message):
        open_dataset(make(tmp_path))
