"""DICOM input: a zipped series or loose DICOM files; export as DICOM-SEG and NIfTI."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import SimpleITK as sitk
from server_helpers import dicom_series, read_nifti_bytes, same_grid, synthetic_ct, zip_bytes

from ctsam3d.io import read_label


def test_zipped_dicom_series_to_dicom_seg(client, tmp_path):
    img, _ = synthetic_ct("LPS")
    files = dicom_series(img, tmp_path / "series")
    archive = zip_bytes({f"study/series/{p.name}": p.read_bytes() for p in files})
    r = client.post("/api/sessions/upload", files=[("files", ("study.zip", archive))])
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["is_dicom"] is True and info["image"]["size"] == list(img.GetSize())
    sid = info["session_id"]
    client.post(f"/api/sessions/{sid}/objects", json={"name": "liver"})
    assert client.post(f"/api/sessions/{sid}/objects/1/clicks", json={"ijk": [30, 14, 20]}).status_code == 200

    seg = client.get(f"/api/sessions/{sid}/objects/1/mask.dcm")
    assert seg.status_code == 200, seg.text
    assert seg.headers["content-type"] == "application/dicom"
    ds = pydicom.dcmread(io.BytesIO(seg.content))
    assert ds.Modality == "SEG" and ds.SegmentSequence[0].SegmentLabel == "liver"
    nifti = read_nifti_bytes(client.get(f"/api/sessions/{sid}/objects/1/mask.nii.gz").content, tmp_path)
    assert same_grid(nifti, img)
    (tmp_path / "seg.dcm").write_bytes(seg.content)
    back = read_label(tmp_path / "seg.dcm", reference=img)
    assert np.array_equal(sitk.GetArrayFromImage(back) > 0, sitk.GetArrayFromImage(nifti) > 0)


def test_loose_dicom_files_upload(client, tmp_path):
    img, _ = synthetic_ct("LPS")
    files = dicom_series(img, tmp_path / "series")
    r = client.post("/api/sessions/upload", files=[("files", (p.name, p.read_bytes())) for p in files])
    assert r.status_code == 200, r.text
    assert r.json()["is_dicom"] and r.json()["image"]["size"] == list(img.GetSize())


def test_dicom_seg_of_a_series_without_frame_of_reference_is_a_clean_4xx(client, tmp_path):
    img, _ = synthetic_ct("LPS")
    files = dicom_series(img, tmp_path / "series", frame_of_reference=False)
    sid = client.post("/api/sessions/upload", files=[("files", (p.name, p.read_bytes())) for p in files]).json()["session_id"]
    client.post(f"/api/sessions/{sid}/objects", json={"name": "liver"})
    client.post(f"/api/sessions/{sid}/objects/1/clicks", json={"ijk": [30, 14, 20]})
    r = client.get(f"/api/sessions/{sid}/objects/1/mask.dcm")
    assert r.status_code == 400 and "DICOM-SEG" in r.json()["detail"]
    assert client.get(f"/api/sessions/{sid}/objects/1/mask.nii.gz").status_code == 200
