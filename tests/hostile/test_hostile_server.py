"""Hostile input, server (FastAPI TestClient): bad uploads on the web page's route and on the
MONAI Label routes get a 4xx reply whose ``detail`` is one line with the expected words and
no server path, and leave nothing behind in the server's state folder."""

from __future__ import annotations

import io
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from fastapi.testclient import TestClient
from hostile_files import (BAD_VOLUMES, VOL, dicom_stacked_positions, dicom_zero_pixel_spacing, good_ct, zero_bomb,
                           zero_spacing)

import ctsam3d
from ctsam3d.server import ServerConfig, create_app

#: What the page's own requests carry (a same-origin fetch).
PAGE_HEADERS = {"Sec-Fetch-Site": "same-origin", "Origin": "http://127.0.0.1"}


@pytest.fixture(scope="module")
def lite_model():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "untrained weights"
        return ctsam3d.load_model("ctsam3d-lite")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    good_ct(root, "ct.nii.gz")
    return root


def _client(model, state: Path, data: Path | None, **config) -> TestClient:
    cfg = ServerConfig(state_dir=state, data_dir=data, expansion=False, **config)
    return TestClient(create_app(cfg, model=model), base_url="http://127.0.0.1")


@pytest.fixture
def server(lite_model, data_dir, tmp_path):
    state = tmp_path / "state"
    with _client(lite_model, state, data_dir) as c:
        yield c, state


def state_files(state: Path) -> set[str]:
    """Files in the server's state folder, plus any hidden (staging) folder: what a refused
    upload must not leave (the server's own empty folders, e.g. ``datastore/images``, aside)."""
    return {str(p.relative_to(state)) for p in state.rglob("*")
            if p.is_file() or any(part.startswith(".") for part in p.relative_to(state).parts)}


def _assert_refused(r, words: str, state: Path, before: set[str], statuses=(400, 413)) -> str:
    assert r.status_code in statuses, (r.status_code, r.text)
    detail = r.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail, detail
    assert words.lower() in detail.lower(), f"{words!r} not in {detail!r}"
    assert str(state) not in detail and "/tmp" not in detail, f"server path in {detail!r}"
    assert state_files(state) == before, "the refused upload left files in the state folder"
    return detail


UPLOADS = [c for c in BAD_VOLUMES if c[4]]


