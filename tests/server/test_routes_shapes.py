"""The page's shape route (``POST /api/sessions/{sid}/objects/{oid}/shapes``): 2D box, lasso and
scribble as the page sends them (RAS mm of each point and the view drawn on), undo, reload,
and bad input (too many points, a crossing or flat lasso, off-image, wrong axis, ...).

The bundled example CT is stored P, L, I: its ITK axis i runs P-A (the coronal view's
normal), j L-R (sagittal), k I-S (axial), so each view maps to a different ITK axis.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from server_helpers import make_client

from ctsam3d.examples import example_case
from ctsam3d.inference.shapes import box2d_shape, lasso_shape

EXAMPLE = "sub/example_ct.nii.gz"


@pytest.fixture(scope="module")
def ct():
    return sitk.ReadImage(str(example_case().ct))


def ras_of(image: sitk.Image, ijk) -> list[float]:
    """NiiVue's world position (RAS mm) of a continuous ITK index, as the page sends it."""
    x, y, z = image.TransformContinuousIndexToPhysicalPoint([float(v) for v in ijk])
    return [-x, -y, z]


def open_with_object(client, image=EXAMPLE) -> tuple[str, str]:
    sid = client.post("/api/sessions", json={"image": image}).json()["session_id"]
    assert client.post(f"/api/sessions/{sid}/objects", json={"name": "mandible"}).status_code == 200
    return sid, f"/api/sessions/{sid}/objects/1"


def mask_of(client, sid) -> np.ndarray:
    ws = client.app.state.ctx.store.get(sid)
    return sitk.GetArrayFromImage(ws.object_mask_image(1)) > 0  # [k, j, i]


# a square-ish contour on axial slice k = 60 around (i, j) = (50, 60), as continuous indices
LASSO_IJ = [(40.2, 52.0), (58.7, 50.5), (61.0, 66.3), (49.5, 71.8), (39.0, 64.0)]


