"""Builders of small test volumes: DICOM series and deliberately broken files."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk

CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def write_dicom_series(
    folder: Path,
    array_zyx: np.ndarray,
    *,
    spacing=(0.8, 0.8, 2.0),
    origin=(-100.0, -120.0, 50.0),
    series_uid: str | None = None,
    description: str = "test series",
    name_prefix: str = "",
    reverse_names: bool = True,
) -> list[Path]:
    """Write an int16 ``[k, j, i]`` array as a CT DICOM series (one file per slice, LPS).

    With ``reverse_names`` the file names run opposite to the slice positions, so a reader
    that sorted by name instead of position would flip the volume.
    """
    folder.mkdir(parents=True, exist_ok=True)
    img = sitk.GetImageFromArray(array_zyx.astype(np.int16))
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    series_uid = series_uid or pydicom.uid.generate_uid()
    study_uid = pydicom.uid.generate_uid(entropy_srcs=["ctsam3d-test-study"])
    frame_uid = pydicom.uid.generate_uid(entropy_srcs=["ctsam3d-test-frame"])
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    n = img.GetSize()[2]
    paths = []
    for k in range(n):
        sl = img[:, :, k]
        tags = {
            "0008|0016": CT_STORAGE,
            "0008|0018": pydicom.uid.generate_uid(),
            "0008|0060": "CT",
            "0008|103e": description,
            "0010|0020": "TEST",
            "0020|000d": study_uid,
            "0020|000e": series_uid,
            "0020|0052": frame_uid,
            "0020|0011": "1",
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{v:.6f}" for v in img.TransformIndexToPhysicalPoint((0, 0, k))),
            "0020|0037": "1\\0\\0\\0\\1\\0",
            "0018|0050": str(spacing[2]),
            "0018|0088": str(spacing[2]),  # else GDCM may write a stale value
            "0028|1052": "0",
            "0028|1053": "1",
        }
        for key, value in tags.items():
            sl.SetMetaData(key, value)
        idx = n - 1 - k if reverse_names else k
        path = folder / f"{name_prefix}{idx:03d}.dcm"
        writer.SetFileName(str(path))
        writer.Execute(sl)
        paths.append(path)
    return paths


def nifti_with_header_edit(path: Path, array_zyx: np.ndarray, edit) -> Path:
    """Write a NIfTI and let ``edit(header_bytearray)`` change its header (gzip if .gz)."""
    tmp = path.with_name(path.name.replace(".nii.gz", "") + ".tmp.nii")
    sitk.WriteImage(sitk.GetImageFromArray(array_zyx), str(tmp))
    data = bytearray(tmp.read_bytes())
    tmp.unlink()
    edit(data)
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(bytes(data)))
    else:
        path.write_bytes(bytes(data))
    return path


def set_nifti_dims(data: bytearray, dims) -> None:
    """Header edit: dim[0] = len(dims), dim[1..] = dims."""
    full = [len(dims), *dims] + [1] * (7 - len(dims))
    data[40:56] = struct.pack("<8h", *full)


def mha_with_header_edit(path: Path, array_zyx: np.ndarray, old: bytes, new: bytes) -> Path:
    """Write an .mha and replace ``old`` by ``new`` in its text header."""
    sitk.WriteImage(sitk.GetImageFromArray(array_zyx), str(path))
    data = path.read_bytes()
    assert old in data, f"{old!r} not in MetaImage header"
    path.write_bytes(data.replace(old, new, 1))
    return path
