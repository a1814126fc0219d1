"""Session storage: sessions share their image, expire when idle, respect a disk quota, and the
operator can list and clear them; a click's mask update equals a full recomputation."""

from __future__ import annotations

import gc
import os
import threading
import time

import numpy as np
import pytest
import SimpleITK as sitk
from server_helpers import make_client, synthetic_ct

from ctsam3d.cli.main import main as cli_main
from ctsam3d.server.store import IN_USE_SECONDS, MIN_EXPIRY_SECONDS, effective_expiry

IMAGE = "sub/example_ct.nii.gz"
HOUR = 3600.0


def _open(c, image=IMAGE) -> str:
    r = c.post("/api/sessions", json={"image": image})
    assert r.status_code == 200, r.text
    return r.json()["session_id"]


def _store(c):
    return c.app.state.ctx.store


def _age(store, sid: str, seconds: float) -> None:
    """Pretend session ``sid`` was last used ``seconds`` ago (on disk and in memory)."""
    then = time.time() - seconds
    os.utime(store.root / sid / "meta.json", (then, then))
    ws = store._open.get(sid)
    if ws is not None:
        ws.last_access = then


def test_sessions_on_one_image_share_it_and_write_no_copy(lite_model, data_dir, tmp_path):
    with make_client(lite_model, tmp_path / "state", data_dir) as c:
        a, b = _open(c), _open(c)
        store = _store(c)
        wa, wb = store.get(a), store.get(b)
        assert wa.image is wb.image  # one image in memory
        assert not (store.root / a / "view.nii.gz").exists() and not (store.root / b / "view.nii.gz").exists()
        assert wa.view_path == wb.view_path and wa.view_path.is_file()
        per_session = [sum(f.stat().st_size for f in (store.root / s).rglob("*") if f.is_file()) for s in (a, b)]
        assert max(per_session) < 100_000  # meta only (was a 2-55 MB image copy each)
        ra, rb = c.get(f"/api/sessions/{a}/image.nii.gz"), c.get(f"/api/sessions/{b}/image.nii.gz")
        assert ra.status_code == rb.status_code == 200 and ra.content == rb.content
        # the encoded-patch cache is the image's, shared by both model sessions
        for sid in (a, b):
            c.post(f"/api/sessions/{sid}/objects", json={"name": "o"})
            assert c.post(f"/api/sessions/{sid}/objects/1/clicks", json={"ijk": [49, 59, 51]}).status_code == 200
        assert wa.engine.session.cache is wb.engine.session.cache
        assert wa.engine.session.cache.hits >= 1  # b's click reused a's encoded patch
        # a restart reads the image again and serves the same viewer copy
    with make_client(lite_model, tmp_path / "state", data_dir) as c2:
        assert c2.get(f"/api/sessions/{a}/image.nii.gz").content == ra.content


def test_mask_updated_in_the_changed_box_equals_a_full_recomputation(client):
    """The server resamples only the box a click changed; the result must be the whole
    object's resampling, click after click (positive, negative, undo, two objects)."""
    sid = _open(client)
    ws = _store(client).get(sid)
    for name in ("a", "b"):
        client.post(f"/api/sessions/{sid}/objects", json={"name": name})
    steps = [(1, [49, 59, 51], True), (1, [56, 62, 50], True), (1, [44, 60, 52], False), (2, [64, 40, 30], True),
             (1, "undo", None), (2, [70, 44, 34], True), (1, [50, 57, 53], True)]
    for oid, where, positive in steps:
        if where == "undo":
            r = client.post(f"/api/sessions/{sid}/objects/{oid}/undo")
        else:
            r = client.post(f"/api/sessions/{sid}/objects/{oid}/clicks", json={"ijk": where, "positive": positive})
        assert r.status_code == 200, r.text
        with ws.lock:
            engine = ws.engine
            engine.select(oid)
            region, probs = engine.session.probabilities()
            full = np.zeros(ws.shape, bool)
            full[region] = probs > 0.5
            kept = ws.objects[oid].mask.to_full(ws.shape).astype(bool) if ws.objects[oid].mask else np.zeros(ws.shape, bool)
            result = sitk.GetArrayFromImage(engine.session.result()).astype(bool)
        assert np.array_equal(full, result)  # probabilities > 0.5 is the session's mask
        assert np.array_equal(kept, full), f"object {oid} after {where}: {int((kept != full).sum())} voxels differ"
        box = r.json()["box"]
        if box is not None:  # the label map the page fetches for the box holds the object there
            (z0, y0, x0), (z1, y1, x1) = box
            raw = client.get(f"/api/sessions/{sid}/labels.raw", params={"box": f"{z0},{y0},{x0},{z1},{y1},{x1}"})
            labels = np.frombuffer(raw.content, np.uint8).reshape(z1 - z0, y1 - y0, x1 - x0)
            assert np.array_equal(labels == oid, kept[z0:z1, y0:y1, x0:x1] & ((labels == oid) | (labels == 0)))


