"""Every bad input gets one clear line naming the file and the problem (library and CLI)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from ctsam3d.cli.main import main
from ctsam3d.errors import GeometryError, InputError
from ctsam3d.io import read_volume

from io_helpers import mha_with_header_edit, nifti_with_header_edit, set_nifti_dims, write_dicom_series

VOL = np.random.default_rng(0).integers(-1000, 1000, (12, 13, 14)).astype(np.int16)


def _missing(d: Path) -> Path:
    return d / "nope.nii.gz"


def _truncated_gz(d: Path) -> Path:
    full = d / "full.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(VOL), str(full))
    data = full.read_bytes()
    (d / "cut.nii.gz").write_bytes(data[: len(data) // 2])
    return d / "cut.nii.gz"


def _truncated_nii(d: Path) -> Path:
    full = d / "full.nii"
    sitk.WriteImage(sitk.GetImageFromArray(VOL), str(full))
    data = full.read_bytes()
    (d / "cut.nii").write_bytes(data[: len(data) - 1000])
    return d / "cut.nii"


def _garbage_gz(d: Path) -> Path:
    (d / "garbage.nii.gz").write_bytes(b"this is not an image" * 20)
    return d / "garbage.nii.gz"


def _gzip_of_garbage(d: Path) -> Path:
    (d / "gz_garbage.nii.gz").write_bytes(gzip.compress(b"\x00" * 50))
    return d / "gz_garbage.nii.gz"


def _two_d(d: Path) -> Path:
    sitk.WriteImage(sitk.GetImageFromArray(VOL[0]), str(d / "slice2d.nii.gz"))
    return d / "slice2d.nii.gz"


def _single_slice(d: Path) -> Path:
    sitk.WriteImage(sitk.GetImageFromArray(VOL[:1]), str(d / "oneslice.nii.gz"))
    return d / "oneslice.nii.gz"


def _four_d(d: Path) -> Path:
    im = sitk.GetImageFromArray(VOL)
    sitk.WriteImage(sitk.JoinSeries([im, im]), str(d / "fourd.nii.gz"))
    return d / "fourd.nii.gz"


def _rgb(d: Path) -> Path:
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5, 6, 3), np.uint8), isVector=True), str(d / "rgb.nrrd"))
    return d / "rgb.nrrd"


def _nan(d: Path) -> Path:
    a = VOL.astype(np.float32)
    a[3, 4, 5] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(a), str(d / "nan.nii.gz"))
    return d / "nan.nii.gz"


def _nan_uncompressed(d: Path) -> Path:
    a = VOL.astype(np.float64)
    a[-1, -1, -1] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(a), str(d / "nan.nii"))
    return d / "nan.nii"


def _nan_after_first_block(d: Path) -> Path:
    """NaN in the last voxel of a > 4 MiB float volume (crosses the stream-check blocks)."""
    a = np.zeros((70, 130, 131), np.float32)
    a[-1, -1, -1] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(a), str(d / "nan_big.nii.gz"))
    return d / "nan_big.nii.gz"


def _inf(d: Path) -> Path:
    a = VOL.astype(np.float32)
    a[0, 0, 0] = np.inf
    sitk.WriteImage(sitk.GetImageFromArray(a), str(d / "inf.mha"))
    return d / "inf.mha"


def _zero_spacing(d: Path) -> Path:
    return mha_with_header_edit(d / "zero_spacing.mha", VOL, b"ElementSpacing = 1 1 1", b"ElementSpacing = 1 0 1")


def _negative_spacing(d: Path) -> Path:
    return mha_with_header_edit(d / "neg_spacing.mha", VOL, b"ElementSpacing = 1 1 1", b"ElementSpacing = -2 1 1")


def _negative_spacing_nifti(d: Path) -> Path:
    def edit(h):
        h[80:84] = struct.pack("<f", -2.0)

    return nifti_with_header_edit(d / "neg_spacing.nii.gz", VOL, edit)


def _skewed_direction(d: Path) -> Path:
    return mha_with_header_edit(
        d / "skew.mha", VOL, b"TransformMatrix = 1 0 0 0 1 0 0 0 1", b"TransformMatrix = 1 0 0 0.5 1 0 0 0 1"
    )


def _scaled_direction(d: Path) -> Path:
    return mha_with_header_edit(
        d / "scaled.nrrd".replace(".nrrd", ".mha"), VOL, b"TransformMatrix = 1 0 0 0 1 0 0 0 1", b"TransformMatrix = 2 0 0 0 1 0 0 0 1"
    )


def _empty_folder(d: Path) -> Path:
    (d / "empty").mkdir()
    return d / "empty"


def _folder_without_dicom(d: Path) -> Path:
    (d / "notes").mkdir()
    (d / "notes" / "a.txt").write_text("hello")
    sitk.WriteImage(sitk.GetImageFromArray(VOL), str(d / "notes" / "ct.nii.gz"))
    return d / "notes"


def _huge_header(d: Path) -> Path:
    return nifti_with_header_edit(d / "huge.nii.gz", VOL, lambda h: set_nifti_dims(h, (4000, 4000, 4000)))


def _unreadable_dicom_slice(d: Path) -> Path:
    write_dicom_series(d / "dcm", VOL[:4])
    (d / "dcm" / "bad.dcm").write_bytes(b"\x00" * 128 + b"DICM" + b"\x01\x02")
    return d / "dcm" / "bad.dcm"


CASES = [
    # id, builder, exception, words the message must contain
    ("missing file", _missing, InputError, "no such file"),
    ("truncated nii.gz", _truncated_gz, InputError, "truncated"),
    ("truncated nii", _truncated_nii, InputError, "truncated"),
    ("garbage nii.gz", _garbage_gz, InputError, "cannot read"),
    ("gzip of garbage", _gzip_of_garbage, InputError, "cannot read"),
    ("2D image", _two_d, InputError, "2D"),
    ("single slice", _single_slice, InputError, "2D"),
    ("4D image", _four_d, InputError, "4D"),
    ("colour image", _rgb, InputError, "values per voxel"),
    ("NaN voxels", _nan, InputError, "NaN"),
    ("NaN voxels .nii float64", _nan_uncompressed, InputError, "NaN"),
    ("NaN voxel after 4 MiB", _nan_after_first_block, InputError, "1 NaN"),
    ("infinite voxels", _inf, InputError, "infinite"),
    ("zero spacing", _zero_spacing, GeometryError, "spacing"),
    ("negative spacing", _negative_spacing, GeometryError, "spacing"),
    ("negative spacing nifti", _negative_spacing_nifti, GeometryError, "spacing"),
    ("non-orthonormal direction", _skewed_direction, GeometryError, "not orthonormal"),
    ("scaled direction", _scaled_direction, GeometryError, "not orthonormal"),
    ("empty folder", _empty_folder, InputError, "empty"),
    ("folder without DICOM", _folder_without_dicom, InputError, "no DICOM"),
    ("huge header 4000^3", _huge_header, InputError, "exceeds the limit"),
    ("broken DICOM file", _unreadable_dicom_slice, InputError, "cannot read"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_read_volume_refuses_with_one_clear_line(case, tmp_path):
    _id, build, exc_type, words = case
    path = build(tmp_path)
    with pytest.raises(exc_type) as info:
        read_volume(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert str(path) in msg
    assert words.lower() in msg.lower()


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_cli_info_exits_non_zero_without_traceback(case, tmp_path, capsys):
    path = case[1](tmp_path)
    rc = main(["info", "-i", str(path)])
    out, err = capsys.readouterr()
    assert rc != 0
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("ctsam3d: error:")]
    assert len(lines) == 1 and str(path) in lines[0]
    assert out == ""


def test_voxel_limit_is_configurable(fixture_ct, monkeypatch):
    with pytest.raises(InputError, match="exceeds the limit of 1,000"):
        read_volume(fixture_ct, max_voxels=1000)
    monkeypatch.setenv("CTSAM3D_MAX_VOXELS", "5000")
    with pytest.raises(InputError, match="CTSAM3D_MAX_VOXELS"):
        read_volume(fixture_ct)
    monkeypatch.setenv("CTSAM3D_MAX_VOXELS", str(128**3))
    assert read_volume(fixture_ct).GetSize() == (128, 128, 128)

