"""Reading volumes in every format, DICOM series selection, label maps checked against their CT."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import SimpleITK as sitk

from ctsam3d.errors import GeometryError, InputError
from ctsam3d.geometry import orientation_code
from ctsam3d.io import read_header, read_label, read_volume, write_mask

from io_helpers import write_dicom_series


def test_fixture_ct(fixture_ct):
    ct = read_volume(fixture_ct)
    assert ct.GetSize() == (128, 128, 128)
    assert orientation_code(ct) == "PLI"
    arr = sitk.GetArrayViewFromImage(ct)
    assert arr.min() == -1024 and arr.max() > 1000


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd", ".mha", ".mhd"])
def test_formats_read_back_identically(fixture_ct, tmp_path, suffix):
    ct = sitk.ReadImage(str(fixture_ct))
    path = tmp_path / f"ct{suffix}"
    sitk.WriteImage(ct, str(path), useCompression=True)
    back = read_volume(path)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(back), sitk.GetArrayViewFromImage(ct))
    assert back.GetSize() == ct.GetSize()
    np.testing.assert_allclose(back.GetSpacing(), ct.GetSpacing(), rtol=1e-6)
    np.testing.assert_allclose(back.GetOrigin(), ct.GetOrigin(), atol=1e-5)
    np.testing.assert_allclose(back.GetDirection(), ct.GetDirection(), atol=1e-6)
    assert read_header(path).size == (128, 128, 128)


def test_dicom_folder_picks_series_with_most_slices_sorted_by_position(tmp_path, caplog):
    rng = np.random.default_rng(0)
    small = rng.integers(-1000, 1000, (4, 16, 18)).astype(np.int16)
    big = rng.integers(-1000, 1000, (7, 16, 18)).astype(np.int16)
    write_dicom_series(tmp_path, small, series_uid="1.2.3.4.1", description="scout", name_prefix="a")
    write_dicom_series(tmp_path, big, series_uid="1.2.3.4.2", description="body", name_prefix="b")
    with caplog.at_level(logging.INFO, logger="ctsam3d"):
        img = read_volume(tmp_path)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(img), big)  # file names run backwards
    assert img.GetOrigin() == pytest.approx((-100.0, -120.0, 50.0))
    assert img.GetSpacing() == pytest.approx((0.8, 0.8, 2.0))
    assert "1.2.3.4.2" in caplog.text and "7 slices" in caplog.text and "1.2.3.4.1" in caplog.text


def test_single_dicom_file_reads_its_whole_series(tmp_path):
    arr = np.arange(5 * 8 * 9, dtype=np.int16).reshape(5, 8, 9)
    files = write_dicom_series(tmp_path, arr)
    img = read_volume(files[2])
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(img), arr)


def test_missing_slice_is_reported(tmp_path, caplog):
    files = write_dicom_series(tmp_path, np.zeros((6, 8, 9), np.int16))
    files[3].unlink()
    with caplog.at_level(logging.WARNING, logger="ctsam3d"):
        img = read_volume(tmp_path)
    assert img.GetSize()[2] == 5
    assert "uneven" in caplog.text


def test_even_series_gives_no_warning(tmp_path, caplog):
    write_dicom_series(tmp_path, np.zeros((6, 8, 9), np.int16))
    with caplog.at_level(logging.WARNING, logger="ctsam3d"):
        read_volume(tmp_path)
    assert "uneven" not in caplog.text


def test_folder_with_only_a_seg_is_not_an_image(tmp_path):
    arr = np.zeros((3, 8, 9), np.int16)
    write_dicom_series(tmp_path / "ct", arr)
    ct = read_volume(tmp_path / "ct")
    mask = sitk.Image(ct.GetSize(), sitk.sitkUInt8)
    mask.CopyInformation(ct)
    mask[2, 3, 1] = 1
    (tmp_path / "seg").mkdir()
    write_mask(mask, tmp_path / "seg" / "mask.dcm", source=ct, names={1: "liver"})
    with pytest.raises(InputError, match="only SEG"):
        read_volume(tmp_path / "seg")
    with pytest.raises(InputError, match="DICOM SEG object"):
        read_volume(tmp_path / "seg" / "mask.dcm")


# ----------------------------------------------------------------------------- labels
def _labels_like(ct: sitk.Image, arr=None) -> sitk.Image:
    lab = sitk.GetImageFromArray(arr if arr is not None else np.zeros(ct.GetSize()[::-1], np.uint8))
    lab.CopyInformation(ct)
    return lab


def test_read_label_on_fixture(fixture_ct, fixture_labels):
    ct = read_volume(fixture_ct)
    lab = read_label(fixture_labels, reference=ct)
    assert lab.GetPixelID() == sitk.sitkUInt8
    assert set(np.unique(sitk.GetArrayViewFromImage(lab))) == {0, 1, 2, 3, 4, 6}  # organs 5 and 7 were not contoured for pt_203
    assert lab.GetOrigin() == ct.GetOrigin() and lab.GetDirection() == ct.GetDirection()


@pytest.mark.parametrize(
    "change",
    [
        ("size", lambda im: im[:, :, :-1]),
        ("spacing", lambda im: (im.SetSpacing([s * 1.01 for s in im.GetSpacing()]), im)[1]),
        ("origin", lambda im: (im.SetOrigin([o + 2.0 for o in im.GetOrigin()]), im)[1]),
        ("direction", lambda im: (im.SetDirection((1, 0, 0, 0, 0, 1, 0, -1, 0)), im)[1]),
    ],
    ids=lambda c: c[0],
)
def test_label_grid_differing_from_ct_is_refused(change, tmp_path):
    ct = sitk.GetImageFromArray(np.zeros((6, 7, 8), np.int16))
    ct.SetSpacing((2.0, 2.0, 3.0))
    lab = change[1](_labels_like(ct))
    path = tmp_path / "lab.nii.gz"
    sitk.WriteImage(lab, str(path))
    with pytest.raises(GeometryError, match="grid differs") as info:
        read_label(path, reference=ct)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_label_with_float_drift_gets_ct_geometry(tmp_path):
    ct = sitk.GetImageFromArray(np.zeros((6, 7, 8), np.int16))
    ct.SetOrigin((10.123456789, -3.3, 7.7))
    ct.SetSpacing((0.976562, 0.976562, 2.5))
    lab = _labels_like(ct)
    lab.SetOrigin([o + 1e-4 for o in ct.GetOrigin()])
    path = tmp_path / "lab.nii.gz"
    sitk.WriteImage(lab, str(path))
    out = read_label(path, reference=ct)
    assert out.GetOrigin() == ct.GetOrigin() and out.GetSpacing() == ct.GetSpacing()


def test_label_stored_in_another_axis_order_is_reordered(tmp_path):
    """Same voxel centres, stored RAS while the CT is LPS (like the TotalSegmentator example)."""
    ct = sitk.GetImageFromArray(np.zeros((5, 6, 7), np.int16))
    ct.SetSpacing((0.8, 0.9, 2.0))
    arr = np.zeros((5, 6, 7), np.uint8)
    arr[1, 2, 3] = 4
    lab_lps = _labels_like(ct, arr)
    flipped = sitk.Flip(lab_lps, [True, True, False], flipAboutOrigin=False)
    assert flipped.GetDirection() != ct.GetDirection()
    path = tmp_path / "ras.nii.gz"
    sitk.WriteImage(flipped, str(path))
    out = read_label(path, reference=ct)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(out), arr)


@pytest.mark.parametrize(
    "values, words",
    [(np.array([0.0, 1.5]), "non-integer"), (np.array([0, -3]), "negative")],
    ids=["non-integer", "negative"],
)
def test_label_values_must_be_ids(values, words, tmp_path):
    arr = np.zeros((4, 5, 6), dtype=values.dtype)
    arr[0, 0, :2] = values
    path = tmp_path / "lab.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(path))
    with pytest.raises(InputError, match=words):
        read_label(path)


def test_float_label_with_integer_values_is_cast(tmp_path):
    arr = np.zeros((4, 5, 6), np.float32)
    arr[1, 1, 1] = 300.0
    path = tmp_path / "lab.mha"
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(path))
    lab = read_label(path)
    assert lab.GetPixelID() == sitk.sitkUInt16 and lab.GetPixel(1, 1, 1) == 300


def test_shared_dicom_series(shared_data):
    ct = read_volume(shared_data / "totalseg_examples" / "example_ct_dicom")
    assert ct.GetSize() == (512, 512, 20) and orientation_code(ct) == "LPS"
    lab = read_label(shared_data / "totalseg_examples" / "example_seg_dicom.nii.gz", reference=ct)
    assert lab.GetSize() == ct.GetSize() and len(np.unique(sitk.GetArrayViewFromImage(lab))) == 32
