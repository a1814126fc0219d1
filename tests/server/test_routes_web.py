"""The page's API (``/api/...``): listing, sessions, objects, clicks, overlay boxes, exports."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from server_helpers import nifti_sform_ras, read_nifti_bytes, same_grid, synthetic_ct


def open_session(client, image="lps.nii.gz") -> dict:
    r = client.post("/api/sessions", json={"image": image})
    assert r.status_code == 200, r.text
    return r.json()


def test_config_lists_catalogue_structures(client):
    r = client.get("/api/config")
    assert r.status_code == 200
    body = r.json()
    assert "liver" in body["structures"] and len(body["structures"]) == 107
    assert body["token_required"] is False


def test_datastore_lists_images_and_marks_labels(client):
    items = {it["id"]: it["kind"] for it in client.get("/api/datastore").json()["items"]}
    assert items["lps.nii.gz"] == "image"
    assert items["sub/example_ct.nii.gz"] == "image"
    assert items["lps_label.nii.gz"] == "label"


def test_page_and_viewer_module_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "app.js" in page.text
    assert client.get("/static/app.js").status_code == 200
    js = client.get("/static/vendor/niivue.js")
    if js.status_code == 404:
        pytest.skip("NiiVue not installed (npm ci): " + js.json()["detail"])
    assert js.headers["content-type"].startswith("text/javascript") and b"Niivue" in js.content[:4_000_000]


def test_open_session_reports_geometry(client):
    info = open_session(client, "pli.nii.gz")
    img, _ = synthetic_ct("PLI")
    assert info["image"]["size"] == list(img.GetSize())
    assert info["image"]["orientation"] == "PLI"
    assert info["objects"] == [] and info["is_dicom"] is False
    assert len(info["session_id"]) >= 16


@pytest.mark.parametrize("code", ["RAS", "LPS", "PLI"])
def test_viewer_image_has_the_session_geometry(client, tmp_path, code):
    """The NIfTI the page shows is written from the session's image: same grid, and its sform
    (what NiiVue uses) maps a voxel to the RAS position the server converts back to it."""
    sid = open_session(client, f"{code.lower()}.nii.gz")["session_id"]
    data = client.get(f"/api/sessions/{sid}/image.nii.gz").content
    img, _ = synthetic_ct(code)
    assert same_grid(read_nifti_bytes(data, tmp_path), img)
    ijk = (3, 5, 7)
    lps = img.TransformIndexToPhysicalPoint(ijk)
    ras = nifti_sform_ras(data) @ np.array([*ijk, 1.0])
    assert np.allclose(ras[:3], (-lps[0], -lps[1], lps[2]), atol=1e-3)


def test_click_updates_object_and_overlay_box(client, tmp_path):
    """On the bundled 128³ example (PLI), a click changes a box inside the image; the bytes the
    page patches from ``labels.raw`` equal the label map, and nothing changed outside the box."""
    sid = open_session(client, "sub/example_ct.nii.gz")["session_id"]
    obj = client.post(f"/api/sessions/{sid}/objects", json={"name": "mandible"}).json()
    assert obj["id"] == 1 and obj["name"] == "mandible" and len(obj["color"]) == 3
    r = client.post(f"/api/sessions/{sid}/objects/1/clicks", json={"ijk": [49, 59, 51], "positive": True})
    assert r.status_code == 200, r.text
    change = r.json()
    assert change["voxel"] == [49, 59, 51]
    assert change["object"]["clicks"] == [{"ijk": [49, 59, 51], "positive": True}]
    assert change["server_ms"] > 0 and change["object"]["voxels"] > 0
    labels = sitk.GetArrayFromImage(read_nifti_bytes(client.get(f"/api/sessions/{sid}/labels.nii.gz").content, tmp_path, "l.nii.gz"))
    mask = sitk.GetArrayFromImage(read_nifti_bytes(client.get(f"/api/sessions/{sid}/objects/1/mask.nii.gz").content, tmp_path))
    assert np.array_equal(labels == 1, mask == 1)
    assert change["object"]["voxels"] == int(mask.sum())
    (z0, y0, x0), (z1, y1, x1) = change["box"]
    assert (z1 - z0) * (y1 - y0) * (x1 - x0) < labels.size  # one 192 mm patch: a part of the image
    raw = client.get(f"/api/sessions/{sid}/labels.raw", params={"box": f"{z0},{y0},{x0},{z1},{y1},{x1}"}).content
    assert np.array_equal(np.frombuffer(raw, np.uint8).reshape(z1 - z0, y1 - y0, x1 - x0), labels[z0:z1, y0:y1, x0:x1])
    outside = labels.copy()
    outside[z0:z1, y0:y1, x0:x1] = 0
    assert outside.max() == 0


def test_undo_clear_delete(client):
    sid = open_session(client)["session_id"]
    client.post(f"/api/sessions/{sid}/objects", json={"name": "a"})
    first = client.post(f"/api/sessions/{sid}/objects/1/clicks", json={"ijk": [30, 14, 20]}).json()
    second = client.post(f"/api/sessions/{sid}/objects/1/clicks", json={"ijk": [10, 10, 10], "positive": False}).json()
    assert len(second["object"]["clicks"]) == 2
    undone = client.post(f"/api/sessions/{sid}/objects/1/undo").json()
    assert undone["object"]["clicks"] == first["object"]["clicks"]
    assert undone["object"]["voxels"] == first["object"]["voxels"]
    cleared = client.post(f"/api/sessions/{sid}/objects/1/clear").json()
    assert cleared["object"]["clicks"] == [] and cleared["object"]["voxels"] == 0
    assert client.post(f"/api/sessions/{sid}/objects/1/undo").status_code == 400  # nothing to undo
    client.post(f"/api/sessions/{sid}/objects/1/clicks", json={"ijk": [30, 14, 20]})
    assert client.delete(f"/api/sessions/{sid}/objects/1").status_code == 200
    info = client.get(f"/api/sessions/{sid}").json()
    assert info["objects"] == []
    labels = client.get(f"/api/sessions/{sid}/labels.raw", params={"box": "0,0,0,32,36,40"}).content
    assert max(labels) == 0
    assert client.post(f"/api/sessions/{sid}/objects/1/clicks", json={"ijk": [1, 1, 1]}).status_code == 404


def test_object_update_and_visibility_persist(client):
    sid = open_session(client)["session_id"]
    client.post(f"/api/sessions/{sid}/objects", json={"name": "kidney_left"})
    r = client.patch(f"/api/sessions/{sid}/objects/1", json={"visible": False, "color": [1, 2, 3], "name": "kidney_right"})
    assert r.status_code == 200
    obj = client.get(f"/api/sessions/{sid}").json()["objects"][0]
    assert (obj["visible"], obj["color"], obj["name"]) == (False, [1, 2, 3], "kidney_right")
    assert client.patch(f"/api/sessions/{sid}/objects/1", json={"color": [300, 0, 0]}).status_code == 400


def test_two_objects_stack_in_the_label_map(client):
    sid = open_session(client)["session_id"]
    for name in ("a", "b"):
        client.post(f"/api/sessions/{sid}/objects", json={"name": name})
    a = client.post(f"/api/sessions/{sid}/objects/1/clicks", json={"ijk": [30, 14, 20]}).json()
    b = client.post(f"/api/sessions/{sid}/objects/2/clicks", json={"ijk": [12, 20, 10]}).json()
    raw = np.frombuffer(client.get(f"/api/sessions/{sid}/labels.raw", params={"box": "0,0,0,32,36,40"}).content, np.uint8)
    assert int((raw == 2).sum()) == b["object"]["voxels"]  # the later object is on top
    assert int((raw == 1).sum()) <= a["object"]["voxels"]
    # going back to object 1 refines it (the session switches objects)
    again = client.post(f"/api/sessions/{sid}/objects/1/clicks", json={"ijk": [5, 5, 5], "positive": False})
    assert again.status_code == 200 and len(again.json()["object"]["clicks"]) == 2


def test_dicom_seg_export_needs_dicom_source(client):
    sid = open_session(client)["session_id"]
    client.post(f"/api/sessions/{sid}/objects", json={"name": "a"})
    r = client.get(f"/api/sessions/{sid}/objects/1/mask.dcm")
    assert r.status_code == 400 and "DICOM" in r.json()["detail"]


def test_upload_nrrd_and_mha(client, tmp_path):
    img, _ = synthetic_ct("PLI")
    for suffix in (".nrrd", ".mha"):
        path = tmp_path / f"ct{suffix}"
        sitk.WriteImage(img, str(path))
        with open(path, "rb") as f:
            r = client.post("/api/sessions/upload", files=[("files", (f"my ct{suffix}", f))])
        assert r.status_code == 200, r.text
        info = r.json()
        assert info["image"]["orientation"] == "PLI" and info["source"]["name"] == f"my ct{suffix}"
        assert "path" not in info["source"]


def test_delete_session(client):
    sid = open_session(client)["session_id"]
    assert client.delete(f"/api/sessions/{sid}").status_code == 200
    assert client.get(f"/api/sessions/{sid}").status_code == 404
    assert client.delete(f"/api/sessions/{sid}").status_code == 404