def test_lasso_on_the_axial_view_is_the_mask_on_its_slice_and_undo_removes_it(client, ct):
    """A positive lasso (RAS mm, view axial -> ITK axis k here): stored as continuous indices on
    slice k = 60, and on that slice the mask is exactly the lasso's inside; undo empties it."""
    sid, base = open_with_object(client)
    ras = [ras_of(ct, (i, j, 60)) for i, j in LASSO_IJ]
    r = client.post(f"{base}/shapes", json={"kind": "lasso", "ras": ras, "view": "axial"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["prompt"]["kind"] == "lasso" and out["prompt"]["axis"] == 2 and out["prompt"]["slice"] == 60
    assert np.allclose(out["prompt"]["points"], [(i, j, 60) for i, j in LASSO_IJ], atol=1e-3)
    assert out["object"]["clicks"] == [] and [p["kind"] for p in out["object"]["prompts"]] == ["lasso"]
    assert out["box"] is not None and out["object"]["voxels"] > 0
    inside = lasso_shape([(i, j, 60) for i, j in LASSO_IJ], ct, "index", 2).inside  # [j, i]
    mask = mask_of(client, sid)
    assert np.array_equal(mask[60], inside)
    # the overlay box the page fetches holds the change
    (z0, y0, x0), (z1, y1, x1) = out["box"]
    raw = client.get(f"/api/sessions/{sid}/labels.raw", params={"box": f"{z0},{y0},{x0},{z1},{y1},{x1}"}).content
    assert np.array_equal(np.frombuffer(raw, np.uint8).reshape(z1 - z0, y1 - y0, x1 - x0) > 0, mask[z0:z1, y0:y1, x0:x1])
    assert not mask[:z0].any() and not mask[z1:].any()
    undo = client.post(f"{base}/undo")
    assert undo.status_code == 200, undo.text
    assert undo.json()["object"]["prompts"] == [] and undo.json()["object"]["voxels"] == 0
    assert not mask_of(client, sid).any()


def test_box_on_the_coronal_view_keeps_the_mask_inside_it_on_its_slice(client, ct):
    """A positive 2D box on the coronal view (-> ITK axis i of this P, L, I image): on its slice
    the mask lies in the box; a negative box then carves a part of it out; undo restores it."""
    sid, base = open_with_object(client)
    a, b = (52, 40.4, 50.2), (52, 75.6, 70.8)  # (i, j, k): slice i = 52
    r = client.post(f"{base}/shapes", json={"kind": "box2d", "ras": [ras_of(ct, a), ras_of(ct, b)], "view": "coronal"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["prompt"]["axis"] == 0 and out["prompt"]["slice"] == 52
    box = box2d_shape(a, b, ct, "index", 0).inside  # [k, j]
    mask = mask_of(client, sid)
    assert not (mask[:, :, 52] & ~box).any(), "mask outside the box on its slice"
    first = mask.copy()
    if not first[:, :, 52].any():
        pytest.skip("untrained model left the box's slice empty: nothing to carve")
    # negative box over the lower half of the first one, same slice, sent as voxel indices
    r = client.post(f"{base}/shapes", json={"kind": "box2d", "ijk": [[52, 40, 50], [52, 76, 60]], "axis": "i",
                                            "positive": False})
    assert r.status_code == 200, r.text
    carved = box2d_shape((52, 40, 50), (52, 76, 60), ct, "index", 0).inside
    mask = mask_of(client, sid)
    assert not (mask[:, :, 52] & carved).any()
    assert not (mask & ~first).any(), "a negative box added voxels"
    assert [p["positive"] for p in r.json()["object"]["prompts"]] == [True, False]
    client.post(f"{base}/undo")
    assert np.array_equal(mask_of(client, sid), first)


def test_scribble_on_the_sagittal_view_is_put_on_its_slice(client, ct):
    sid, base = open_with_object(client)
    pts = [(45.0, 70.2, 55.0), (50.0, 69.9, 60.0), (55.0, 70.1, 66.0)]  # j ~ 70: sagittal slice j = 70
    r = client.post(f"{base}/shapes", json={"kind": "scribble", "ras": [ras_of(ct, p) for p in pts], "view": "sagittal"})
    assert r.status_code == 200, r.text
    out = r.json()["prompt"]
    assert out["axis"] == 1 and out["slice"] == 70 and all(abs(p[1] - 70) < 1e-9 for p in out["points"])
    assert r.json()["object"]["voxels"] >= 0


def test_half_way_depth_goes_to_the_lower_slice(client, ct):
    """A coarse display shows a block's slice at its centre, half-way between two CT slices: the
    points go to the lower one (the voxel the page's overlay shows for that block)."""
    sid, base = open_with_object(client)
    ras = [ras_of(ct, (i, j, 60.5 + 1e-7 * n)) for n, (i, j) in enumerate(LASSO_IJ)]
    r = client.post(f"{base}/shapes", json={"kind": "lasso", "ras": ras, "view": "axial"})
    assert r.status_code == 200, r.text
    assert r.json()["prompt"]["slice"] == 60


def test_shapes_survive_a_restart_and_replay(lite_model, data_dir, tmp_path, ct):
    """Prompts are kept in order (clicks and shapes) in the session's folder; after a restart a new
    click replays the lasso into a fresh model session, and undo gives the lasso's mask back."""
    lasso = {"kind": "lasso", "ijk": [(i, j, 60) for i, j in LASSO_IJ], "axis": 2}
    with make_client(lite_model, tmp_path / "state", data_dir) as c1:
        sid, base = open_with_object(c1)
        assert c1.post(f"{base}/shapes", json=lasso).status_code == 200
        after_lasso = mask_of(c1, sid)
    with make_client(lite_model, tmp_path / "state", data_dir) as c2:
        info = c2.get(f"/api/sessions/{sid}").json()
        assert [p["kind"] for p in info["objects"][0]["prompts"]] == ["lasso"]
        assert np.array_equal(mask_of(c2, sid), after_lasso)
        r = c2.post(f"{base}/clicks", json={"ijk": [50, 60, 62]})
        assert r.status_code == 200, r.text
        assert [p["kind"] for p in r.json()["object"]["prompts"]] == ["lasso", "click"]
        assert r.json()["object"]["clicks"] == [{"ijk": [50, 60, 62], "positive": True}]
        c2.post(f"{base}/undo")
        assert np.array_equal(mask_of(c2, sid), after_lasso)


def _figure_eight():
    return [(40, 50, 60), (60, 70, 60), (60, 50, 60), (40, 70, 60)]


BAD = [
    # (case, body, words the message must hold)
    ("too many lasso points", {"kind": "lasso", "ijk": [(40 + 20 * np.cos(t), 60 + 20 * np.sin(t), 60)
                                                       for t in np.linspace(0, 6.2, 1001)], "axis": 2},
     "3 to 1000 points, got 1001"),
    ("too many scribble points", {"kind": "scribble", "ijk": [(50, 60, 60)] * 1001}, "1 to 1000 points"),
    ("box with three corners", {"kind": "box2d", "ijk": [(50, 50, 60), (60, 60, 60), (55, 70, 60)], "axis": 2},
     "exactly 2 points"),
    ("lasso of two points", {"kind": "lasso", "ijk": [(50, 50, 60), (60, 60, 60)], "axis": 2}, "3 to 1000"),
    ("self-intersecting lasso", {"kind": "lasso", "ijk": _figure_eight(), "axis": 2}, "crosses itself"),
    ("flat lasso", {"kind": "lasso", "ijk": [(40, 50, 60), (50, 55, 60), (60, 60, 60)], "axis": 2},
     "encloses no area"),
    ("lasso of one repeated point", {"kind": "lasso", "ijk": [(40, 50, 60)] * 5, "axis": 2}, "3 distinct points"),
    ("off-image corner", {"kind": "box2d", "ijk": [(50, 50, 60), (50, 140, 60)], "axis": 0}, "outside the image"),
    ("off-image RAS point", {"kind": "lasso", "ras": [[1e4, 0, 0], [0, 1e4, 0], [0, 0, 1e4]], "view": "axial"},
     "outside the image"),
    ("wrong axis", {"kind": "lasso", "ijk": [(i, j, 60) for i, j in LASSO_IJ], "axis": 0}, "not on one slice of axis i"),
    ("points on several slices", {"kind": "box2d", "ijk": [(50, 50, 58), (60, 60, 62)], "view": "axial"},
     "span 58..62"),
    ("empty box", {"kind": "box2d", "ijk": [(50.2, 50.2, 60), (50.4, 50.4, 60)], "axis": 2}, "holds no voxel centre"),
    ("unknown view", {"kind": "lasso", "ijk": [(i, j, 60) for i, j in LASSO_IJ], "view": "oblique"}, "axial"),
    ("bad axis", {"kind": "lasso", "ijk": [(i, j, 60) for i, j in LASSO_IJ], "axis": 3}, "axis must be"),
    ("view and axis", {"kind": "lasso", "ijk": [(i, j, 60) for i, j in LASSO_IJ], "axis": 2, "view": "axial"},
     "not both"),
    ("unknown kind", {"kind": "polygon", "ijk": [(50, 50, 60)]}, "box2d, lasso, scribble"),
    ("ras and ijk", {"kind": "scribble", "ijk": [(50, 50, 60)], "ras": [[0, 0, 0]]}, "exactly one of"),
    ("no points", {"kind": "scribble"}, "exactly one of"),
    ("points not a list", {"kind": "scribble", "ijk": "50,50,60"}, "must be a list"),
    ("point of two numbers", {"kind": "scribble", "ijk": [(50, 50)]}, "three numbers"),
    ("negative first", {"kind": "lasso", "ijk": [(i, j, 60) for i, j in LASSO_IJ], "axis": 2, "positive": False},
     "before any positive prompt"),
]


@pytest.mark.parametrize("case,body,words", BAD, ids=[b[0] for b in BAD])
def test_bad_shapes_are_refused_with_one_clear_line(client, case, body, words):
    sid, base = open_with_object(client)
    r = client.post(f"{base}/shapes", json=body)
    assert r.status_code == 422, (case, r.status_code, r.text)
    detail = r.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and words in detail, detail
    assert client.get(f"/api/sessions/{sid}").json()["objects"][0]["prompts"] == []
    assert client.app.state.ctx.store.get(sid).engine is None  # refused before the model ran


def test_shapes_refused_cross_site_and_without_the_token(lite_model, data_dir, tmp_path):
    token = "s3cret-token-for-shapes"
    body = {"kind": "lasso", "ijk": [(i, j, 60) for i, j in LASSO_IJ], "axis": 2}
    with make_client(lite_model, tmp_path / "state", data_dir, token=token) as c:
        auth = {"Authorization": f"Bearer {token}"}
        sid = c.post("/api/sessions", json={"image": EXAMPLE}, headers=auth).json()["session_id"]
        c.post(f"/api/sessions/{sid}/objects", json={"name": "a"}, headers=auth)
        url = f"/api/sessions/{sid}/objects/1/shapes"
        assert c.post(url, json=body).status_code == 401
        hostile = dict(auth, **{"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Origin": "http://evil.example"})
        assert c.post(url, json=body, headers=hostile).status_code == 403
        # a "simple" cross-site request (text/plain body, no preflight) is refused too
        simple = {"Origin": "http://evil.example", "Content-Type": "text/plain"}
        import json

        assert c.post(url, content=json.dumps(body), headers=simple).status_code in (401, 403)
        assert c.get(f"/api/sessions/{sid}", headers=auth).json()["objects"][0]["prompts"] == []


@pytest.mark.parametrize("euler_zyx", [(0, 0, 0), (30, 0, 0), (45, 0, 0), (122.3, -51.4, 170.4)])
def test_views_of_an_oblique_image_get_three_axes(euler_zyx):
    # Per view, the ITK axis most parallel to its normal can be the same axis for two views of a
    # strongly oblique image (the last case: the sagittal and axial normals both pick k). One
    # assignment for the whole image (as the Session API's plane names) gives three axes.
    from scipy.spatial.transform import Rotation

    from ctsam3d.inference.shapes import parse_axis
    from ctsam3d.server.shape_requests import view_axis

    d = Rotation.from_euler("zyx", euler_zyx, degrees=True).as_matrix()
    img = sitk.Image(8, 8, 8, sitk.sitkInt16)
    img.SetDirection(tuple(d.ravel()))
    axes = [view_axis(img, v) for v in ("sagittal", "coronal", "axial")]
    assert sorted(axes) == [0, 1, 2]
    assert axes == [parse_axis(v, "x", img) for v in ("sagittal", "coronal", "axial")]
