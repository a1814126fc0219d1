"""Issue 17 hardening, in process: cross-site refusal (by the headers browsers send), the
page's sign-in cookie and one-time link, unguessable and unreachable keyed MONAI Label
workspaces, DICOM folders linking out of ``--data``, deeply nested ``params``, secrets kept
out of the access log and server paths out of error replies.

The same cases in a real browser on another origin and with the real MONAI Label client:
``test_cross_site_browser.py`` and ``test_monailabel_sessions.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import tempfile

import pytest
import httpx
import SimpleITK as sitk
from server_helpers import dicom_series, infer_params, make_client, synthetic_ct, write_case, zip_bytes

from ctsam3d.cli import serve_cmd
from ctsam3d.server import ServerConfig, create_app
from ctsam3d.server.background import BackgroundServer
from ctsam3d.server.security import cookie_name, is_keyed_session, redact

TOKEN = "s3cret-token-for-tests"
ORIGIN = "http://127.0.0.1"  # the TestClient's base URL: the server's own origin


def sessions_on_disk(state) -> list[str]:
    root = state / "sessions"
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def nifti_bytes(tmp_path, code="LPS") -> bytes:
    img, _ = synthetic_ct(code)
    path = tmp_path / f"up_{code}.nii.gz"
    sitk.WriteImage(img, str(path))
    return path.read_bytes()


# --- cross-site requests ----------------------------------------------------------------------------
# (headers a browser sends, expected status). 403 = refused before anything is read.
BROWSER_CASES = [
    ("no-cors fetch from another site", {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Origin": "http://evil.example"}, 403),
    ("form post from another site", {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Origin": "http://evil.example"}, 403),
    ("another port of this host", {"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "no-cors", "Origin": "http://127.0.0.1:9999"}, 403),
    ("sandboxed frame", {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Origin": "null"}, 403),
    ("browser without Sec-Fetch (plain-HTTP host)", {"Origin": "http://evil.example"}, 403),
    ("Origin null, no Sec-Fetch", {"Origin": "null"}, 403),
    ("Origin on another port, no Sec-Fetch", {"Origin": "http://127.0.0.1:9999"}, 403),
    ("unknown Sec-Fetch-Site value", {"Sec-Fetch-Site": "weird", "Sec-Fetch-Mode": "cors"}, 403),
    ("the page's own fetch", {"Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors", "Origin": ORIGIN}, 200),
    ("own origin, no Sec-Fetch", {"Origin": ORIGIN}, 200),
    ("own origin with default port", {"Origin": ORIGIN + ":80"}, 200),
    ("typed by the user", {"Sec-Fetch-Site": "none", "Sec-Fetch-Mode": "navigate"}, 200),
    ("not a browser (MONAI Label client, curl)", {}, 200),
]


@pytest.mark.parametrize("name,headers,expect", BROWSER_CASES, ids=[c[0] for c in BROWSER_CASES])
def test_cross_site_uploads_and_infer_are_refused(lite_model, data_dir, tmp_path, name, headers, expect):
    state = tmp_path / "state"
    with make_client(lite_model, state, data_dir) as client:
        r = client.post("/api/sessions/upload", files=[("files", ("ct.nii.gz", nifti_bytes(tmp_path)))], headers=headers)
        assert r.status_code == expect, (name, r.text)
        r2 = client.post("/infer/ctsam3d", params={"image": "lps.nii.gz"}, headers=headers,
                         data=infer_params(label="x", client_id="user-xyz", foreground=[[30, 14, 20]] * 3))
        assert r2.status_code == expect, (name, r2.text)
        if expect == 403:
            assert "cross-" in r.json()["detail"]
            assert sessions_on_disk(state) == []  # nothing planted, the model never ran
        else:
            assert len(sessions_on_disk(state)) == 2


@pytest.mark.parametrize("method,path", [
    ("DELETE", "/api/sessions/{sid}"), ("DELETE", "/session/{sid}"), ("POST", "/api/sessions/{sid}/objects"),
    ("PUT", "/session/"), ("PUT", "/datastore/label?image=lps.nii.gz"), ("PUT", "/datastore/?image=x"),
    ("POST", "/api/sessions"), ("PATCH", "/api/sessions/{sid}/objects/1"),
    ("GET", "/api/sessions/{sid}"), ("GET", "/session/{sid}"), ("GET", "/datastore/image?image=lps.nii.gz"),
])
def test_cross_site_refused_on_every_kind_of_route(client, method, path):
    sid = client.post("/api/sessions", json={"image": "lps.nii.gz"}).json()["session_id"]
    hostile = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Origin": "http://evil.example"}
    r = client.request(method, path.format(sid=sid), headers=hostile)
    assert r.status_code == 403, r.text
    assert client.get(f"/api/sessions/{sid}").status_code == 200  # untouched


def test_cross_site_navigation_to_the_page_is_allowed(client):
    """A link from another site to the page (a top-level GET) still opens it; the page holds no data."""
    nav = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
    assert client.get("/", headers=nav).status_code == 200
    # but not a cross-site subresource load of data
    sub = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"}
    assert client.get("/datastore/image", params={"image": "lps.nii.gz"}, headers=sub).status_code == 403


def test_cors_origin_opt_in_passes_the_cross_site_check(lite_model, data_dir, tmp_path):
    with make_client(lite_model, tmp_path / "state", data_dir, cors_origins=["http://viewer.example"]) as c:
        ok = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors", "Origin": "http://viewer.example"}
        r = c.post("/api/sessions", json={"image": "lps.nii.gz"}, headers=ok)
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://viewer.example"
        bad = dict(ok, Origin="http://evil.example")
        assert c.post("/api/sessions", json={"image": "lps.nii.gz"}, headers=bad).status_code == 403


# --- the page's sign-in cookie ----------------------------------------------------------------------
def test_one_time_sign_in_link_sets_an_httponly_cookie(lite_model, data_dir, tmp_path):
    with make_client(lite_model, tmp_path / "state", data_dir, token=TOKEN) as client:
        assert client.get("/api/config").status_code == 401
        code = client.app.state.ctx.logins.issue()
        r = client.get("/login", params={"code": code}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/"
        cookie = r.headers["set-cookie"]
        assert TOKEN not in cookie
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
        assert client.get("/api/config").status_code == 200  # the client keeps the cookie
        assert client.post("/api/sessions", json={"image": "lps.nii.gz"}).status_code == 200
        # the code works once
        fresh = make_client(lite_model, tmp_path / "state", data_dir, token=TOKEN)
        fresh.app.state.ctx.logins = client.app.state.ctx.logins
        r = fresh.get("/login", params={"code": code}, follow_redirects=False)
        assert r.status_code == 403 and "set-cookie" not in r.headers
        assert fresh.get("/login", params={"code": "guess"}, follow_redirects=False).status_code == 403
        # a wrong cookie value is refused
        fresh.cookies.set(cookie_name({"headers": [(b"host", b"127.0.0.1")]}), "0" * 64)
        assert fresh.get("/api/config").status_code == 401


def test_old_token_link_is_exchanged_for_the_cookie_and_cleaned(lite_model, data_dir, tmp_path):
    with make_client(lite_model, tmp_path / "state", data_dir, token=TOKEN) as client:
        r = client.get("/", params={"token": TOKEN}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/" and "HttpOnly" in r.headers["set-cookie"]
        assert client.get("/api/datastore").status_code == 200
    with make_client(lite_model, tmp_path / "state2", data_dir, token=TOKEN) as client:
        r = client.get("/", params={"token": "wrong"}, follow_redirects=False)
        assert r.status_code == 303 and "set-cookie" not in r.headers  # clean address, no cookie
        assert client.get("/api/datastore").status_code == 401


def test_login_codes_expire_and_stay_bounded():
    from ctsam3d.server.security import LoginCodes

    codes = LoginCodes(ttl=-1)
    assert codes.redeem(codes.issue()) is False  # already expired
    codes = LoginCodes(limit=3)
    issued = [codes.issue() for _ in range(5)]
    assert len(codes._codes) == 3 and not codes.redeem(issued[0]) and codes.redeem(issued[-1])


# --- keyed MONAI Label workspaces ---------------------------------------------------------------------
def test_keyed_workspace_ids_are_secret_and_unreachable(client, tmp_path):
    state = client.app.state.ctx.config.state_dir
    r = client.post("/infer/ctsam3d", params={"image": "lps.nii.gz", "output": "json"},
                    data=infer_params(label="liver", client_id="user-xyz", foreground=[[30, 14, 20]]))
    assert r.status_code == 200 and r.json()["session_id"] is None  # never handed out
    (sid,) = sessions_on_disk(state)
    assert is_keyed_session(sid)
    old = "ds-" + hashlib.sha256(b"lps.nii.gz\x00user-xyz").hexdigest()[:40]
    assert sid != old and not sid.startswith(old)
    # even knowing the real id, no session route reaches it
    for method, path in [("GET", f"/session/{sid}"), ("DELETE", f"/session/{sid}"), ("GET", f"/api/sessions/{sid}"),
                         ("DELETE", f"/api/sessions/{sid}"), ("GET", f"/api/sessions/{sid}/labels.nii.gz"),
                         ("GET", f"/api/sessions/{sid}/objects/1/mask.nii.gz"), ("POST", f"/api/sessions/{sid}/objects/1/clear"),
                         ("GET", f"/api/sessions/{sid}/view.nii.gz"), ("GET", f"/api/sessions/{sid}/image.nii.gz")]:
        assert client.request(method, path).status_code == 404, (method, path)
    r = client.post("/infer/ctsam3d", params={"session_id": sid, "output": "json"}, data=infer_params(label="liver", foreground=[]))
    assert r.status_code == 404
    for guess in (old, old + "0" * 8):
        assert client.get(f"/session/{guess}").status_code in (400, 404)
    assert sessions_on_disk(state) == [sid]
    key = state / "session-key"
    assert key.stat().st_mode & 0o777 == 0o600
    # the same (image, client) finds its workspace again; another client gets another one
    client.post("/infer/ctsam3d", params={"image": "lps.nii.gz"}, data=infer_params(label="liver", client_id="user-xyz", foreground=[[30, 14, 20], [29, 14, 20]]))
    assert sessions_on_disk(state) == [sid]
    client.post("/infer/ctsam3d", params={"image": "lps.nii.gz"}, data=infer_params(label="liver", client_id="other", foreground=[[30, 14, 20]]))
    assert len(sessions_on_disk(state)) == 2


def test_keyed_ids_differ_between_servers_and_survive_a_restart(lite_model, data_dir, tmp_path):
    ids = []
    for state in (tmp_path / "a", tmp_path / "b", tmp_path / "a"):
        with make_client(lite_model, state, data_dir) as c:
            c.post("/infer/ctsam3d", params={"image": "lps.nii.gz"}, data=infer_params(label="x", client_id="user-xyz", foreground=[[30, 14, 20]]))
        ids.append(sessions_on_disk(state))
    assert ids[0] != ids[1]  # each server has its own secret
    assert ids[2] == ids[0]  # the same server after a restart finds the workspace again


# --- DICOM folder linking out of --data ---------------------------------------------------------------
def test_dicom_folder_with_a_link_out_of_data_is_refused(lite_model, tmp_path):
    data = tmp_path / "data"
    img, _ = synthetic_ct("LPS")
    img = img[:, :, :6]
    files = dicom_series(img, data / "series")
    dicom_series(img, tmp_path / "outside")
    files[2].unlink()
    os.symlink(tmp_path / "outside" / files[2].name, files[2])  # one slice is a link out of --data
    ok = dicom_series(img, data / "ok")
    (data / ".blobs").mkdir()
    ok[2].rename(data / ".blobs" / ok[2].name)
    os.symlink(data / ".blobs" / ok[2].name, ok[2])  # a link to a file inside --data is fine
    with make_client(lite_model, tmp_path / "state", data) as client:
        assert {"series", "ok"} <= {it["id"] for it in client.get("/api/datastore").json()["items"]}
        for method, path, kw in [("POST", "/api/sessions", {"json": {"image": "series"}}),
                                 ("POST", "/infer/ctsam3d", {"params": {"image": "series"}, "data": infer_params(foreground=[[5, 5, 2]])})]:
            r = client.request(method, path, **kw)
            assert r.status_code == 400, r.text
            detail = r.json()["detail"]
            assert detail == ("image 'series': the DICOM folder holds 'slice002.dcm', a link to a file outside the data "
                              "folder; refused (copy the file into the folder instead)")
            assert str(tmp_path) not in detail
        assert sessions_on_disk(tmp_path / "state") == []
        assert client.post("/api/sessions", json={"image": "ok"}).status_code == 200


# --- nested params --------------------------------------------------------------------------------
@pytest.mark.parametrize("params", ["[" * 5000 + "]" * 5000, '{"foreground": ' + "[" * 5000 + "]" * 5000 + "}",
                                    '{"a": ' * 5000 + "1" + "}" * 5000])
def test_deeply_nested_params_are_a_400(client, params):
    for path, kw in [("/infer/ctsam3d", {"params": {"image": "lps.nii.gz"}}),
                     ("/datastore/label", {"params": {"image": "lps.nii.gz"}, "files": {"label": ("l.nii.gz", b"x")}})]:
        method = "POST" if path.startswith("/infer") else "PUT"
        r = client.request(method, path, data={"params": params}, **kw)
        assert r.status_code == 400, (path, r.status_code, r.text[:200])
        assert r.json()["detail"] == "params: JSON nested too deeply"
    assert client.get("/info/").status_code == 200


# --- secrets out of logs --------------------------------------------------------------------------
def test_access_log_holds_no_token_code_or_session_id(lite_model, data_dir, tmp_path):
    """A real uvicorn with its access log on: the lines hold no token, sign-in code or session id."""
    import uvicorn

    app = create_app(ServerConfig(state_dir=tmp_path / "state", data_dir=data_dir, expansion=False, token=TOKEN), model=lite_model)
    server = BackgroundServer(app)
    server.server = uvicorn.Server(uvicorn.Config(app, host=server.host, port=server.port, log_level="info", lifespan="off"))
    server.thread.__init__(target=server.server.run, daemon=True)
    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    with server as url:
        handler = Keep()
        logging.getLogger("uvicorn.access").addHandler(handler)
        try:
            code = app.state.ctx.logins.issue()
            s = httpx.Client(follow_redirects=True)
            assert s.get(f"{url}/login", params={"code": code}).status_code == 200  # redirected to the page
            assert s.get(f"{url}/", params={"token": TOKEN}).status_code == 200
            assert httpx.get(f"{url}/info/", params={"token": TOKEN}).status_code == 200
            sid = s.post(f"{url}/api/sessions", json={"image": "lps.nii.gz"}).json()["session_id"]
            assert s.get(f"{url}/api/sessions/{sid}").status_code == 200
            assert s.post(f"{url}/infer/ctsam3d", params={"image": "x", "session_id": sid, "output": "json"},
                          data=infer_params(label="a", foreground=[[30, 14, 20]])).status_code == 200
        finally:
            logging.getLogger("uvicorn.access").removeHandler(handler)
    text = "\n".join(lines)
    assert len(lines) >= 7, text
    assert TOKEN not in text and code not in text and sid not in text, text
    assert "token=[redacted]" in text and "code=[redacted]" in text and "/api/sessions/sid:" in text


def test_redact_table():
    assert redact("GET /?token=abc&x=1") == "GET /?token=[redacted]&x=1"
    assert redact("/login?code=Zz-9") == "/login?code=[redacted]"
    assert "AbCdEfGhIjKlMnOpQrStUvWx" not in redact("/api/sessions/AbCdEfGhIjKlMnOpQrStUvWx/labels.raw")
    assert "ds-" not in redact("/infer/m?session_id=ds-" + "0" * 48)
    assert redact("/info/") == "/info/"


@pytest.mark.filterwarnings("ignore:.*untrained weights")
def test_cli_never_prints_a_given_token(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr("uvicorn.run", lambda app, host, port, **kw: None)
    parser = argparse.ArgumentParser()
    serve_cmd.add_arguments(parser)
    args = parser.parse_args(["--token", TOKEN, "--model", "ctsam3d-lite", "--untrained", "--state-dir", str(tmp_path)])
    args.quiet = True
    serve_cmd.run(args)
    out = capsys.readouterr().out
    assert TOKEN not in out and "/login?code=" in out and not (tmp_path / "token").exists()
    monkeypatch.setenv("CTSAM3D_TOKEN", TOKEN)
    parser = argparse.ArgumentParser()
    serve_cmd.add_arguments(parser)
    assert parser.parse_args([]).token == TOKEN


# --- no server paths in replies --------------------------------------------------------------------
@pytest.fixture
def broken_data(tmp_path, lite_model):
    """A data folder (with a space in its path) holding unreadable images."""
    data = tmp_path / "my data"
    write_case(data, "ct", "LPS")
    (data / "bad.nii.gz").write_bytes(b"\x1f\x8b garbage")
    (data / "trunc.nii.gz").write_bytes((data / "ct.nii.gz").read_bytes()[:300])
    (data / "empty_series").mkdir()
    (data / "empty_series" / "a.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\0" * 64)
    with make_client(lite_model, tmp_path / "state", data) as c:
        yield c, tmp_path


def _uploads(tmp_path):
    nrrd = b"NRRD0004\ntype: short\n\n"
    return [
        ("POST", "/api/sessions/upload", {"files": [("files", ("scan one.nii.gz", b"\x1f\x8b\x08\x00garbage"))]}, "scan one.nii.gz"),
        ("POST", "/api/sessions/upload", {"files": [("files", ("x.nrrd", nrrd))]}, "x.nrrd"),
        ("PUT", "/session/", {"files": [("files", ("series.zip", zip_bytes({"a.dcm": b"x", "b.dcm": b"y"})))]}, "series.zip"),
        ("PUT", "/session/", {"files": [("files", ("a.dcm", b"x")), ("files", ("b.dcm", b"y"))]}, "'a.dcm' and 1 more"),
        ("POST", "/infer/ctsam3d", {"files": {"file": ("mine.nii.gz", b"\x1f\x8bxx")}, "data": infer_params(foreground=[[1, 1, 1]])}, "mine.nii.gz"),
        ("PUT", "/datastore/label", {"params": {"image": "ct.nii.gz"}, "files": {"label": ("lab.nii.gz", b"\x1f\x8bxx")}}, "lab.nii.gz"),
        ("PUT", "/datastore/", {"params": {"image": "u1"}, "files": {"file": ("vol.nii.gz", b"\x1f\x8bxx")}}, "vol.nii.gz"),
        ("POST", "/api/sessions", {"json": {"image": "bad.nii.gz"}}, "bad.nii.gz"),
        ("POST", "/api/sessions", {"json": {"image": "trunc.nii.gz"}}, "trunc.nii.gz"),
        ("POST", "/api/sessions", {"json": {"image": "empty_series"}}, "empty_series"),
        ("POST", "/infer/ctsam3d", {"params": {"image": "bad.nii.gz"}, "data": infer_params(foreground=[[1, 1, 1]])}, "bad.nii.gz"),
        ("GET", "/datastore/image", {"params": {"image": "empty_series"}}, "empty_series"),
    ]


def test_error_replies_name_files_as_the_client_knows_them(broken_data):
    client, tmp_path = broken_data
    server_paths = [str(tmp_path), os.path.realpath(tmp_path), tempfile.gettempdir() + "/", os.path.expanduser("~") + "/"]
    for method, path, kw, name in _uploads(tmp_path):
        r = client.request(method, path, **kw)
        assert 400 <= r.status_code < 500, (path, r.status_code, r.text)
        detail = r.json()["detail"]
        assert not any(p in detail for p in server_paths), (path, detail)
        assert "\n" not in detail
        if name:
            assert name in detail, (path, detail)
    assert sessions_on_disk(tmp_path / "state") == []
    assert client.get("/info/").status_code == 200


def test_scrubber_rules(tmp_path):
    from ctsam3d.server.security import PathScrubber

    s = PathScrubber([str(tmp_path / "data")], [str(tmp_path / "state" / "sessions"), "/tmp/ctsam3d-*"],
                     [str(tmp_path / "state"), "/tmp"])
    d = str(tmp_path)
    assert s(f'{d}/data/sub/ct.nii.gz: bad ("{d}/data/sub/ct.nii.gz")') == 'sub/ct.nii.gz: bad ("sub/ct.nii.gz")'
    assert s(f"{d}/state/sessions/abc/upload/image.nii.gz: bad", "upload 'a.nii'") == "upload 'a.nii': bad"
    assert s("/tmp/ctsam3d-label-x1/in/image.nii.gz: bad") == "the uploaded file: bad"
    assert s(f"{d}/state/session-key and {d}/database/x") == "a server file and a server file"
    assert s("image '/etc/passwd': absolute paths are not accepted") == "image '/etc/passwd': absolute paths are not accepted"
    assert s(f"{d}/data") == "the data folder"


def test_checkpoint_error_names_no_server_path(data_dir, tmp_path):
    """A model that fails to load at the first click: the reply does not show where it was looked for."""
    bad = tmp_path / "models" / "broken"
    bad.mkdir(parents=True)
    (bad / "model.safetensors").write_bytes(b"not safetensors")
    app = create_app(ServerConfig(state_dir=tmp_path / "state", data_dir=data_dir, model=str(bad), expansion=False))
    from fastapi.testclient import TestClient

    with TestClient(app, base_url="http://127.0.0.1", raise_server_exceptions=False) as client:
        sid = client.post("/api/sessions", json={"image": "lps.nii.gz"}).json()["session_id"]
        client.post(f"/api/sessions/{sid}/objects", json={"name": "a"})
        r = client.post(f"/api/sessions/{sid}/objects/1/clicks", json={"ijk": [30, 14, 20]})
        assert r.status_code == 400, r.text
        detail = r.json()["detail"]
        assert str(tmp_path) not in detail and "broken" not in detail and detail.startswith("the server's model: "), detail


def test_json_reply_shapes_unchanged(client):
    """The error shape stays ``{"detail": str}`` on refusals too (clients parse it)."""
    r = client.post("/api/sessions", json={"image": "lps.nii.gz"}, headers={"Origin": "http://evil.example"})
    assert r.status_code == 403 and set(r.json()) == {"detail"} and r.headers["content-type"] == "application/json"
    assert json.loads(r.content)["detail"].startswith("cross-origin request refused")
    shutil.rmtree(client.app.state.ctx.config.state_dir / "sessions", ignore_errors=True)