def test_idle_sessions_expire(lite_model, data_dir, tmp_path):
    with make_client(lite_model, tmp_path / "state", data_dir, session_ttl_s=2 * HOUR) as c:
        store = _store(c)
        old, recent = _open(c), _open(c)
        c.post(f"/api/sessions/{old}/objects", json={"name": "o"})
        _age(store, old, 2 * HOUR + 10)
        _age(store, recent, 2 * HOUR - 60)
        result = store.sweep()
        assert result["expired"] == 1
        assert c.get(f"/api/sessions/{old}").status_code == 404
        assert not (store.root / old).exists()
        assert c.get(f"/api/sessions/{recent}").status_code == 200  # and this access renews it
        assert store.sweep(now=time.time() + 2 * HOUR - 60)["expired"] == 0
        # the shared viewer copy stays while its image is in memory (a few recent ones are kept),
        # and goes once no session uses it and the image has left memory
        assert c.get(f"/api/sessions/{recent}/image.nii.gz").status_code == 200  # the copy is written
        store.delete(recent)
        store.sweep()
        assert len(list(store.images.root.iterdir())) == 1
        store.images._recent.clear()
        deadline = time.monotonic() + 10
        while store.images.in_memory() and time.monotonic() < deadline:  # the writer thread lets go
            gc.collect()
            time.sleep(0.05)
        store.sweep()
        assert store.images.in_memory() == [] and not any(store.images.root.iterdir())


def test_monailabel_expiry_is_honoured_and_capped(lite_model, data_dir, tmp_path):
    img, _ = synthetic_ct("LPS")
    path = tmp_path / "ct.nii.gz"
    sitk.WriteImage(img, str(path))
    with make_client(lite_model, tmp_path / "state", data_dir, session_ttl_s=HOUR) as c:
        store = _store(c)

        def put(expiry):
            with open(path, "rb") as f:
                r = c.put("/session/", params={} if expiry is None else {"expiry": expiry},
                          files={"files": ("ct.nii.gz", f, "application/gzip")})
            assert r.status_code == 200, r.text
            return r.json()

        short, capped, default = put(600), put(10 * HOUR), put(None)
        assert short["session_info"]["expiry"] == 600
        assert capped["session_info"]["expiry"] == HOUR  # MONAI Label caps at the server's maximum
        assert default["session_info"]["expiry"] == HOUR
        info = c.get(f"/session/{short['session_id']}").json()
        assert info["expiry"] == 600 and abs(info["last_access_ts"] - time.time()) < 5
        for s in (short, capped, default):
            _age(store, s["session_id"], 700)
        assert store.sweep()["expired"] == 1
        assert c.get(f"/session/{short['session_id']}").status_code == 404
        assert c.get(f"/session/{capped['session_id']}").status_code == 200
    assert effective_expiry(1, HOUR) == MIN_EXPIRY_SECONDS  # never removed within a minute of use


def test_disk_quota_removes_the_longest_idle_first_and_never_one_in_use(lite_model, data_dir, tmp_path):
    img, _ = synthetic_ct("LPS")
    path = tmp_path / "ct.nii.gz"
    sitk.WriteImage(img, str(path))
    size = path.stat().st_size
    with make_client(lite_model, tmp_path / "state", data_dir) as c:
        store = _store(c)

        def upload():
            with open(path, "rb") as f:
                r = c.post("/api/sessions/upload", files={"files": ("ct.nii.gz", f, "application/gzip")})
            return r

        sids = [upload().json()["session_id"] for _ in range(4)]
        per = max(e.bytes for e in store.sessions())
        assert per >= size
        for n, sid in enumerate(sids):  # sids[0] idle the longest
            _age(store, sid, IN_USE_SECONDS + 1000 - 100 * n)
        store.quota_bytes = int(2.5 * per)
        held = store.get(sids[0])  # the oldest, but a request is working on it right now
        _age(store, sids[0], IN_USE_SECONDS + 1000)
        locked, release = threading.Event(), threading.Event()

        def hold():
            with held.lock:
                locked.set()
                release.wait(10)

        t = threading.Thread(target=hold)
        t.start()
        locked.wait(5)
        try:
            result = store.sweep()
        finally:
            release.set()
            t.join()
        assert result["evicted"] == 2 and result["bytes"] <= store.quota_bytes
        left = {e.session_id for e in store.sessions()}
        assert left == {sids[0], sids[3]}  # sids[1], sids[2]: the longest idle not in use
        # everything in use (recent): new sessions are refused with 507, nothing is removed
        store.quota_bytes = per
        for sid in left:
            store.get(sid)
        r = upload()
        assert r.status_code == 507 and "storage is full" in r.json()["detail"]
        assert {e.session_id for e in store.sessions()} == left


