"""Security: path traversal in every parameter naming a file, upload limits and content checks,
the token on a non-loopback bind, the Host check, CORS, and bad clicks / params. Every case is
a clean 4xx with a message, and the server keeps working afterwards."""

from __future__ import annotations

import argparse
import io
import json
import os

import pytest
import SimpleITK as sitk
from server_helpers import infer_params, make_client, synthetic_ct, write_case, zip_bytes

from ctsam3d.cli import serve_cmd

TOKEN = "s3cret-token-for-tests"


@pytest.fixture
def jail(tmp_path, lite_model):
    """A data folder with a secret file beside it and symlinks pointing out of it."""
    data = tmp_path / "data"
    write_case(data, "ct", "LPS")
    write_case(tmp_path / "outside", "secret", "LPS")
    os.symlink(tmp_path / "outside" / "secret.nii.gz", data / "link_out.nii.gz")
    os.symlink(tmp_path / "outside", data / "dir_out")
    with make_client(lite_model, tmp_path / "state", data) as c:
        yield c, tmp_path


BAD_IMAGE_IDS = [
    "../outside/secret.nii.gz",
    "/etc/passwd",
    str("/" + "tmp"),
    "ct.nii.gz/../../outside/secret.nii.gz",
    "link_out.nii.gz",
    "dir_out/secret.nii.gz",
    "..",
    "",
    "nope.nii.gz",
    "ct.nii.gz\x00.png",
]


def healthy(client):
    assert client.get("/info/").status_code == 200


@pytest.mark.parametrize("image_id", BAD_IMAGE_IDS)
def test_traversal_in_image_ids(jail, image_id):
    client, _ = jail
    calls = [
        ("POST", "/api/sessions", {"json": {"image": image_id}}),
        ("GET", "/datastore/image", {"params": {"image": image_id}}),
        ("GET", "/datastore/label", {"params": {"label": image_id, "tag": "final"}}),
        ("POST", "/infer/ctsam3d", {"params": {"image": image_id}, "data": infer_params(foreground=[[1, 1, 1]])}),
    ]
    for method, path, kw in calls:
        r = client.request(method, path, **kw)
        assert r.status_code in (400, 404, 422), (path, r.status_code, r.text)
        assert r.json()["detail"], path
    assert not (jail[1] / "state" / "sessions").exists() or not any((jail[1] / "state" / "sessions").iterdir())
    healthy(client)


def test_listing_does_not_follow_symlinks_out(jail):
    client, _ = jail
    ids = {it["id"] for it in client.get("/api/datastore").json()["items"]}
    assert ids == {"ct.nii.gz", "ct_label.nii.gz"}


@pytest.mark.parametrize("tag", ["../../evil", "a/b", "..", "", "x" * 100])
def test_traversal_in_label_tag(jail, tag):
    client, tmp_path = jail
    _, lab = synthetic_ct("LPS")
    path = tmp_path / "lab.nii.gz"
    sitk.WriteImage(lab, str(path))
    with open(path, "rb") as f:
        r = client.put("/datastore/label", params={"image": "ct.nii.gz", "tag": tag}, files={"label": ("l.nii.gz", f)})
    assert r.status_code == 400, r.text
    assert not list(tmp_path.rglob("evil*"))


@pytest.mark.parametrize("session_id", ["..", "../../etc", "a/../../b", "abc", "x" * 65, "AAAAAAAAAA.AAAAAAA"])
def test_traversal_in_session_ids(jail, session_id):
    client, _ = jail
    raw = session_id.replace(".", "%2E").replace("/", "%2F")  # as sent on the wire, not normalised by the client
    for path in (f"/api/sessions/{raw}", f"/session/{raw}", f"/api/sessions/{raw}/image.nii.gz"):
        r = client.get(path)
        assert r.status_code in (400, 404), (path, r.status_code)
    r = client.post("/infer/ctsam3d", params={"image": "ct.nii.gz", "session_id": session_id},
                    data=infer_params(foreground=[[1, 1, 1]]))
    assert r.status_code in (400, 404)
    healthy(client)


def test_upload_names_never_reach_the_filesystem(jail):
    client, tmp_path = jail
    img, _ = synthetic_ct("LPS")
    path = tmp_path / "up.nii.gz"
    sitk.WriteImage(img, str(path))
    for name in ("../../evil.nii.gz", "/tmp/evil2.nii.gz", "..\\..\\evil3.nii.gz"):
        with open(path, "rb") as f:
            r = client.post("/api/sessions/upload", files=[("files", (name, f))])
        assert r.status_code == 200, r.text
    assert not [p for p in tmp_path.rglob("evil*")]
    stored = sorted(p.name for p in (tmp_path / "state" / "sessions").rglob("image*"))
    assert stored == ["image.nii.gz"] * 3


