"""Writing masks and label maps: exact source grid, formats, sidecars, atomicity, overwrite."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from ctsam3d.errors import GeometryError, InputError, OutputExistsError
from ctsam3d.io import read_label, read_sidecar, read_volume, sidecar_path, write_label_map, write_mask

from io_helpers import write_dicom_series


@pytest.fixture
def ct(fixture_ct):
    return read_volume(fixture_ct)


def _mask(ct, dtype=np.uint8, value=1):
    arr = np.zeros(ct.GetSize()[::-1], dtype)
    arr[40:60, 50:70, 30:45] = value
    m = sitk.GetImageFromArray(arr)
    m.CopyInformation(ct)
    return m, arr


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_mask_written_on_exact_source_grid(ct, tmp_path, suffix):
    mask, arr = _mask(ct)
    # a tiny float drift in the mask's header must not reach the file
    mask.SetOrigin([o + 1e-6 for o in ct.GetOrigin()])
    out = write_mask(mask, tmp_path / f"m{suffix}", source=ct)
    back = sitk.ReadImage(str(out))
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(back), arr)
    assert back.GetPixelID() == sitk.sitkUInt8
    assert back.GetSize() == ct.GetSize()
    np.testing.assert_allclose(back.GetOrigin(), ct.GetOrigin(), atol=1e-5)
    np.testing.assert_allclose(back.GetDirection(), ct.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(back.GetSpacing(), ct.GetSpacing(), rtol=1e-6)
    assert read_label(out, reference=ct).GetSize() == ct.GetSize()
    assert sorted(p.name for p in tmp_path.iterdir()) == [out.name]  # no temp files left


def test_source_as_path_and_bool_like_float_mask(ct, fixture_ct, tmp_path):
    mask, arr = _mask(ct, np.float32, 1.0)
    out = write_mask(mask, tmp_path / "m.nii.gz", source=str(fixture_ct))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out))), arr.astype(np.uint8))


def test_overwrite_refused_unless_asked(ct, tmp_path):
    mask, arr = _mask(ct)
    path = tmp_path / "m.nii.gz"
    write_mask(mask, path, source=ct)
    before = path.read_bytes()
    other, _ = _mask(ct, value=2)
    with pytest.raises(OutputExistsError, match="overwrite") as info:
        write_mask(other, path, source=ct)
    assert str(path) in str(info.value)
    assert path.read_bytes() == before
    write_mask(other, path, source=ct, overwrite=True)
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(path))).max() == 2


def test_failed_write_leaves_nothing(ct, tmp_path, monkeypatch):
    mask, _ = _mask(ct)

    def broken_write(image, name, *args, **kwargs):
        with open(name, "wb") as f:
            f.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(sitk, "WriteImage", broken_write)
    with pytest.raises(InputError, match="m.nii.gz: cannot write \\(disk full\\)"):
        write_mask(mask, tmp_path / "m.nii.gz", source=ct)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "make, exc, words",
    [
        (lambda ct: sitk.Image([10, 10, 10], sitk.sitkUInt8), GeometryError, "differs from the source"),
        (lambda ct: _mask(ct, np.int16, -1)[0], InputError, "negative"),
        (lambda ct: _mask(ct, np.float32, 0.5)[0], InputError, "non-integer"),
    ],
    ids=["other grid", "negative", "probabilities"],
)
def test_bad_masks_are_refused_and_nothing_written(ct, tmp_path, make, exc, words):
    with pytest.raises(exc, match=words):
        write_mask(make(ct), tmp_path / "m.nii.gz", source=ct)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name, words", [("m.png", "unknown output format"), ("m", "unknown output format")])
def test_unknown_format(ct, tmp_path, name, words):
    with pytest.raises(InputError, match=words):
        write_mask(_mask(ct)[0], tmp_path / name, source=ct)


def test_dicom_seg_needs_dicom_source(ct, tmp_path):
    with pytest.raises(InputError, match="needs a DICOM series as input"):
        write_mask(_mask(ct)[0], tmp_path / "m.dcm", source=ct)
    assert list(tmp_path.iterdir()) == []


def test_label_map_keeps_ids_and_writes_sidecar(ct, tmp_path):
    arr = np.zeros(ct.GetSize()[::-1], np.uint16)
    arr[10:20, 10:20, 10:20] = 117
    arr[30:40, 30:40, 30:40] = 5
    lab = sitk.GetImageFromArray(arr)
    lab.CopyInformation(ct)
    names = {5: "liver", 117: "costal_cartilages"}
    out = write_label_map(lab, tmp_path / "seg.nii.gz", names=names, source=ct)
    side = sidecar_path(out)
    assert side.name == "seg.json"
    assert json.loads(side.read_text()) == {"5": "liver", "117": "costal_cartilages"}
    assert read_sidecar(out) == names
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out))), arr)
    # the sidecar alone existing blocks a second write too
    out.unlink()
    with pytest.raises(OutputExistsError, match="seg.json"):
        write_label_map(lab, tmp_path / "seg.nii.gz", names=names, source=ct)
    assert not out.exists()


def test_bad_sidecar(tmp_path):
    (tmp_path / "x.json").write_text("[1, 2]")
    with pytest.raises(InputError, match="x.json"):
        read_sidecar(tmp_path / "x.nii.gz")


def _check_seg_file(path, ct, arr, names):
    import highdicom as hd

    seg = hd.seg.segread(str(path))
    ids = sorted(int(i) for i in np.unique(arr) if i)
    labels = {int(d.SegmentNumber): d.SegmentLabel for d in seg.SegmentSequence}
    assert labels == {n + 1: names[i] for n, i in enumerate(ids)}
    back = read_label(path, reference=ct)
    got = sitk.GetArrayViewFromImage(back)
    for n, i in enumerate(ids):
        np.testing.assert_array_equal(got == n + 1, arr == i)
    return seg


def test_dicom_seg_from_synthetic_series(tmp_path):
    rng = np.random.default_rng(0)
    write_dicom_series(tmp_path / "ct", rng.integers(-1000, 1000, (6, 20, 24)).astype(np.int16))
    ct = read_volume(tmp_path / "ct")
    arr = np.zeros((6, 20, 24), np.uint8)
    arr[1:4, 5:9, 6:12] = 5
    arr[4:6, 10:15, 2:5] = 2
    lab = sitk.GetImageFromArray(arr)
    lab.CopyInformation(ct)
    names = {5: "liver", 2: "kidney_right"}
    out = write_label_map(lab, tmp_path / "seg.dcm", names=names, source=ct)
    assert not sidecar_path(out).exists()
    seg = _check_seg_file(out, ct, arr, names)
    codes = {d.SegmentLabel: d.SegmentedPropertyTypeCodeSequence[0].CodeMeaning for d in seg.SegmentSequence}
    assert codes == {"kidney_right": "Kidney", "liver": "Liver"}
    # the source may also be given as the DICOM folder itself
    out2 = write_mask(sitk.Cast(lab == 5, sitk.sitkUInt8), tmp_path / "liver.dcm", source=tmp_path / "ct",
                      names={1: "some_new_structure"})
    seg2 = _check_seg_file(out2, ct, (arr == 5).astype(np.uint8), {1: "some_new_structure"})
    assert seg2.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Tissue"


def test_dicom_seg_from_shared_example(shared_data, tmp_path):
    folder = shared_data / "totalseg_examples" / "example_ct_dicom"
    ct = read_volume(folder)
    lab = read_label(shared_data / "totalseg_examples" / "example_seg_dicom.nii.gz", reference=ct)
    from ctsam3d.anatomy import get_catalogue

    names = get_catalogue("totalseg_v2").labels
    arr = sitk.GetArrayFromImage(lab)
    # three structures keep the test fast: liver (5), aorta (52), inferior_vena_cava (63)
    arr[~np.isin(arr, [5, 52, 63])] = 0
    three = sitk.GetImageFromArray(arr)
    three.CopyInformation(ct)
    out = write_label_map(three, tmp_path / "seg.dcm", names=names, source=ct)  # ct knows its folder
    seg = _check_seg_file(out, ct, arr, names)
    assert [d.SegmentLabel for d in seg.SegmentSequence] == ["liver", "aorta", "inferior_vena_cava"]
    meanings = [d.SegmentedPropertyTypeCodeSequence[0].CodeMeaning for d in seg.SegmentSequence]
    assert meanings == ["Liver", "Aorta", "Inferior vena cava"]
