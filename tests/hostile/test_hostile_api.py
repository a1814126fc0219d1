"""Hostile input, Python API: every case raises a :class:`ctsam3d.errors.CtSam3dError` of the
expected kind whose message is one line with the expected words, and leaves nothing new on
disk (no partial output, no temporary file)."""

from __future__ import annotations

import math
import os
import stat
import warnings
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from hostile_files import BAD_VOLUMES, VOL, dicom_series, good_ct, snapshot, text_file

import ctsam3d
from ctsam3d.errors import CheckpointError, ClickError, CtSam3dError, GeometryError, InputError, OutputExistsError
from ctsam3d.io import read_label, read_volume, write_label_map, write_mask
from ctsam3d.modeling import get_preset, save_model


@pytest.fixture(scope="module")
def lite_model():
    """Random-init ``ctsam3d-lite``: the refusals below happen before its output matters."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "untrained weights"
        return ctsam3d.load_model("ctsam3d-lite")


@pytest.mark.parametrize("case", BAD_VOLUMES, ids=[c[0] for c in BAD_VOLUMES])
def test_read_volume_refuses(case, tmp_path, monkeypatch):
    _id, build, words, env, _upload = case
    path = build(tmp_path)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    before = snapshot(tmp_path)
    with pytest.raises(CtSam3dError) as info:
        read_volume(path)
    msg = str(info.value)
    assert "\n" not in msg and words in msg.lower() and path.name in msg, msg
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------------- labels, masks, links, models
def _labels(d: Path, array: np.ndarray, name: str = "labels.nii.gz", spacing=(1.0, 1.0, 1.0)) -> Path:
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(spacing)
    sitk.WriteImage(img, str(d / name))
    return d / name


def _ct_image(d: Path) -> sitk.Image:
    return read_volume(good_ct(d))


def _mask_like(ct: sitk.Image, value=1, dtype=np.uint8) -> sitk.Image:
    arr = np.zeros(sitk.GetArrayViewFromImage(ct).shape, dtype)
    arr[3:6, 3:6, 3:6] = value
    m = sitk.GetImageFromArray(arr)
    m.CopyInformation(ct)
    return m


def _float_labels(d):
    path, ct = _labels(d, (VOL > 0).astype(np.float32) * 1.5), _ct_image(d)
    return lambda: read_label(path, reference=ct)


def _negative_labels(d):
    path = _labels(d, np.where(VOL > 0, -3, 0).astype(np.int16))
    return lambda: read_label(path)


def _label_grid_differs(d):
    path, ct = _labels(d, (VOL > 0).astype(np.uint8), spacing=(1.0, 1.0, 2.5)), _ct_image(d)
    return lambda: read_label(path, reference=ct)


def _seg_for_nifti(d):
    ct = _ct_image(d)
    return lambda: write_mask(_mask_like(ct), d / "mask.dcm", source=d / "ct.nii.gz")


def _seg_without_frame_of_reference(d):
    folder = dicom_series(d / "series", frame_of_reference=False)
    ct = read_volume(folder)
    return lambda: write_mask(_mask_like(ct), d / "mask.dcm", source=folder)


def _mask_grid_differs(d):
    ct = _ct_image(d)
    m = sitk.GetImageFromArray(np.zeros((5, 5, 5), np.uint8))
    return lambda: write_mask(m, d / "mask.nii.gz", source=ct)


def _probability_mask(d):
    ct = _ct_image(d)
    return lambda: write_mask(_mask_like(ct, 0.5, np.float32), d / "mask.nii.gz", source=ct)


def _mask_exists(d):
    ct = _ct_image(d)
    good_ct(d, "mask.nii.gz")
    return lambda: write_mask(_mask_like(ct), d / "mask.nii.gz", source=ct)


def _label_map_sidecar_exists(d):
    ct = _ct_image(d)
    (d / "labels.json").write_text("{}\n", encoding="utf-8")
    return lambda: write_label_map(_mask_like(ct, 2), d / "labels.nii.gz", names={2: "liver"}, source=ct)


def _mask_unwritable(d):
    if not Path("/proc/self").is_dir():
        pytest.skip("needs /proc")
    ct = _ct_image(d)
    return lambda: write_mask(_mask_like(ct), "/proc/ctsam3d-hostile/mask.nii.gz", source=ct)


def _dicom_link_outside(d):
    outside = dicom_series(d / "elsewhere")
    inside = d / "data" / "series"
    inside.mkdir(parents=True)
    for f in sorted(outside.iterdir()):
        os.symlink(f, inside / f.name)
    return lambda: read_volume(inside, within=d / "data")


def _dicom_broken_link(d):
    folder = dicom_series(d / "series")
    os.symlink(d / "gone.dcm", folder / "zzz.dcm")
    return lambda: read_volume(folder)


def _memory_option(d):
    path = good_ct(d)
    return lambda: read_volume(path, max_memory="1K")


def _memory_option_garbage(d):
    path = good_ct(d)
    return lambda: read_volume(path, max_memory="lots")


def _model_text_pth(d):
    path = text_file(d).rename(d / "params.pth")
    return lambda: ctsam3d.load_model(path)


def _model_missing(d):
    return lambda: ctsam3d.load_model(d / "none.safetensors")


def _model_garbage_safetensors(d):
    (d / "model.safetensors").write_bytes(b"\x00" * 64)
    (d / "config.json").write_text(get_preset("ctsam3d-lite").to_json() + "\n", encoding="utf-8")  # a valid config, no bundled file needed
    return lambda: ctsam3d.load_model(d / "model.safetensors")


API_CASES = [
    # id, setup(tmp) -> callable that must raise, exception type, words
    ("label map with fractions", _float_labels, InputError, "non-integer"),
    ("label map with negatives", _negative_labels, InputError, "negative"),
    ("label map on another grid", _label_grid_differs, GeometryError, "grid differs"),
    ("DICOM-SEG for a NIfTI source", _seg_for_nifti, InputError, "needs a dicom series"),
    ("DICOM-SEG for a series without Frame of Reference", _seg_without_frame_of_reference, InputError,
     "no frame of reference uid"),
    ("mask on another grid", _mask_grid_differs, GeometryError, "differs"),
    ("probability mask", _probability_mask, InputError, "non-integer"),
    ("mask output exists", _mask_exists, OutputExistsError, "output exists"),
    ("label map sidecar exists", _label_map_sidecar_exists, OutputExistsError, "output exists"),
    ("mask output unwritable", _mask_unwritable, InputError, "cannot write"),
    ("DICOM slices linking out of the folder", _dicom_link_outside, InputError, "outside"),
    ("DICOM folder with a broken link", _dicom_broken_link, InputError, "broken link"),
    ("memory limit 1K", _memory_option, InputError, "of memory"),
    ("memory limit not a size", _memory_option_garbage, InputError, "not a memory size"),
    ("text file as params.pth", _model_text_pth, CheckpointError, "not a pytorch checkpoint"),
    ("missing checkpoint", _model_missing, CheckpointError, "no such checkpoint"),
    ("garbage safetensors", _model_garbage_safetensors, CtSam3dError, "safetensors"),
]


@pytest.mark.parametrize("case", API_CASES, ids=[c[0] for c in API_CASES])
def test_api_refuses(case, tmp_path):
    _id, setup, exc_type, words = case
    call = setup(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(exc_type) as info:
        call()
    msg = str(info.value)
    assert "\n" not in msg and words in msg.lower(), msg
    assert snapshot(tmp_path) == before


# --------------------------------------------------------------------------- session
SESSION_CASES = [
    ("click outside the image", lambda s: s.add_click((500, 5, 5)), ClickError, "outside"),
    ("NaN click", lambda s: s.add_click((math.nan, 5, 5)), ClickError, "nan"),
    ("click with two numbers", lambda s: s.add_click((5, 5)), ClickError, "three"),
    ("2D image", lambda s: s.set_image(sitk.GetImageFromArray(VOL[0])), InputError, "3d"),
    ("initial mask on another grid", lambda s: s.set_initial_mask(sitk.GetImageFromArray(np.ones((4, 4, 4), np.uint8))),
     CtSam3dError, "grid"),
]


@pytest.mark.parametrize("case", SESSION_CASES, ids=[c[0] for c in SESSION_CASES])
def test_session_refuses(case, lite_model, tmp_path):
    _id, act, exc_type, words = case
    session = ctsam3d.Session(lite_model, expansion=False)
    session.set_image(read_volume(good_ct(tmp_path)))
    with pytest.raises(exc_type) as info:
        act(session)
    msg = str(info.value)
    assert "\n" not in msg and words in msg.lower(), msg


# --------------------------------------------------------------------------- file modes (issue 17, item 10)
def test_outputs_get_the_umask_mode_not_0600(tmp_path):
    ct = _ct_image(tmp_path)
    old = os.umask(0o027)
    try:
        write_mask(_mask_like(ct), tmp_path / "mask.nii.gz", source=ct)
        write_label_map(_mask_like(ct, 2), tmp_path / "labels.nrrd", names={2: "liver"}, source=ct)
    finally:
        os.umask(old)
    for name in ("mask.nii.gz", "labels.nrrd", "labels.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o640, name
    os.chmod(tmp_path / "mask.nii.gz", 0o604)  # replacing a file keeps the mode it had
    write_mask(_mask_like(ct), tmp_path / "mask.nii.gz", source=ct, overwrite=True)
    assert stat.S_IMODE((tmp_path / "mask.nii.gz").stat().st_mode) == 0o604
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ct.nii.gz", "labels.json", "labels.nrrd", "mask.nii.gz"]


def test_dicom_seg_and_model_files_get_the_umask_mode(tmp_path, lite_model):
    folder = dicom_series(tmp_path / "series")
    ct = read_volume(folder)
    old = os.umask(0o022)
    try:
        write_mask(_mask_like(ct), tmp_path / "mask.dcm", source=folder)
        save_model(lite_model, tmp_path / "model")
    finally:
        os.umask(old)
    for p in (tmp_path / "mask.dcm", tmp_path / "model" / "model.safetensors", tmp_path / "model" / "config.json"):
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["config.json", "model.safetensors"]


def test_a_failing_writer_leaves_nothing_and_says_one_line(tmp_path, monkeypatch):
    """The output folder was writable when checked, but the write itself fails (disk full)."""
    ct = _ct_image(tmp_path)
    before = snapshot(tmp_path)

    def disk_full(*a, **k):
        raise RuntimeError("ITK ERROR: NiftiImageIO(0x1): /build/itk/x.cxx:99:\nNo space left on device")

    monkeypatch.setattr(sitk, "WriteImage", disk_full)
    with pytest.raises(InputError, match="mask.nii.gz: cannot write \\(No space left on device\\)") as info:
        write_mask(_mask_like(ct), tmp_path / "mask.nii.gz", source=ct)
    assert "\n" not in str(info.value) and "/build" not in str(info.value)
    assert snapshot(tmp_path) == before