@pytest.mark.parametrize("case", UPLOADS, ids=[c[0] for c in UPLOADS])
def test_web_upload_refuses_bad_volume(case, server, tmp_path, monkeypatch):
    _id, build, words, env, _ = case
    client, state = server
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    src = tmp_path / "client"
    src.mkdir()
    path = build(src)
    before = state_files(state)
    r = client.post("/api/sessions/upload", headers=PAGE_HEADERS,
                    files=[("files", (f"my {path.name}", path.read_bytes()))])
    _assert_refused(r, words, state, before)


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _upload_files(d: Path):
    return {
        "unsupported ending": ([("files", ("scan.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 64))], "unsupported format"),
        "not a zip": ([("files", ("series.zip", b"PK\x03\x04 but not really a zip"))], "not a valid zip"),
        "zip without files": ([("files", ("series.zip", _zip({"__MACOSX/._a": b"x", ".hidden": b"y"})))], "holds no files"),
        "zip holding a zero-spacing NIfTI": (
            [("files", ("ct.zip", _zip({"ct.nii.gz": zero_spacing(d).read_bytes()})))], "spacing"),
        "volume and DICOM mixed": (
            [("files", ("a.nii.gz", good_ct(d).read_bytes())), ("files", ("b.dcm", b"DICM"))], "must all be dicom"),
        "DICOM slices that are not DICOM": (
            [("files", ("1.dcm", b"\0" * 200)), ("files", ("2.dcm", b"\0" * 200))], "dicom"),
        "zipped DICOM with zero pixel spacing": (
            [("files", ("series.zip", _zip({f.name: f.read_bytes() for f in dicom_zero_pixel_spacing(d).iterdir()})))],
            "pixel spacing"),
        "DICOM slices all at one position": (
            [("files", (f.name, f.read_bytes())) for f in sorted(dicom_stacked_positions(d).iterdir())],
            "share a position"),
    }


UPLOAD_CASES = ["unsupported ending", "not a zip", "zip without files", "zip holding a zero-spacing NIfTI",
                "volume and DICOM mixed", "DICOM slices that are not DICOM", "zipped DICOM with zero pixel spacing",
                "DICOM slices all at one position"]


@pytest.mark.parametrize("name", UPLOAD_CASES)
def test_web_upload_refuses_bad_request(name, server, tmp_path):
    client, state = server
    src = tmp_path / "client"
    src.mkdir()
    files, words = _upload_files(src)[name]
    before = state_files(state)
    r = client.post("/api/sessions/upload", headers=PAGE_HEADERS, files=files)
    _assert_refused(r, words, state, before)


def test_web_upload_over_the_size_limit(lite_model, tmp_path):
    state = tmp_path / "state"
    with _client(lite_model, state, None, max_upload_mb=0.01) as client:
        before = state_files(state)
        r = client.post("/api/sessions/upload", headers=PAGE_HEADERS,
                        files=[("files", ("big.nii.gz", np.random.default_rng(0).bytes(64 * 1024)))])
        _assert_refused(r, "limit", state, before)


# --------------------------------------------------------------------------- MONAI Label routes
MONAI_IMAGE_CASES = [
    ("zero spacing", zero_spacing, "spacing", {}),
    ("zip bomb of zeros", zero_bomb, "of memory", {"CTSAM3D_MAX_MEMORY": "16M"}),
    ("single slice", lambda d: _single_slice(d), "2d image", {}),
]


def _single_slice(d: Path) -> Path:
    sitk.WriteImage(sitk.GetImageFromArray(VOL[:1]), str(d / "slice.nii.gz"))
    return d / "slice.nii.gz"


@pytest.mark.parametrize("case", MONAI_IMAGE_CASES, ids=[c[0] for c in MONAI_IMAGE_CASES])
def test_monailabel_image_upload_refuses(case, server, tmp_path, monkeypatch):
    _id, build, words, env = case
    client, state = server
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    src = tmp_path / "client"
    src.mkdir()
    path = build(src)
    before = state_files(state)
    r = client.put("/datastore/?image=hostile", files={"file": (path.name, path.read_bytes())},
                   data={"params": "{}"})
    _assert_refused(r, words, state, before)


def _label_bytes(d: Path, array: np.ndarray, spacing=(1.0, 1.0, 1.0)) -> bytes:
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(spacing)
    sitk.WriteImage(img, str(d / "label.nii.gz"))
    return (d / "label.nii.gz").read_bytes()


MONAI_LABEL_CASES = [
    ("label on another grid", lambda d: _label_bytes(d, (VOL > 0).astype(np.uint8), (1.0, 1.0, 3.0)), "grid differs"),
    ("label with fractions", lambda d: _label_bytes(d, (VOL > 0).astype(np.float32) * 0.5), "non-integer"),
    ("label with negative ids", lambda d: _label_bytes(d, np.where(VOL > 0, -1, 0).astype(np.int16)), "negative"),
    ("label with zero spacing", lambda d: zero_spacing(d).read_bytes(), "spacing"),
]


@pytest.mark.parametrize("case", MONAI_LABEL_CASES, ids=[c[0] for c in MONAI_LABEL_CASES])
def test_monailabel_label_upload_refuses(case, server, tmp_path):
    _id, build, words = case
    client, state = server
    src = tmp_path / "client"
    src.mkdir()
    before = state_files(state)
    r = client.put("/datastore/label?image=ct.nii.gz&tag=final", files={"label": ("label.nii.gz", build(src))},
                   data={"params": "{}"})
    _assert_refused(r, words, state, before)
