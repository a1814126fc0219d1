"""Helpers for the server tests: synthetic CTs in any stored orientation, multipart parsing,
NIfTI header reading (independent of SimpleITK), and app construction."""

from __future__ import annotations

import gzip
import io
import json
import struct
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from fastapi.testclient import TestClient

from ctsam3d.server import ServerConfig, create_app

#: Voxel (i, j, k) of the bright block's centre in the LPS-stored synthetic CT.
BLOCK_CENTRE_LPS_IJK = (30, 14, 20)


def synthetic_ct(orientation: str = "LPS") -> tuple[sitk.Image, sitk.Image]:
    """A 40x36x32 CT (spacing 2.0, 2.5, 3.0 mm, HU) with a bright 8x8x8 block off-centre, and its
    label (1 in the block), both re-stored with axes in ``orientation`` (same physical space)."""
    arr = np.full((32, 36, 40), -1000, np.int16)  # [z, y, x]
    arr[4:28, 6:30, 6:34] = 40  # body
    i, j, k = BLOCK_CENTRE_LPS_IJK
    arr[k - 4 : k + 4, j - 4 : j + 4, i - 4 : i + 4] = 300
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((2.0, 2.5, 3.0))
    img.SetOrigin((-40.0, 12.5, 100.0))
    lab = sitk.GetImageFromArray((arr == 300).astype(np.uint8))
    lab.CopyInformation(img)
    return sitk.DICOMOrient(img, orientation), sitk.DICOMOrient(lab, orientation)


def block_voxel(image: sitk.Image, label: sitk.Image) -> tuple[int, int, int]:
    """ITK index (i, j, k) in ``image`` of the block centre voxel (a voxel of the label)."""
    zyx = np.argwhere(sitk.GetArrayFromImage(label) > 0)
    centre = zyx.mean(axis=0)
    best = zyx[np.argmin(((zyx - centre) ** 2).sum(axis=1))]
    return tuple(int(v) for v in best[::-1])


def write_case(folder: Path, name: str, orientation: str) -> tuple[Path, Path]:
    img, lab = synthetic_ct(orientation)
    folder.mkdir(parents=True, exist_ok=True)
    ct, lb = folder / f"{name}.nii.gz", folder / f"{name}_label.nii.gz"
    sitk.WriteImage(img, str(ct))
    sitk.WriteImage(lab, str(lb))
    return ct, lb


def nifti_sform_ras(data: bytes) -> np.ndarray:
    """The 4x4 voxel -> RAS mm matrix of a (gzipped) NIfTI-1 file, read from its header bytes
    (srow_x/y/z, as NiiVue and nibabel use it when sform_code > 0)."""
    raw = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
    assert struct.unpack("<i", raw[:4])[0] == 348, "not a little-endian NIfTI-1 header"
    sform_code = struct.unpack("<h", raw[254:256])[0]
    assert sform_code > 0, "viewer file has no sform"
    rows = np.array(struct.unpack("<12f", raw[280:328]), dtype=np.float64).reshape(3, 4)
    return np.vstack([rows, [0, 0, 0, 1]])


def parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """``{part name: (filename, bytes)}`` of a multipart response (standard-library parser)."""
    msg = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    assert msg.is_multipart()
    out = {}
    for part in msg.iter_parts():
        out[part.get_param("name", header="content-disposition")] = (part.get_filename(), part.get_payload(decode=True))
    return out


def read_nifti_bytes(data: bytes, tmp_path: Path, name: str = "m.nii.gz") -> sitk.Image:
    path = tmp_path / name
    path.write_bytes(data)
    return sitk.ReadImage(str(path))


def same_grid(a: sitk.Image, b: sitk.Image) -> bool:
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=1e-5)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-4)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-6)
    )


def make_client(model, state_dir: Path, data_dir: Path | None, **config) -> TestClient:
    """A TestClient on a fresh app (loopback host, so the Host check passes)."""
    cfg = ServerConfig(state_dir=state_dir, data_dir=data_dir, expansion=False, **config)
    return TestClient(create_app(cfg, model=model), base_url="http://127.0.0.1")


def zip_bytes(files: dict[str, bytes]) -> bytes:
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def dicom_series(image: sitk.Image, folder: Path, *, frame_of_reference: bool = True) -> list[Path]:
    """Write ``image`` (identity direction) as a CT DICOM series with the tags DICOM-SEG needs."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    uid = "1.2.826.0.1.3680043.2.1125.7"
    paths = []
    for k in range(image.GetDepth()):
        s = image[:, :, k]
        tags = {
            "0008|0016": "1.2.840.10008.5.1.4.1.1.2", "0008|0018": f"{uid}.3.{k + 1}", "0008|0060": "CT",
            "0008|0020": "20240101", "0008|0030": "120000", "0010|0010": "Test^Patient", "0010|0020": "P1",
            "0020|000d": f"{uid}.1", "0020|000e": f"{uid}.2", "0020|0011": "1", "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{v:.4f}" for v in image.TransformIndexToPhysicalPoint((0, 0, k))),
            "0020|0037": "1\\0\\0\\0\\1\\0", "0018|0050": f"{image.GetSpacing()[2]:.4f}",
            "0028|1052": "0", "0028|1053": "1",
        }
        if frame_of_reference:
            tags["0020|0052"] = f"{uid}.4"
        for tag, value in tags.items():
            s.SetMetaData(tag, value)
        path = folder / f"slice{k:03d}.dcm"
        writer.SetFileName(str(path))
        writer.Execute(s)
        paths.append(path)
    return paths


def infer_params(**kw) -> dict:
    return {"params": json.dumps(kw)}
