"""Cross-site attacks in a real headless browser (Debian ``chromium`` driven by Playwright).

Two servers on loopback: ctsam3d on ``127.0.0.1:P`` and an attacker's page on port ``Q``,
opened as ``http://localhost:Q`` (another site) and as ``http://127.0.0.1:Q`` (another origin
of the same site: browsers call other ports of one host "same-site"). The page does what
issue 17 found working: a ``no-cors`` multipart ``fetch`` uploading a CT to
``/api/sessions/upload``, a ``no-cors`` fetch and an auto-submitted
``<form enctype=multipart/form-data>`` posting 40 points to ``/infer/ctsam3d?image=...``, a
form uploading a file, and, for the session id a MONAI Label user got (default client id
``user-xyz``), it computes the id the server used to derive (sha256 of image and client id)
and tries to read, clear and delete that session.

Checked on what the server received (every request is recorded with its status): each
attacker request arrived and was refused with 403 (or never left the browser: a DELETE needs
a CORS preflight, which gets no grant), nothing is on disk afterwards but the victim's
workspace, whose clicks are unchanged. Controls: the same page against a server with the
cross-site check switched off plants a session and runs the model (so the test sees an attack
that works), and the page's own same-origin requests go through. With a token, the page's
one-time sign-in link sets an HttpOnly cookie, the page works from it without any change to
its JavaScript, and a same-site attacker page, whose requests do carry that cookie, is still
refused.
"""

from __future__ import annotations

import base64
import json
import time

import httpx
import pytest
import SimpleITK as sitk
from server_helpers import infer_params, synthetic_ct
from test_browser import CHROMIUM_FLAGS, _browser_path

from ctsam3d.server import ServerConfig, create_app
from ctsam3d.server import security
from ctsam3d.server.app import niivue_module_path
from ctsam3d.server.background import BackgroundServer

N_POINTS = 40
TOKEN = "browser-test-token-1234"
ATTACK_HTML = """<!doctype html><html><body><iframe name="sink1"></iframe><iframe name="sink2"></iframe><script>
const P = JSON.parse(decodeURIComponent(location.hash.slice(1)));
async function hex(buf) { return [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, "0")).join(""); }
async function attack() {
  const t = P.target, out = {};
  const nii = Uint8Array.from(atob(P.nii), (c) => c.charCodeAt(0));
  const points = JSON.stringify({label: "planted", client_id: "user-xyz", foreground: P.points, background: []});
  // 1. no-cors multipart fetch: plant a session
  const up = new FormData(); up.append("files", new Blob([nii]), "ct.nii.gz");
  out.upload = await fetch(t + "/api/sessions/upload", {method: "POST", mode: "no-cors", credentials: "include", body: up}).then((r) => r.type, (e) => "error: " + e);
  // 2. no-cors multipart fetch: make the model run 40 points
  const inf = new FormData(); inf.append("params", points);
  out.infer = await fetch(t + "/infer/ctsam3d?image=lps.nii.gz", {method: "POST", mode: "no-cors", credentials: "include", body: inf}).then((r) => r.type, (e) => "error: " + e);
  // 3. the victim's session id as the server used to derive it
  const old = "ds-" + (await hex(await crypto.subtle.digest("SHA-256", new TextEncoder().encode("lps.nii.gz\\u0000user-xyz")))).slice(0, 40);
  out.old_id = old;
  out.read = await fetch(t + "/api/sessions/" + old, {mode: "no-cors", credentials: "include"}).then((r) => r.type, (e) => "error: " + e);
  out.delete = await fetch(t + "/session/" + old, {method: "DELETE", credentials: "include"}).then((r) => r.status, (e) => "error: " + e);
  const clear = new FormData();
  out.clear = await fetch(t + "/api/sessions/" + old + "/objects/1/clear", {method: "POST", mode: "no-cors", credentials: "include", body: clear}).then((r) => r.type, (e) => "error: " + e);
  // 4. auto-submitted multipart forms: infer with 40 points, and a file upload
  const f1 = document.createElement("form");
  f1.method = "POST"; f1.enctype = "multipart/form-data"; f1.target = "sink1";
  f1.action = t + "/infer/ctsam3d?image=lps.nii.gz";
  const field = document.createElement("input"); field.type = "hidden"; field.name = "params"; field.value = points;
  f1.appendChild(field); document.body.appendChild(f1); f1.submit();
  const f2 = document.createElement("form");
  f2.method = "POST"; f2.enctype = "multipart/form-data"; f2.target = "sink2";
  f2.action = t + "/api/sessions/upload";
  const file = document.createElement("input"); file.type = "file"; file.name = "files";
  const dt = new DataTransfer(); dt.items.add(new File([nii], "ct.nii.gz")); file.files = dt.files;
  f2.appendChild(file); document.body.appendChild(f2); f2.submit();
  window.result = out;
}
attack().catch((e) => { window.result = {error: String(e)}; });
</script></body></html>"""