def test_sessions_cli_lists_and_clears(lite_model, data_dir, tmp_path, capsys):
    state = tmp_path / "state"
    with make_client(lite_model, state, data_dir) as c:
        a, b, d = _open(c), _open(c), _open(c)
        c.post(f"/api/sessions/{a}/objects", json={"name": "liver"})
        store = _store(c)
        # the viewer copy is written by a background thread: let it finish, or it may land
        # after `clear --all` below (seen under load)
        for key in store.images.in_memory():
            shared = store.images._live.get(key)
            if shared is not None:
                assert shared.view_ready.wait(120)
        _age(store, b, 30 * HOUR)
        _age(store, d, 3 * HOUR)
        assert cli_main(["sessions", "list", "--state-dir", str(state)]) == 0
        out = capsys.readouterr().out
        assert "3 session(s)" in out and a in out and "expired" in out and "example_ct.nii.gz" in out
        assert cli_main(["sessions", "clear", "--expired", "--state-dir", str(state)]) == 0
        assert "removed 1 session(s)" in capsys.readouterr().out
        assert c.get(f"/api/sessions/{b}").status_code == 404
        assert cli_main(["sessions", "clear", "--idle", "2", "--state-dir", str(state)]) == 0
        assert c.get(f"/api/sessions/{d}").status_code == 404
        assert c.get(f"/api/sessions/{a}").status_code == 200
        assert cli_main(["sessions", "clear", "nope", "--state-dir", str(state)]) == 2
        assert "no session 'nope'" in capsys.readouterr().err
        assert cli_main(["sessions", "clear", a, "--state-dir", str(state)]) == 0
        # the running server notices: the session is gone, also from memory
        assert c.get(f"/api/sessions/{a}").status_code == 404
        assert cli_main(["sessions", "clear", "--all", "--state-dir", str(state)]) == 0
        assert not any((state / "sessions").iterdir()) and not any((state / "views").iterdir())
        # a new session on the same image after the viewer copy was removed gets it back
        e = _open(c)
        assert c.get(f"/api/sessions/{e}/image.nii.gz").status_code == 200


@pytest.mark.parametrize("argv", [["sessions", "clear"], ["sessions", "clear", "--all", "--expired"],
                                  ["sessions", "list", "--all"]])
def test_sessions_cli_refuses_ambiguous_requests(argv, tmp_path, capsys):
    assert cli_main(argv + ["--state-dir", str(tmp_path)]) == 2
    assert "ctsam3d: error:" in capsys.readouterr().err


def test_memory_stays_bounded(lite_model, data_dir, tmp_path):
    with make_client(lite_model, tmp_path / "state", data_dir, max_open_sessions=2) as c:
        store = _store(c)
        sids = [_open(c) for _ in range(5)]
        for sid in sids:
            assert c.get(f"/api/sessions/{sid}").status_code == 200
        assert len(store._open) == 2 and len(store._gates) == 64
        assert len(store.images.in_memory()) == 1  # one prepared image for all of them


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the client imports the stdlib 'cgi' module
def test_monailabel_client_session_expires(lite_model, data_dir, tmp_path, monkeypatch):
    """MONAI Label's own client: a session it creates reports the server's expiry, survives a
    sweep while fresh, and is gone for the client once idle past it."""
    from test_monailabel_client import CLIENT_DIR, INSTALL

    from ctsam3d.server import ServerConfig, create_app
    from ctsam3d.server.background import BackgroundServer

    if not (CLIENT_DIR / "monailabel" / "client" / "client.py").is_file():
        pytest.skip(f"MONAI Label client not installed in {CLIENT_DIR}; run: {INSTALL}")
    monkeypatch.syspath_prepend(str(CLIENT_DIR))
    from monailabel.client import MONAILabelClient
    from monailabel.client.client import MONAILabelClientException

    img, _ = synthetic_ct("PLI")
    volume = tmp_path / "volume.nii.gz"
    sitk.WriteImage(img, str(volume))
    app = create_app(ServerConfig(state_dir=tmp_path / "state", data_dir=data_dir, expansion=False,
                                  session_ttl_s=HOUR), model=lite_model)
    out = tmp_path / "client"
    out.mkdir()
    with BackgroundServer(app) as url:
        client = MONAILabelClient(url, tmpdir=str(out), client_id="slicer-test")
        sid = client.create_session(str(volume))["session_id"]
        info = client.get_session(sid)
        assert info["expiry"] == HOUR and info["last_access_ts"] >= info["create_ts"]
        store = app.state.ctx.store
        assert store.sweep()["expired"] == 0
        _age(store, sid, HOUR + 60)
        assert store.sweep()["expired"] == 1
        with pytest.raises(MONAILabelClientException):
            client.get_session(sid)


def test_exclusive_waits_for_running_clicks_and_holds_off_new_ones(lite_model):
    """A numpy read of a shared image's pixels holds every model-gate permit (see server/images.py)."""
    from ctsam3d.server.engine import ModelHolder

    holder = ModelHolder(lite_model, max_concurrent=2)
    holder.gate.acquire()  # a click is running
    inside, release = threading.Event(), threading.Event()

    def drain():
        with holder.exclusive():
            inside.set()
            release.wait(10)

    drainers = [threading.Thread(target=drain) for _ in range(2)]  # two at once must not deadlock
    for t in drainers:
        t.start()
    assert not inside.wait(0.3)  # waits for the running click
    holder.gate.release()
    assert inside.wait(10)
    assert not holder.gate.acquire(blocking=False)  # no click starts meanwhile
    release.set()
    for t in drainers:
        t.join(10)
        assert not t.is_alive()
    assert holder.gate.acquire(blocking=False) and holder.gate.acquire(blocking=False)
