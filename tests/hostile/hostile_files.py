"""Builders of hostile input files for the hostile-input suite (CLI, Python API and server).

Each builder takes a folder and returns the path of one bad file (or folder) it wrote there.
:data:`BAD_VOLUMES` pairs them with the words the one-line error must contain; the CLI,
API and server tests all run over that table, so every bad volume is tried at every layer.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import SimpleITK as sitk

#: A small CT-like volume [z, y, x] (int16 HU).
VOL = np.random.default_rng(17).integers(-1000, 1000, (12, 13, 14)).astype(np.int16)


def good_ct(d: Path, name: str = "ct.nii.gz") -> Path:
    """A valid 12 x 13 x 14 CT (1 x 1 x 1 mm) the output-side cases use as input."""
    img = sitk.GetImageFromArray(VOL)
    path = d / name
    sitk.WriteImage(img, str(path))
    return path


def _nifti_edit(path: Path, edit, array: np.ndarray = VOL) -> Path:
    """Write ``array`` as NIfTI-1 and let ``edit(header: bytearray)`` change its bytes."""
    tmp = path.with_name(path.name.replace(".nii.gz", "") + ".tmp.nii")
    sitk.WriteImage(sitk.GetImageFromArray(array), str(tmp))
    data = bytearray(tmp.read_bytes())
    tmp.unlink()
    edit(data)
    path.write_bytes(gzip.compress(bytes(data)) if path.name.endswith(".gz") else bytes(data))
    return path


def _pixdim(values):
    def edit(h: bytearray) -> None:
        h[80:92] = struct.pack("<3f", *values)

    return edit


def zero_spacing(d: Path) -> Path:
    return _nifti_edit(d / "zero_spacing.nii.gz", _pixdim((0.0, 1.0, 1.0)))


def nan_spacing(d: Path) -> Path:
    return _nifti_edit(d / "nan_spacing.nii.gz", _pixdim((1.0, float("nan"), 1.0)))


def negative_spacing(d: Path) -> Path:
    return _nifti_edit(d / "negative_spacing.nii.gz", _pixdim((1.0, 1.0, -2.0)))


def zero_sform_column(d: Path) -> Path:
    """sform in use (code 1, no qform) whose first column is zero: 0 mm along i."""

    def edit(h: bytearray) -> None:
        h[252:254] = struct.pack("<h", 0)
        h[254:256] = struct.pack("<h", 1)
        h[280:296] = struct.pack("<4f", 0.0, 0.0, 0.0, 0.0)

    return _nifti_edit(d / "zero_sform.nii.gz", edit)


def header_claims_huge(d: Path) -> Path:
    """A header declaring 1000 x 1000 x 1400 int16 (2.8 GB decoded; under the voxel limit)
    followed by a little data: the memory check must refuse it from the header alone."""

    def edit(h: bytearray) -> None:
        h[40:56] = struct.pack("<8h", 3, 1000, 1000, 1400, 1, 1, 1, 1)

    return _nifti_edit(d / "claims_2_8_GB.nii.gz", edit)


def zero_bomb(d: Path) -> Path:
    """256^3 int16 zeros: 33 MB decoded from a ~33 kB .nii.gz (tests set a 16 MB limit)."""
    img = sitk.Image(256, 256, 256, sitk.sitkInt16)
    path = d / "zeros_bomb.nii.gz"
    sitk.WriteImage(img, str(path), True)
    return path


def single_voxel(d: Path) -> Path:
    sitk.WriteImage(sitk.Image(1, 1, 1, sitk.sitkInt16), str(d / "one_voxel.nii.gz"))
    return d / "one_voxel.nii.gz"


def line_of_voxels(d: Path) -> Path:
    sitk.WriteImage(sitk.Image(9, 1, 1, sitk.sitkInt16), str(d / "line.nii.gz"))
    return d / "line.nii.gz"


def single_slice(d: Path) -> Path:
    sitk.WriteImage(sitk.GetImageFromArray(VOL[:1]), str(d / "one_slice.nii.gz"))
    return d / "one_slice.nii.gz"


def four_d(d: Path) -> Path:
    im = sitk.GetImageFromArray(VOL)
    sitk.WriteImage(sitk.JoinSeries([im, im]), str(d / "four_d.nii.gz"))
    return d / "four_d.nii.gz"


def colour(d: Path) -> Path:
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5, 6, 3), np.uint8), isVector=True), str(d / "rgb.nrrd"))
    return d / "rgb.nrrd"


def nan_voxels(d: Path) -> Path:
    a = VOL.astype(np.float32)
    a[5, 6, 7] = np.nan
    sitk.WriteImage(sitk.GetImageFromArray(a), str(d / "nan_voxel.nii.gz"))
    return d / "nan_voxel.nii.gz"


def truncated(d: Path) -> Path:
    full = good_ct(d, "full.nii.gz")
    data = full.read_bytes()
    full.unlink()
    (d / "truncated.nii.gz").write_bytes(data[: len(data) // 2])
    return d / "truncated.nii.gz"


def garbage(d: Path) -> Path:
    (d / "garbage.nii.gz").write_bytes(b"GIF89a not an image at all " * 30)
    return d / "garbage.nii.gz"


def empty_file(d: Path) -> Path:
    (d / "empty.nii.gz").write_bytes(b"")
    return d / "empty.nii.gz"


def skewed_direction(d: Path) -> Path:
    path = d / "skewed.mha"
    sitk.WriteImage(sitk.GetImageFromArray(VOL), str(path))
    data = path.read_bytes().replace(b"TransformMatrix = 1 0 0 0 1 0 0 0 1", b"TransformMatrix = 1 0 0 0.5 1 0 0 0 1", 1)
    path.write_bytes(data)
    return path


def detached_nrrd(d: Path) -> Path:
    """An NRRD header whose voxels live in another file (a path chosen by whoever wrote it)."""
    path = d / "detached.nrrd"
    path.write_bytes(b"NRRD0004\ntype: short\ndimension: 3\nsizes: 4 4 4\nendian: little\n"
                     b"encoding: raw\ndata file: ../../etc/passwd\n\n")
    return path


def broken_link(d: Path) -> Path:
    os.symlink(d / "nowhere.nii.gz", d / "dangling.nii.gz")
    return d / "dangling.nii.gz"


def missing(d: Path) -> Path:
    return d / "not_there.nii.gz"


def empty_folder(d: Path) -> Path:
    (d / "empty_dir").mkdir()
    return d / "empty_dir"


def folder_without_dicom(d: Path) -> Path:
    (d / "no_dicom").mkdir()
    (d / "no_dicom" / "readme.txt").write_text("notes\n", encoding="utf-8")
    return d / "no_dicom"


def text_file(d: Path) -> Path:
    (d / "notes.txt").write_text("patient notes, not an image\n", encoding="utf-8")
    return d / "notes.txt"


def _edit_dicom_files(folder: Path, edit) -> Path:
    import pydicom

    for f in sorted(folder.iterdir()):
        ds = pydicom.dcmread(f)
        edit(ds)
        ds.save_as(f)
    return folder


def dicom_zero_pixel_spacing(d: Path) -> Path:
    """Pixel Spacing 0\\0: GDCM would read the slices as 1 mm pixels."""
    return _edit_dicom_files(dicom_series(d / "zero_pixel_spacing"), lambda ds: setattr(ds, "PixelSpacing", [0, 0]))


def dicom_stacked_positions(d: Path) -> Path:
    """Every slice at the same position (several volumes in one series): ITK stacks them 1 mm apart."""
    return _edit_dicom_files(dicom_series(d / "same_position"), lambda ds: setattr(ds, "ImagePositionPatient", [0, 0, 5]))


#: (case id, builder, words the one-line error must contain (lower case), env overrides).
#: ``upload`` False: the server never sees such a thing as an upload (links, folders, ...).
BAD_VOLUMES = [
    ("zero spacing (pixdim)", zero_spacing, "spacing", {}, True),
    ("NaN spacing (pixdim)", nan_spacing, "spacing", {}, True),
    ("negative spacing (pixdim)", negative_spacing, "spacing", {}, True),
    ("zero spacing (sform)", zero_sform_column, "(sform)", {}, True),
    ("header claims 2.8 GB", header_claims_huge, "of memory", {"CTSAM3D_MAX_MEMORY": "1G"}, True),
    ("zip bomb of zeros", zero_bomb, "of memory", {"CTSAM3D_MAX_MEMORY": "16M"}, True),
    ("voxel limit", good_ct, "exceeds the limit", {"CTSAM3D_MAX_VOXELS": "1000"}, True),
    ("1x1x1 volume", single_voxel, "single voxel", {}, True),
    ("9x1x1 volume", line_of_voxels, "1d image", {}, True),
    ("single slice", single_slice, "2d image", {}, True),
    ("4D volume", four_d, "4d image", {}, True),
    ("colour image", colour, "values per voxel", {}, True),
    ("NaN voxel", nan_voxels, "nan", {}, True),
    ("truncated .nii.gz", truncated, "truncated", {}, True),
    ("garbage named .nii.gz", garbage, "cannot read", {}, True),
    ("empty file", empty_file, "empty", {}, True),
    ("skewed direction", skewed_direction, "not orthonormal", {}, True),
    ("NRRD with detached data", detached_nrrd, "data file", {}, True),
    ("text file", text_file, "cannot read", {}, False),
    ("broken link", broken_link, "broken link", {}, False),
    ("missing file", missing, "no such file", {}, False),
    ("empty folder", empty_folder, "empty", {}, False),
    ("folder without DICOM", folder_without_dicom, "no dicom", {}, False),
    ("DICOM with zero pixel spacing", dicom_zero_pixel_spacing, "pixel spacing", {}, False),
    ("DICOM slices all at one position", dicom_stacked_positions, "share a position", {}, False),
]


def snapshot(root: Path) -> set[str]:
    """Every path under ``root`` (hidden ones too), relative: the 'nothing left on disk' check."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def dicom_series(folder: Path, array_zyx: np.ndarray = VOL, spacing=(0.8, 0.8, 2.0), *,
                 frame_of_reference: bool = True) -> Path:
    """Write ``array_zyx`` as a CT DICOM series, one file per slice (LPS, identity direction);
    without ``frame_of_reference`` the Frame of Reference UID a DICOM-SEG needs is left out."""
    import pydicom

    folder.mkdir(parents=True, exist_ok=True)
    img = sitk.GetImageFromArray(array_zyx.astype(np.int16))
    img.SetSpacing(spacing)
    series_uid, study_uid = pydicom.uid.generate_uid(), pydicom.uid.generate_uid()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(img.GetSize()[2]):
        sl = img[:, :, k]
        for key, value in {
            "0008|0016": "1.2.840.10008.5.1.4.1.1.2", "0008|0018": pydicom.uid.generate_uid(),
            "0008|0060": "CT", "0020|000d": study_uid, "0020|000e": series_uid, "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{v:.4f}" for v in img.TransformIndexToPhysicalPoint((0, 0, k))),
            "0020|0037": "1\\0\\0\\0\\1\\0", "0018|0050": str(spacing[2]),
        }.items():
            sl.SetMetaData(key, value)
        if frame_of_reference:
            sl.SetMetaData("0020|0052", pydicom.uid.generate_uid(entropy_srcs=[series_uid]))
        writer.SetFileName(str(folder / f"{k:03d}.dcm"))
        writer.Execute(sl)
    return folder
