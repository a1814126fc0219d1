"""Scribble label volumes as 3D Slicer's MONAI Label extension sends them (server/scribbles.py):
foreground / background scribble values 3 / 2 (or as params say) become clicks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from server_helpers import block_voxel, infer_params, parse_multipart, read_nifti_bytes, same_grid, synthetic_ct
from test_monailabel_client import monailabel_client_class  # noqa: F401 - fixture
from test_routes_monailabel import upload_session

from ctsam3d.errors import InputError
from ctsam3d.server import ServerConfig, create_app
from ctsam3d.server.background import BackgroundServer
from ctsam3d.server.scribbles import scribble_labels, scribble_points


def scribble_volume(img, lab, fg=3, bg=2, structure=1):
    """Slicer's export: the structure's own segment (1), a foreground scribble through the
    block and a background scribble in the body beside it, on the image's grid."""
    arr = np.zeros(sitk.GetArrayFromImage(lab).shape, np.uint8)
    arr[sitk.GetArrayFromImage(lab) > 0] = structure
    i, j, k = block_voxel(img, lab)
    a = arr.copy()
    a[k, j, max(i - 3, 0):i + 3] = fg
    a[k, max(j - 3, 0):j + 2, i] = fg
    a[k, 2, 2:6] = bg
    out = sitk.GetImageFromArray(a)
    out.CopyInformation(img)
    return out


def test_scribble_points_thin_per_cube_and_keep_polarity():
    a = np.zeros((10, 20, 30), np.uint8)
    a[5, 10, 0:30] = 3  # a 30 mm line along i (1 mm voxels): one click per 6 mm cube
    a[5, 2, 0:4] = 2
    lab = sitk.GetImageFromArray(a)
    fg, bg = scribble_points(lab, lab, step_mm=6.0)
    assert len(fg) == 5 and all(p[1:] == (10, 5) for p in fg) and [p[0] for p in fg] == sorted(p[0] for p in fg)
    assert len(bg) == 1 and bg[0][1:] == (2, 5)
    few, _ = scribble_points(lab, lab, step_mm=1.0, max_points=4)
    assert len(few) == 4 and few[0][0] == 0 and few[-1][0] == 29
    with pytest.raises(InputError, match="no foreground scribble"):
        scribble_points(lab, lab, fg_label=7, bg_label=2)
    with pytest.raises(InputError, match="holds no scribble"):
        scribble_points(lab, lab, fg_label=7, bg_label=8)


@pytest.mark.parametrize("params,want", [
    ({}, (3, 2)),
    ({"label_info": [{"name": "foreground_scribbles", "id": 5}, {"name": "background_scribbles", "id": 4},
                     {"name": "spleen", "id": 1}]}, (5, 4)),
    ({"scribbles_fg_label": 9}, (9, 2)),
])
def test_scribble_labels(params, want):
    assert scribble_labels(params) == want


@pytest.mark.parametrize("params,match", [
    ({"scribbles_fg_label": 2}, "same label value"),
    ({"scribbles_bg_label": "x"}, "label value"),
    ({"label_info": "fg"}, "label_info"),
])
def test_scribble_labels_refused(params, match):
    with pytest.raises(InputError, match=match):
        scribble_labels(params)


def _post(client, sid, volume_path, params):
    with open(volume_path, "rb") as f:
        return client.post(f"/infer/ctsam3d-scribbles?image={sid}&session_id={sid}", data=infer_params(**params),
                           files=[("label", ("label.nii.gz", f, "application/gzip"))])


def test_scribbles_route_equals_deepgrow_with_the_same_points(client, tmp_path):
    img, lab = synthetic_ct("PLI")
    path = tmp_path / "scribbles.nii.gz"
    sitk.WriteImage(scribble_volume(img, lab), str(path))
    sid = upload_session(client, tmp_path)
    r = _post(client, sid, path, {"label": "spleen"})
    assert r.status_code == 200, r.text
    parts = parse_multipart(r.headers["content-type"], r.content)
    params = json.loads(parts["params"][1])
    fg, bg = scribble_points(scribble_volume(img, lab), img)
    assert params["foreground"] == [list(p) for p in fg] and params["background"] == [list(p) for p in bg]
    assert "ignored" not in params
    mask = read_nifti_bytes(parts["image"][1], tmp_path)
    assert same_grid(mask, img) and params["voxels"] > 0
    sid2 = upload_session(client, tmp_path)
    r2 = client.post(f"/infer/ctsam3d?image={sid2}&session_id={sid2}",
                     data=infer_params(label="spleen", foreground=params["foreground"], background=params["background"]))
    ref = read_nifti_bytes(parse_multipart(r2.headers["content-type"], r2.content)["image"][1], tmp_path, "r.nii.gz")
    assert np.array_equal(sitk.GetArrayFromImage(mask), sitk.GetArrayFromImage(ref))


def test_scribbles_route_refusals(client, tmp_path):
    img, lab = synthetic_ct("PLI")
    sid = upload_session(client, tmp_path)
    r = client.post(f"/infer/ctsam3d-scribbles?image={sid}&session_id={sid}", data=infer_params(label="x"))
    assert r.status_code == 400 and "scribble label volume" in r.json()["detail"]
    only_bg = tmp_path / "bg.nii.gz"
    sitk.WriteImage(scribble_volume(img, lab, fg=1), str(only_bg))
    r = _post(client, sid, only_bg, {"label": "x"})
    assert r.status_code == 400 and "no foreground scribble" in r.json()["detail"]
    other = tmp_path / "other.nii.gz"
    small = sitk.Image(10, 10, 10, sitk.sitkUInt8)  # not the image's grid
    small[5, 5, 5] = 3
    sitk.WriteImage(small, str(other))
    r = _post(client, sid, other, {"label": "x"})
    assert r.status_code == 400 and "\n" not in r.json()["detail"] and "/" not in r.json()["detail"].split(":")[0]
    assert client.post(f"/infer/ctsam3d-other?image={sid}&session_id={sid}", data=infer_params(label="x")).status_code == 404


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the client imports the stdlib 'cgi' module
def test_monailabel_client_sends_scribbles(monailabel_client_class, lite_model, data_dir, tmp_path):  # noqa: F811
    img, lab = synthetic_ct("PLI")
    volume, scrib = tmp_path / "volume.nii.gz", tmp_path / "scribbles.nii.gz"
    sitk.WriteImage(img, str(volume))
    sitk.WriteImage(scribble_volume(img, lab, fg=8, bg=7), str(scrib))
    app = create_app(ServerConfig(state_dir=tmp_path / "state", data_dir=data_dir, expansion=False), model=lite_model)
    out = tmp_path / "client"
    out.mkdir()
    with BackgroundServer(app) as url:
        client = monailabel_client_class(url, tmpdir=str(out), client_id="slicer-test")
        assert client.info()["models"]["ctsam3d-scribbles"]["type"] == "scribbles"
        sid = client.create_session(str(volume))["session_id"]
        label_info = [{"name": "spleen", "id": 1}, {"name": "background_scribbles", "id": 7},
                      {"name": "foreground_scribbles", "id": 8}]
        result_file, params = client.infer("ctsam3d-scribbles", sid, {"label": "spleen", "label_info": label_info},
                                           label_in=str(scrib), session_id=sid)
        mask = sitk.ReadImage(result_file)
        assert same_grid(mask, img) and int(sitk.GetArrayFromImage(mask).sum()) == params["voxels"] > 0
        assert len(params["foreground"]) >= 2 and len(params["background"]) >= 1
