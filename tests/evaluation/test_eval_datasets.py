"""Evaluation cases from every supported layout, built in tmp folders."""

import json

import numpy as np
import pytest
import SimpleITK as sitk
from eval_helpers import synthetic_ct

from ctsam3d.errors import InputError
from ctsam3d.evaluation.datasets import open_cases


def write(img_or_array, path, like=None):
    img = img_or_array if isinstance(img_or_array, sitk.Image) else sitk.GetImageFromArray(img_or_array)
    if like is not None:
        img.CopyInformation(like)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path))


@pytest.fixture(scope="module")
def ct():
    return synthetic_ct()


def label_map(masks):
    lab = np.zeros(masks["liver"].shape, np.uint8)
    lab[masks["liver"]] = 1
    lab[masks["bone"]] = 2
    return lab


def check_case(case, img, masks, present=("liver", "bone"), absent=()):
    image = case.load_image()
    assert image.GetSize() == img.GetSize()
    for n in present:
        np.testing.assert_array_equal(case.load_mask(n, image), masks[n])
    for n in absent:
        assert case.load_mask(n, image) is None


def test_pairs_folder_with_names_beside(tmp_path, ct):
    img, masks = ct
    write(img, tmp_path / "a_ct.nii.gz")
    write(label_map(masks), tmp_path / "a_seg.nii.gz", like=img)
    (tmp_path / "labels.json").write_text(json.dumps({"labels": {"liver": 1, "bone": 2, "spleen": 3}}))
    (case,) = open_cases(tmp_path, "pairs")
    assert case.case_id == "a" and set(case.names) == {"liver", "bone", "spleen"}
    check_case(case, img, masks, absent=("spleen",))


def test_pairs_default_catalogue_openkbp(tmp_path, ct):
    img, masks = ct
    write(img, tmp_path / "pt_1_ct.nii.gz")
    write(label_map(masks), tmp_path / "pt_1_oars.nii.gz", like=img)
    (case,) = open_cases(tmp_path, "pairs")
    assert "spinal_cord" in case.names  # id 2 is spinal_cord in OpenKBP
    image = case.load_image()
    np.testing.assert_array_equal(case.load_mask("spinal_cord", image), masks["bone"])
    assert case.load_mask("mandible", image) is None  # not contoured -> absent, not empty-scored


def test_manifest_json(tmp_path, ct):
    img, masks = ct
    write(img, tmp_path / "d" / "img.nii.gz")
    write(label_map(masks), tmp_path / "d" / "lab.nii.gz", like=img)
    man = tmp_path / "m.json"
    man.write_text(json.dumps([{"case_id": "x", "image": "d/img.nii.gz", "label": "d/lab.nii.gz",
                                "names": {"1": "liver", "2": "bone"}}]))
    (case,) = open_cases(man, "pairs")
    assert case.case_id == "x"
    check_case(case, img, masks)


def test_totalseg_layout(tmp_path, ct):
    img, masks = ct
    write(img, tmp_path / "s0001" / "ct.nii.gz")
    for n, m in masks.items():
        write(m.astype(np.uint8), tmp_path / "s0001" / "segmentations" / f"{n}.nii.gz", like=img)
    write(np.zeros(img.GetSize()[::-1], np.uint8), tmp_path / "s0001" / "segmentations" / "spleen.nii.gz", like=img)
    (case,) = open_cases(tmp_path, "totalseg")
    assert set(case.names) == {"liver", "bone", "spleen"}
    check_case(case, img, masks, absent=("spleen",))


def test_nnunet_layout(tmp_path, ct):
    img, masks = ct
    write(img, tmp_path / "imagesTr" / "c1_0000.nii.gz")
    write(label_map(masks), tmp_path / "labelsTr" / "c1.nii.gz", like=img)
    (tmp_path / "dataset.json").write_text(json.dumps(
        {"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1, "bone": 2},
         "numTraining": 1, "file_ending": ".nii.gz"}))
    (case,) = open_cases(tmp_path, "nnunet")
    check_case(case, img, masks)


def test_cvpr_npz(tmp_path, ct):
    img, masks = ct
    arr = sitk.GetArrayFromImage(img)
    np.savez_compressed(tmp_path / "case1.npz", imgs=arr, spacing=np.array(img.GetSpacing()[::-1]),
                        gts=label_map(masks))
    np.savez_compressed(tmp_path / "broken.npz", imgs=arr)
    broken, case = open_cases(tmp_path, "cvpr-npz")
    assert case.case_id == "case1" and set(case.names) == {"label_1", "label_2"}
    image = case.load_image()
    assert image.GetSpacing() == pytest.approx(img.GetSpacing())
    np.testing.assert_array_equal(case.load_mask("label_1", image), masks["liver"])
    with pytest.raises(InputError, match="broken.npz"):
        broken.load_image()


@pytest.mark.parametrize("fmt,setup,match", [
    ("pairs", None, "not found"),
    ("nonsense", "dir", "unknown format"),
    ("cvpr-npz", "dir", "no .npz"),
    ("pairs", "dir", "no '<case>_ct"),
    ("totalseg", "file.json", "manifest"),
])
def test_bad_data(tmp_path, fmt, setup, match):
    path = tmp_path / "data"
    if setup == "dir":
        path.mkdir()
    elif setup:
        path = tmp_path / setup
        path.write_text("[]")
    with pytest.raises(InputError, match=match):
        open_cases(path, fmt)