@pytest.mark.parametrize("filename,content,expect", [
    ("ct.nii.gz", b"\x1f\x8b not really gzip", 400),
    ("ct.exe", b"MZ....", 400),
    ("ct.nii.gz", b"", 400),
    ("ct.nrrd", b"NRRD0004\ntype: short\ndimension: 3\nsizes: 2 2 2\nencoding: raw\ndata file: ../../outside/secret.raw\n\n", 400),
    ("ct.mha", b"ObjectType = Image\nNDims = 3\nDimSize = 2 2 2\nElementType = MET_SHORT\nElementDataFile = /etc/passwd\n", 400),
    ("ct.zip", b"PK\x03\x04 broken", 400),
    ("ct.zip", zip_bytes({"a/": b""}) if False else zip_bytes({".hidden": b"x"}), 400),
])
def test_bad_uploads_are_refused_and_leave_nothing(jail, filename, content, expect):
    client, tmp_path = jail
    r = client.post("/api/sessions/upload", files=[("files", (filename, io.BytesIO(content)))])
    assert r.status_code == expect, r.text
    assert r.json()["detail"]
    sessions = tmp_path / "state" / "sessions"
    assert not sessions.exists() or not any(sessions.iterdir())
    healthy(client)


def test_zipped_volume_upload(jail):
    client, tmp_path = jail
    img, _ = synthetic_ct("PLI")
    path = tmp_path / "v.nii.gz"
    sitk.WriteImage(img, str(path))
    r = client.put("/session/", files=[("files", ("series.zip", zip_bytes({"../../x/v.nii.gz": path.read_bytes()})))])
    assert r.status_code == 200, r.text
    assert r.json()["session_info"]["meta"]["image"]["orientation"] == "PLI"


def test_oversized_upload_is_refused(lite_model, tmp_path):
    with make_client(lite_model, tmp_path / "state", None, max_upload_mb=0.01) as client:
        big = b"\0" * 50_000
        r = client.post("/api/sessions/upload", files=[("files", ("ct.nii.gz", big))])
        assert r.status_code == 413 and "limit" in r.json()["detail"]
        # a multipart body sent in chunks, without Content-Length: size unknown, refused
        body = (b'--xx\r\nContent-Disposition: form-data; name="files"; filename="ct.nii.gz"\r\n\r\n'
                + b"\0" * 80_000 + b"\r\n--xx--\r\n")

        def chunks():
            for i in range(0, len(body), 4096):
                yield body[i : i + 4096]

        r = client.put("/session/", content=chunks(), headers={"Content-Type": "multipart/form-data; boundary=xx"})
        assert "content-length" not in r.request.headers
        assert r.status_code == 411
        assert not (tmp_path / "state" / "sessions").exists() or not any((tmp_path / "state" / "sessions").iterdir())
        healthy(client)


def test_token_is_required_on_every_api_route(lite_model, data_dir, tmp_path):
    with make_client(lite_model, tmp_path / "state", data_dir, token=TOKEN) as client:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        schema = client.get("/openapi.json", headers=auth).json()
        routes = [(m.upper(), p) for p, ops in schema["paths"].items() for m in ops]
        assert len(routes) >= 20
        for method, path in routes:
            url = path.replace("{session_id}", "AAAAAAAAAAAAAAAA").replace("{oid}", "1").replace("{model}", "ctsam3d")
            url = url.replace("{rest}", "x")
            if path.startswith("/auth/") and path != "/auth/token/valid":
                continue  # discovery and login are open by design
            assert client.request(method, url).status_code == 401, (method, url)
            assert client.request(method, url, headers={"Authorization": "Bearer wrong-token"}).status_code == 403, (method, url)
        assert client.get("/info/", headers=auth).status_code == 200
        assert client.get("/info/", params={"token": TOKEN}).status_code == 200
        assert client.get("/auth/token/valid", headers=auth).status_code == 200
        # the page itself carries no data and loads without the token
        assert client.get("/").status_code == 200 and client.get("/static/app.js").status_code == 200
        # MONAI Label login: /auth/ says enabled; the token is the password
        assert client.get("/auth/").json()["enabled"] is True
        assert client.post("/auth/token", data={"username": "x", "password": "nope"}).status_code == 401
        token = client.post("/auth/token", data={"username": "x", "password": TOKEN}).json()
        assert token == {"access_token": TOKEN, "token_type": "Bearer"}


@pytest.mark.filterwarnings("ignore:.*untrained weights")
def test_cli_generates_a_token_for_a_non_loopback_bind(monkeypatch, capsys, tmp_path):
    seen = {}
    monkeypatch.setattr("uvicorn.run", lambda app, host, port, **kw: seen.update(app=app, host=host, port=port))
    parser = argparse.ArgumentParser()
    serve_cmd.add_arguments(parser)
    args = parser.parse_args(["--host", "0.0.0.0", "--port", "8123", "--model", "ctsam3d-lite", "--untrained", "--state-dir", str(tmp_path)])
    args.quiet = True
    assert serve_cmd.run(args) == 0
    token = seen["app"].state.ctx.config.token
    out = capsys.readouterr().out
    assert token and len(token) >= 24 and token not in out  # never printed: written to <state>/token
    assert (tmp_path / "token").read_text().strip() == token
    assert (tmp_path / "token").stat().st_mode & 0o777 == 0o600
    assert "/login?code=" in out
    args = parser.parse_args(["--host", "127.0.0.1", "--model", "ctsam3d-lite", "--untrained", "--state-dir", str(tmp_path)])
    args.quiet = True
    serve_cmd.run(args)
    assert seen["app"].state.ctx.config.token is None


