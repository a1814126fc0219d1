"""MONAI Label routes: exact request and response shapes (the contract in docs/server.md)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from server_helpers import block_voxel, infer_params, parse_multipart, read_nifti_bytes, same_grid, synthetic_ct


def upload_session(client, tmp_path, code="PLI") -> str:
    img, _ = synthetic_ct(code)
    path = tmp_path / "volume.nii.gz"
    sitk.WriteImage(img, str(path))
    with open(path, "rb") as f:
        r = client.put("/session/", files=[("files", ("volume.nii.gz", f, "application/octet-stream"))])
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"session_id", "session_info"}
    return body["session_id"]


def test_info_advertises_one_deepgrow_3d_model(client):
    info = client.get("/info/").json()
    assert {"name", "version", "labels", "models", "trainers", "strategies", "scoring"} <= set(info)
    assert info["trainers"] == {} and info["strategies"] == {} and info["scoring"] == {}
    models = info["models"]  # one deepgrow model, and its scribbles entry for Slicer's scribbles panel
    assert set(models) == {"ctsam3d", "ctsam3d-scribbles"} and models["ctsam3d-scribbles"]["type"] == "scribbles"
    model = models["ctsam3d"]
    assert model["type"] == "deepgrow" and model["dimension"] == 3
    assert "liver" in model["labels"] and model["labels"] == info["labels"]
    assert {"description", "config"} <= set(model)


@pytest.mark.parametrize("method,path", [
    ("GET", "/auth/"),
    ("GET", "/train/?check_if_running=true"),
    ("GET", "/train/"),
    ("POST", "/train/ctsam3d"),
    ("DELETE", "/train/"),
])
def test_auth_and_train_answer_404(client, method, path):
    r = client.request(method, path)
    assert r.status_code == 404 and r.json()["detail"]


def test_session_put_get_delete(client, tmp_path):
    sid = upload_session(client, tmp_path)
    info = client.get(f"/session/{sid}").json()
    assert info["name"] == sid and info["meta"]["image"]["orientation"] == "PLI"
    assert {"create_ts", "last_access_ts", "expiry"} <= set(info)
    assert "path" not in json.dumps(info)  # no server paths leak
    img = client.get(f"/session/{sid}", params={"image": "true"})
    assert img.status_code == 200 and img.content[:2] == b"\x1f\x8b"
    assert client.delete(f"/session/{sid}").json()["name"] == sid
    assert client.get(f"/session/{sid}").status_code == 404


def test_infer_returns_params_part_and_nifti_part_on_input_grid(client, tmp_path):
    sid = upload_session(client, tmp_path)
    img, lab = synthetic_ct("PLI")
    fg = [list(block_voxel(img, lab))]
    r = client.post(f"/infer/ctsam3d?image={sid}&session_id={sid}", data=infer_params(label="spleen", foreground=fg, background=[]))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("multipart/form-data; boundary=")
    parts = parse_multipart(r.headers["content-type"], r.content)
    assert set(parts) == {"params", "image"}
    filename, params_bytes = parts["params"]
    assert filename is None
    params = json.loads(params_bytes)
    assert params["label_names"] == {"spleen": 1} and params["foreground"] == fg and params["background"] == []
    assert {"infer", "total"} <= set(params["latencies"])
    filename, data = parts["image"]
    assert filename.endswith(".nii.gz")
    mask = read_nifti_bytes(data, tmp_path)
    assert same_grid(mask, img)
    values = np.unique(sitk.GetArrayFromImage(mask))
    assert set(values.tolist()) <= {0, 1}
    assert int(sitk.GetArrayFromImage(mask).sum()) == params["voxels"]


def test_infer_resends_all_points_and_runs_only_new_ones(client, tmp_path):
    sid = upload_session(client, tmp_path)
    url = f"/infer/ctsam3d?image={sid}&session_id={sid}"
    fg, bg = [[20, 20, 20]], []
    client.post(url, data=infer_params(label="liver", foreground=fg, background=bg))
    bg = [[3, 3, 3]]
    client.post(url, data=infer_params(label="liver", foreground=fg, background=bg))
    fg = fg + [[22, 18, 21]]
    client.post(url, data=infer_params(label="liver", foreground=fg, background=bg))
    objects = client.get(f"/api/sessions/{sid}").json()["objects"]
    assert [o["name"] for o in objects] == ["liver"]
    assert objects[0]["clicks"] == [
        {"ijk": [20, 20, 20], "positive": True},
        {"ijk": [3, 3, 3], "positive": False},
        {"ijk": [22, 18, 21], "positive": True},
    ]
    # a list that is not a continuation restarts the object from it
    client.post(url, data=infer_params(label="liver", foreground=[[10, 10, 10]], background=[]))
    objects = client.get(f"/api/sessions/{sid}").json()["objects"]
    assert objects[0]["clicks"] == [{"ijk": [10, 10, 10], "positive": True}]
    # another label is another object
    client.post(url, data=infer_params(label="spleen", foreground=[[5, 6, 7]], background=[]))
    assert [o["name"] for o in client.get(f"/api/sessions/{sid}").json()["objects"]] == ["liver", "spleen"]
    # no points: empty mask
    r = client.post(url, data=infer_params(label="liver", foreground=[], background=[], output=None))
    parts = parse_multipart(r.headers["content-type"], r.content)
    assert json.loads(parts["params"][1])["voxels"] == 0


def test_infer_outputs_json_and_image(client, tmp_path):
    sid = upload_session(client, tmp_path)
    base = f"/infer/ctsam3d?image={sid}&session_id={sid}"
    r = client.post(base + "&output=json", data=infer_params(label="a", foreground=[[20, 20, 20]]))
    assert r.headers["content-type"].startswith("application/json") and r.json()["label"] == "a"
    r = client.post(base + "&output=image", data=infer_params(label="a", foreground=[[20, 20, 20]]))
    assert r.content[:2] == b"\x1f\x8b" and 'filename="a.nii.gz"' in r.headers["content-disposition"]


def test_infer_on_datastore_image_and_on_uploaded_file(client, tmp_path):
    r = client.post("/infer/ctsam3d?image=lps.nii.gz", data=infer_params(label="x", foreground=[[30, 14, 20]], client_id="u1"))
    assert r.status_code == 200, r.text
    parts = parse_multipart(r.headers["content-type"], r.content)
    assert same_grid(read_nifti_bytes(parts["image"][1], tmp_path), synthetic_ct("LPS")[0])
    img, _ = synthetic_ct("RAS")
    path = tmp_path / "ras.nii.gz"
    sitk.WriteImage(img, str(path))
    with open(path, "rb") as f:
        r = client.post("/infer/ctsam3d", data=infer_params(label="x", foreground=[[5, 5, 5]]),
                        files={"file": ("ras.nii.gz", f, "application/octet-stream")})
    assert r.status_code == 200, r.text
    parts = parse_multipart(r.headers["content-type"], r.content)
    assert json.loads(parts["params"][1])["session_id"] is None  # temporary session, removed
    assert same_grid(read_nifti_bytes(parts["image"][1], tmp_path, "r.nii.gz"), img)


def test_infer_unknown_model_or_session(client):
    assert client.post("/infer/deepedit?image=lps.nii.gz", data=infer_params(foreground=[[1, 1, 1]])).status_code == 404
    r = client.post("/infer/ctsam3d?image=x&session_id=AAAAAAAAAAAAAAAAAAAAAAAA", data=infer_params(foreground=[[1, 1, 1]]))
    assert r.status_code == 404


def test_datastore_listing_download_and_labels(client, tmp_path):
    status = client.get("/datastore/").json()
    assert status == {"total": 4, "completed": 0, "label_tags": {}}
    full = client.get("/datastore/", params={"output": "all"}).json()
    assert set(full["objects"]) == {"ras.nii.gz", "lps.nii.gz", "pli.nii.gz", "sub/example_ct.nii.gz"}
    assert full["objects"]["lps.nii.gz"]["image"]["ext"] == ".nii.gz"
    got = client.get("/datastore/image", params={"image": "lps.nii.gz"})
    assert got.status_code == 200 and got.content[:2] == b"\x1f\x8b"
    _, lab = synthetic_ct("LPS")
    path = tmp_path / "label.nii.gz"
    sitk.WriteImage(lab, str(path))
    with open(path, "rb") as f:
        r = client.put("/datastore/label", params={"image": "lps.nii.gz", "tag": "final"},
                       data={"params": "{}"}, files={"label": ("label.nii.gz", f)})
    assert r.status_code == 200, r.text
    assert r.json() == {"image": "lps.nii.gz", "label": "lps.nii.gz", "tag": "final"}
    assert client.get("/datastore/").json() == {"total": 4, "completed": 1, "label_tags": {"final": 1}}
    back = client.get("/datastore/label", params={"label": "lps.nii.gz", "tag": "final"})
    assert np.array_equal(sitk.GetArrayFromImage(read_nifti_bytes(back.content, tmp_path, "b.nii.gz")), sitk.GetArrayFromImage(lab))
    # a label on another grid is refused (the same grid in another axis order is reordered)
    sitk.WriteImage(lab[:, :, :10], str(path))
    with open(path, "rb") as f:
        r = client.put("/datastore/label", params={"image": "lps.nii.gz"}, files={"label": ("label.nii.gz", f)})
    assert r.status_code == 400


def test_datastore_image_upload_then_label_like_slicer(client, tmp_path):
    """3D Slicer, for a local volume: PUT /datastore/?image=<volume name>, then PUT /datastore/label."""
    img, lab = synthetic_ct("RAS")
    vol, lbl = tmp_path / "v.nii.gz", tmp_path / "l.nii.gz"
    sitk.WriteImage(img, str(vol))
    sitk.WriteImage(lab, str(lbl))
    with open(vol, "rb") as f:
        r = client.put("/datastore/", params={"image": "2: CT Chest"}, data={"params": "{}"}, files={"file": ("v.nii.gz", f)})
    assert r.status_code == 200, r.text
    assert r.json() == {"image": "2: CT Chest"}
    assert "2: CT Chest" in client.get("/datastore/", params={"output": "all"}).json()["objects"]
    assert "2: CT Chest" not in {it["id"] for it in client.get("/api/datastore").json()["items"]}  # page users don't see it
    with open(lbl, "rb") as f:
        r = client.put("/datastore/label", params={"image": "2: CT Chest", "tag": "final"}, files={"label": ("l.nii.gz", f)})
    assert r.status_code == 200, r.text
    r = client.post("/infer/ctsam3d", params={"image": "2: CT Chest"}, data=infer_params(label="x", foreground=[[5, 5, 5]]))
    assert r.status_code == 200
    # the data folder is read-only; bad ids and bad files are refused
    for image_id, content in (("lps.nii.gz", vol.read_bytes()), ("../x", vol.read_bytes()), ("ok", b"not an image")):
        r = client.put("/datastore/image", params={"image": image_id}, files={"file": ("v.nii.gz", content)})
        assert r.status_code == 400, (image_id, r.text)
