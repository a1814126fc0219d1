"""Sessions persist on disk (reload / restart lose nothing) and users are isolated."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from server_helpers import make_client

FULL_BOX = {"box": "0,0,0,128,128,128"}
IMAGE = "sub/example_ct.nii.gz"


def labels(client, sid) -> np.ndarray:
    r = client.get(f"/api/sessions/{sid}/labels.raw", params=FULL_BOX)
    assert r.status_code == 200, r.text
    return np.frombuffer(r.content, np.uint8).reshape(128, 128, 128)


def test_restart_keeps_clicks_masks_and_undo(lite_model, data_dir, tmp_path):
    state = tmp_path / "state"
    with make_client(lite_model, state, data_dir) as c1:
        sid = c1.post("/api/sessions", json={"image": IMAGE}).json()["session_id"]
        c1.post(f"/api/sessions/{sid}/objects", json={"name": "mandible"})
        c1.post(f"/api/sessions/{sid}/objects", json={"name": "brainstem"})
        first = c1.post(f"/api/sessions/{sid}/objects/1/clicks", json={"ijk": [49, 59, 51]}).json()
        after_first = labels(c1, sid)
        c1.post(f"/api/sessions/{sid}/objects/1/clicks", json={"ijk": [40, 70, 60], "positive": False})
        c1.post(f"/api/sessions/{sid}/objects/2/clicks", json={"ijk": [64, 40, 30]})
        c1.patch(f"/api/sessions/{sid}/objects/2", json={"visible": False})
        info_before = c1.get(f"/api/sessions/{sid}").json()
        labels_before = labels(c1, sid)
    assert labels_before.any()

    with make_client(lite_model, state, data_dir) as c2:  # a new server process on the same state
        assert c2.get(f"/api/sessions/{sid}").json() == info_before
        assert np.array_equal(labels(c2, sid), labels_before)
        # the model session is rebuilt from the clicks: undo gives the first click's mask back
        undone = c2.post(f"/api/sessions/{sid}/objects/1/undo").json()
        assert undone["object"]["clicks"] == first["object"]["clicks"]
        assert undone["object"]["voxels"] == first["object"]["voxels"]
        now = labels(c2, sid)
        assert np.array_equal(now == 1, (after_first == 1) & (now != 2))
        # and a new click still works after the restart
        assert c2.post(f"/api/sessions/{sid}/objects/1/clicks", json={"ijk": [50, 60, 52]}).status_code == 200


def test_sessions_are_isolated(client):
    a = client.post("/api/sessions", json={"image": IMAGE}).json()["session_id"]
    b = client.post("/api/sessions", json={"image": IMAGE}).json()["session_id"]
    assert a != b
    client.post(f"/api/sessions/{a}/objects", json={"name": "x"})
    client.post(f"/api/sessions/{a}/objects/1/clicks", json={"ijk": [49, 59, 51]})
    assert client.get(f"/api/sessions/{b}").json()["objects"] == []
    assert not labels(client, b).any()
    assert client.post(f"/api/sessions/{b}/objects/1/clicks", json={"ijk": [49, 59, 51]}).status_code == 404


def test_concurrent_users(client):
    """Several users clicking at once: no errors, each sees only their own clicks."""
    sids = [client.post("/api/sessions", json={"image": IMAGE}).json()["session_id"] for _ in range(3)]
    for sid in sids:
        client.post(f"/api/sessions/{sid}/objects", json={"name": "o"})

    def work(n):
        sid = sids[n]
        codes = [client.post(f"/api/sessions/{sid}/objects/1/clicks", json={"ijk": [40 + n + k, 60, 50]}).status_code
                 for k in range(2)]
        return sid, codes

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(work, range(3)))
    for n, (sid, codes) in enumerate(results):
        assert codes == [200, 200]
        clicks = client.get(f"/api/sessions/{sid}").json()["objects"][0]["clicks"]
        assert [c["ijk"] for c in clicks] == [[40 + n, 60, 50], [41 + n, 60, 50]]


def test_sessions_beyond_the_memory_limit_reload_from_disk(lite_model, data_dir, tmp_path):
    with make_client(lite_model, tmp_path / "state", data_dir, max_open_sessions=1) as c:
        a = c.post("/api/sessions", json={"image": IMAGE}).json()["session_id"]
        c.post(f"/api/sessions/{a}/objects", json={"name": "o"})
        c.post(f"/api/sessions/{a}/objects/1/clicks", json={"ijk": [49, 59, 51]})
        before = labels(c, a)
        c.post("/api/sessions", json={"image": IMAGE})  # evicts a from memory
        assert np.array_equal(labels(c, a), before)
        assert c.post(f"/api/sessions/{a}/objects/1/clicks", json={"ijk": [48, 59, 51]}).status_code == 200


def test_undo_beyond_the_model_sessions_history_replays(client, monkeypatch):
    """The model session keeps few undo steps; deeper undos replay the remaining clicks."""
    monkeypatch.setattr("ctsam3d.server.engine.UNDO_DEPTH", 1)
    sid = client.post("/api/sessions", json={"image": IMAGE}).json()["session_id"]
    client.post(f"/api/sessions/{sid}/objects", json={"name": "o"})
    client.post(f"/api/sessions/{sid}/objects/1/clicks", json={"ijk": [49, 59, 51]})
    after_first = labels(client, sid)
    for ijk in ([45, 60, 50], [52, 58, 53]):
        client.post(f"/api/sessions/{sid}/objects/1/clicks", json={"ijk": ijk, "positive": False})
    client.post(f"/api/sessions/{sid}/objects/1/undo")
    undone = client.post(f"/api/sessions/{sid}/objects/1/undo").json()
    assert [c["ijk"] for c in undone["object"]["clicks"]] == [[49, 59, 51]]
    assert np.array_equal(labels(client, sid), after_first)


def test_object_ids_are_reused_safely_at_the_limit(lite_model, data_dir, tmp_path):
    with make_client(lite_model, tmp_path / "state", data_dir, max_objects=2) as c:
        sid = c.post("/api/sessions", json={"image": IMAGE}).json()["session_id"]
        for name in ("a", "b"):
            c.post(f"/api/sessions/{sid}/objects", json={"name": name})
        c.post(f"/api/sessions/{sid}/objects/1/clicks", json={"ijk": [49, 59, 51]})
        assert c.post(f"/api/sessions/{sid}/objects", json={"name": "c"}).status_code == 400  # full
        c.delete(f"/api/sessions/{sid}/objects/1")
        reused = c.post(f"/api/sessions/{sid}/objects", json={"name": "c"}).json()
        assert reused["id"] == 1 and reused["clicks"] == []
        r = c.post(f"/api/sessions/{sid}/objects/1/clicks", json={"ijk": [40, 60, 50]})
        assert r.status_code == 200 and len(r.json()["object"]["clicks"]) == 1