@pytest.mark.parametrize("host,loopback", [("127.0.0.1", True), ("localhost", True), ("::1", True), ("127.5.0.1", True),
                                           ("0.0.0.0", False), ("192.168.1.4", False), ("::", False), ("example.org", False)])
def test_is_loopback(host, loopback):
    from ctsam3d.server import is_loopback

    assert is_loopback(host) is loopback


def test_foreign_host_header_is_refused_without_token(client):
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 cannot use a token-less server."""
    assert client.get("/info/", headers={"Host": "evil.example:8000"}).status_code == 400
    assert client.get("/info/", headers={"Host": "localhost:8000"}).status_code == 200


def test_cors_closed_by_default_and_opt_in(client, lite_model, tmp_path):
    r = client.options("/info/", headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "GET"})
    assert "access-control-allow-origin" not in r.headers
    assert "access-control-allow-origin" not in client.get("/info/", headers={"Origin": "http://evil.example"}).headers
    with make_client(lite_model, tmp_path / "s2", None, cors_origins=["http://viewer.example"]) as c2:
        r = c2.get("/info/", headers={"Origin": "http://viewer.example"})
        assert r.headers["access-control-allow-origin"] == "http://viewer.example"


@pytest.mark.parametrize("params", ["{not json", "[1, 2]", '"text"', '{"foreground": 3}', '{"foreground": [[1, 2]]}',
                                    '{"foreground": [[1.5, 2, 3]]}', '{"foreground": [[NaN, 1, 1]]}',
                                    '{"foreground": [[500, 1, 1]]}', '{"foreground": [[-1, 1, 1]]}',
                                    '{"background": [[5, 5, 5]]}', '{"label": 7, "foreground": [[5, 5, 5]]}'])
def test_bad_infer_params(client, params):
    r = client.post("/infer/ctsam3d", params={"image": "lps.nii.gz"}, data={"params": params})
    assert 400 <= r.status_code < 500, (params, r.status_code, r.text)
    assert isinstance(r.json()["detail"], str) and r.json()["detail"]
    healthy(client)
    ok = client.post("/infer/ctsam3d", params={"image": "lps.nii.gz"}, data=infer_params(label="ok", foreground=[[30, 14, 20]]))
    assert ok.status_code == 200


@pytest.mark.parametrize("body", [
    {"ras": [1e6, 0, 0]}, {"ijk": [-1, 0, 0]}, {"ijk": [40, 0, 0]}, {"ijk": [1, 2]}, {"ras": [1, 2, 3], "ijk": [1, 2, 3]},
    {}, {"ras": ["a", 1, 2]}, {"ijk": [1.5, 2, 3]}, {"positive": False, "ijk": [5, 5, 5]},
])
def test_bad_web_clicks(client, body):
    sid = client.post("/api/sessions", json={"image": "lps.nii.gz"}).json()["session_id"]
    client.post(f"/api/sessions/{sid}/objects", json={"name": "a"})
    r = client.post(f"/api/sessions/{sid}/objects/1/clicks", json=body)
    assert 400 <= r.status_code < 500, (body, r.status_code, r.text)
    assert r.json()["detail"]
    assert client.get(f"/api/sessions/{sid}").json()["objects"][0]["clicks"] == []
    assert client.post(f"/api/sessions/{sid}/objects/1/clicks", json={"ijk": [30, 14, 20]}).status_code == 200


def test_nan_click_in_json_body(client):
    sid = client.post("/api/sessions", json={"image": "lps.nii.gz"}).json()["session_id"]
    client.post(f"/api/sessions/{sid}/objects", json={"name": "a"})
    r = client.post(f"/api/sessions/{sid}/objects/1/clicks", content=b'{"ras": [NaN, 1, 2]}',
                    headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500


@pytest.mark.parametrize("box", ["0,0,0,0,1,1", "0,0,0,33,36,40", "a,b", "0,0,0,1,1", "-1,0,0,1,1,1"])
def test_bad_label_boxes(client, box):
    sid = client.post("/api/sessions", json={"image": "lps.nii.gz"}).json()["session_id"]
    r = client.get(f"/api/sessions/{sid}/labels.raw", params={"box": box})
    assert r.status_code == 400 and r.json()["detail"]


def test_error_details_are_single_lines(client):
    r = client.post("/infer/ctsam3d", params={"image": "lps.nii.gz"}, data={"params": "{oops"})
    detail = r.json()["detail"]
    assert "\n" not in detail and "params" in detail
    assert json.loads(json.dumps(detail)) == detail