def attacker_app():
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body = ATTACK_HTML.encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/html"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return app


class Recorder:
    """ASGI wrapper keeping (method, path, query, status, origin, sec-fetch-site, sec-fetch-mode, has cookie)."""

    def __init__(self, app):
        self.app = app
        self.seen: list[dict] = []

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode().lower(): v.decode("latin-1") for k, v in scope["headers"]}
        entry = {"method": scope["method"], "path": scope["path"], "query": scope["query_string"].decode(),
                 "origin": headers.get("origin"), "site": headers.get("sec-fetch-site"),
                 "mode": headers.get("sec-fetch-mode"), "cookie": "ctsam3d_auth" in headers.get("cookie", ""), "status": None}
        self.seen.append(entry)

        async def recording_send(message):
            if message["type"] == "http.response.start":
                entry["status"] = message["status"]
            await send(message)

        return await self.app(scope, receive, recording_send)



@pytest.fixture(scope="module")
def browser():
    path = _browser_path()
    if path is None:
        pytest.skip("no chromium installed (Debian: apt-get update && apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (no 'playwright install' needed)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def nii_b64(tmp_path_factory) -> str:
    img, _ = synthetic_ct("LPS")
    path = tmp_path_factory.mktemp("attack") / "ct.nii.gz"
    sitk.WriteImage(img, str(path))
    return base64.b64encode(path.read_bytes()).decode()


def sessions_on_disk(state) -> list[str]:
    root = state / "sessions"
    return sorted(p.name for p in root.iterdir()) if root.is_dir() else []


def run_attack(browser, page_origin: str, target: str, nii: str, rec: Recorder, context=None):
    """Open the attacker's page at ``page_origin``; return what the page saw and the requests of
    it that reached the server (all 7 of them: 4 fetches, the DELETE's preflight, 2 forms; the
    forms are not awaited by the page, so this waits for them on the server side)."""
    start = len(rec.seen)
    ctx = context or browser.new_context()
    page = ctx.new_page()
    params = {"target": target, "nii": nii, "points": [[30 - i % 5, 14, 20 - i // 5 % 5] for i in range(N_POINTS)]}
    page.goto(f"{page_origin}/attack#" + json.dumps(params))
    page.wait_for_function("window.result !== undefined", timeout=60_000)
    result = page.evaluate("window.result")
    deadline = time.monotonic() + 120
    while len([e for e in rec.seen[start:] if e["status"] is not None]) < 7:
        assert time.monotonic() < deadline, (rec.seen[start:], result)
        time.sleep(0.1)
    time.sleep(0.5)  # anything else in flight lands too
    page.close()
    if context is None:
        ctx.close()
    return result, rec.seen[start:]


def test_cross_site_pages_cannot_use_the_server(browser, nii_b64, lite_model, data_dir, tmp_path):
    state = tmp_path / "state"
    app = create_app(ServerConfig(state_dir=state, data_dir=data_dir, expansion=False), model=lite_model)
    rec = Recorder(app)
    with BackgroundServer(rec) as target, BackgroundServer(attacker_app()) as evil:
        # the victim: a MONAI Label user (default client id) clicking on a datastore image
        r = httpx.post(f"{target}/infer/ctsam3d", params={"image": "lps.nii.gz", "output": "json"},
                       data=infer_params(label="liver", client_id="user-xyz", foreground=[[30, 14, 20]]))
        assert r.status_code == 200 and r.json()["session_id"] is None
        (victim,) = sessions_on_disk(state)
        victim_meta = (state / "sessions" / victim / "meta.json").read_text()

        port = evil.rsplit(":", 1)[1]
        for origin, site in ((f"http://localhost:{port}", "cross-site"), (f"http://127.0.0.1:{port}", "same-site")):
            result, reached = run_attack(browser, origin, target, nii_b64, rec)
            assert "error" not in result, result
            assert result["upload"] == "opaque" and result["infer"] == "opaque"  # the browser did send them
            assert str(result["delete"]).startswith("error")  # DELETE needs a preflight: no grant
            assert len(reached) == 7, reached
            posts = [(e["method"], e["path"], e["mode"]) for e in reached if e["method"] == "POST"]
            assert ("POST", "/api/sessions/upload", "no-cors") in posts and ("POST", "/api/sessions/upload", "navigate") in posts
            assert ("POST", "/infer/ctsam3d", "no-cors") in posts and ("POST", "/infer/ctsam3d", "navigate") in posts
            for e in reached:
                assert e["site"] == site, e
                if e["method"] == "OPTIONS":  # preflight of the DELETE: nothing granted, nothing done
                    assert e["status"] >= 400, e
                else:
                    assert e["status"] == 403, e
            assert not any(e["method"] == "DELETE" for e in reached)

        # nothing planted, the model did not run for the attacker, the victim's work is intact
        assert sessions_on_disk(state) == [victim]
        assert (state / "sessions" / victim / "meta.json").read_text() == victim_meta
        assert not (state / "datastore" / "images").exists()
        assert result["old_id"] != victim

        # control: the page's own origin may use the API (same-origin fetches from a page of the server)
        page = browser.new_page()
        page.goto(f"{target}/static/style.css")
        own = page.evaluate("""async (nii) => {
            const bytes = Uint8Array.from(atob(nii), (c) => c.charCodeAt(0));
            const fd = new FormData(); fd.append("files", new Blob([bytes]), "ct.nii.gz");
            const r = await fetch("/api/sessions/upload", {method: "POST", body: fd});
            const sid = (await r.json()).session_id;
            const d = await fetch("/api/sessions/" + sid, {method: "DELETE"});
            return [r.status, d.status];
        }""", nii_b64)
        page.close()
        assert own == [200, 200]
        assert rec.seen[-1]["site"] == "same-origin"


def test_control_the_same_page_works_against_an_unprotected_server(browser, nii_b64, lite_model, data_dir, tmp_path, monkeypatch):
    """Without the cross-site check the page plants a session and runs the model: the attack is real."""
    monkeypatch.setattr(security, "cross_site_refusal", lambda scope, allowed=(): None)
    state = tmp_path / "state"
    app = create_app(ServerConfig(state_dir=state, data_dir=data_dir, expansion=False), model=lite_model)
    rec = Recorder(app)
    with BackgroundServer(rec) as target, BackgroundServer(attacker_app()) as evil:
        origin = f"http://localhost:{evil.rsplit(':', 1)[1]}"
        _, reached = run_attack(browser, origin, target, nii_b64, rec)
        statuses = {(e["method"], e["path"], e["mode"]): e["status"] for e in reached}
    assert statuses[("POST", "/api/sessions/upload", "no-cors")] == 200
    assert statuses[("POST", "/infer/ctsam3d", "navigate")] == 200
    planted = [s for s in sessions_on_disk(state) if not s.startswith("ds-")]
    assert len(planted) == 2  # the fetch and the form upload each left a session on disk
    keyed = [s for s in sessions_on_disk(state) if s.startswith("ds-")]
    meta = json.loads((state / "sessions" / keyed[0] / "meta.json").read_text())
    assert len(meta["objects"][0]["clicks"]) == N_POINTS  # the model ran all 40 points


def test_sign_in_cookie_in_the_browser_and_same_site_attack_with_it(browser, nii_b64, lite_model, data_dir, tmp_path):
    state = tmp_path / "state"
    app = create_app(ServerConfig(state_dir=state, data_dir=data_dir, expansion=False, token=TOKEN), model=lite_model)
    rec = Recorder(app)
    with BackgroundServer(rec) as target, BackgroundServer(attacker_app()) as evil:
        ctx = browser.new_context()
        page = ctx.new_page()
        code = app.state.ctx.logins.issue()
        page.goto(f"{target}/login?code={code}")
        assert page.url == f"{target}/"  # redirected to the clean address: no code, no token
        assert page.evaluate("document.cookie") == ""  # HttpOnly: scripts cannot read it
        if niivue_module_path() is not None:  # the unchanged page runs from the cookie alone
            page.wait_for_function("document.body.dataset.ready === '1'", timeout=180_000)
            assert page.evaluate("document.getElementById('token-box').hidden") is True
        status = page.evaluate("async () => (await fetch('/api/config')).status")
        assert status == 200
        # the code was used up: a second browser gets no cookie from it
        other = browser.new_context()
        p2 = other.new_page()
        p2.goto(f"{target}/login?code={code}")
        assert p2.evaluate("async () => (await fetch('/api/config')).status") == 401
        other.close()

        # a page on another port of this host is "same-site": the browser sends the Strict cookie along,
        # and the cross-site check refuses it anyway
        origin = f"http://127.0.0.1:{evil.rsplit(':', 1)[1]}"
        _, reached = run_attack(browser, origin, target, nii_b64, rec, context=ctx)
        assert len(reached) == 7 and all(e["status"] >= 400 for e in reached), reached
        posts = [e for e in reached if e["method"] == "POST"]
        assert len(posts) == 5 and all(e["cookie"] and e["status"] == 403 for e in posts), reached
        ctx.close()
    assert sessions_on_disk(state) == []
