"""Session ids and the token with the MONAI Label project's own client (``monailabel.client``,
installed apart from the main environment; see ``test_monailabel_client.py``) against a real
uvicorn on loopback.

A victim and an attacker both use Slicer's default client id ``user-xyz``. The victim clicks
on a datastore image without a session (how Slicer works on server images); the attacker
computes the id the server used to derive from (image, client id) and tries to read and
delete that session, and clicks on the same image itself: it gets nothing of the victim's
and the victim's next call still gives the victim's own result. With a token the client logs
in the way the Slicer extension does and works unchanged (its multipart posts carry no
``Origin`` / ``Sec-Fetch-*`` headers, so the cross-site check lets them through).
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import SimpleITK as sitk
from server_helpers import block_voxel, same_grid, synthetic_ct
from test_monailabel_client import monailabel_client_class  # noqa: F401  (fixture)

from ctsam3d.server import ServerConfig, create_app
from ctsam3d.server.background import BackgroundServer
from ctsam3d.server.security import is_keyed_session

TOKEN = "slicer-token-for-tests"
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the client imports 'cgi'


def mask_of(path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(path))


def test_another_client_cannot_reach_a_victims_session(monailabel_client_class, lite_model, data_dir, tmp_path):
    from monailabel.client.client import MONAILabelClientException

    state = tmp_path / "state"
    app = create_app(ServerConfig(state_dir=state, data_dir=data_dir, expansion=False), model=lite_model)
    (tmp_path / "v").mkdir()
    (tmp_path / "a").mkdir()
    with BackgroundServer(app) as url:
        victim = monailabel_client_class(url, tmpdir=str(tmp_path / "v"), client_id="user-xyz")
        attacker = monailabel_client_class(url, tmpdir=str(tmp_path / "a"), client_id="user-xyz")
        fg = [[30, 14, 20]]
        first, params = victim.infer("ctsam3d", "lps.nii.gz", {"label": "liver", "foreground": fg, "background": []})
        assert params["session_id"] is None  # the workspace's id is not handed out
        victim_mask = mask_of(first)
        (sid,) = [p.name for p in (state / "sessions").iterdir()]
        assert is_keyed_session(sid)

        old = "ds-" + hashlib.sha256(b"lps.nii.gz\x00user-xyz").hexdigest()[:40]
        for guess in (old, sid):  # the derivable id, and even the real one (had it leaked)
            for call in (attacker.get_session, attacker.remove_session):
                with pytest.raises(MONAILabelClientException) as err:
                    call(guess)
                assert err.value.status_code == 404
            with pytest.raises(MONAILabelClientException):
                attacker.infer("ctsam3d", "x", {"label": "liver", "foreground": [], "background": []}, session_id=guess)
        assert "ds-" not in str(attacker.datastore()) and "ds-" not in str(attacker.info())

        # the attacker clicking on the same image gets a result of its own points only ...
        other, p2 = attacker.infer("ctsam3d", "lps.nii.gz", {"label": "liver", "foreground": [[5, 5, 5]], "background": []})
        assert p2["foreground"] == [[5, 5, 5]] and p2["session_id"] is None
        # ... and the victim's next call (all points resent, as Slicer does) is the victim's own result
        again, p3 = victim.infer("ctsam3d", "lps.nii.gz", {"label": "liver", "foreground": fg, "background": []})
        assert np.array_equal(mask_of(again), victim_mask) and victim_mask.any()
        clicks = app.state.ctx.store.get(sid).info()["objects"][0]["clicks"]
        assert clicks == [{"ijk": fg[0], "positive": True}]
        assert [p.name for p in (state / "sessions").iterdir()] == [sid]


def test_slicer_client_with_a_token(monailabel_client_class, lite_model, data_dir, tmp_path):
    from monailabel.client.client import MONAILabelClientException

    img, lab = synthetic_ct("PLI")
    volume = tmp_path / "volume.nii.gz"
    sitk.WriteImage(img, str(volume))
    app = create_app(ServerConfig(state_dir=tmp_path / "state", data_dir=data_dir, expansion=False, token=TOKEN),
                     model=lite_model)
    (tmp_path / "c").mkdir()
    with BackgroundServer(app, host="127.0.0.1") as url:
        client = monailabel_client_class(url, tmpdir=str(tmp_path / "c"), client_id="user-xyz")
        assert client.auth_enabled() is True
        with pytest.raises(MONAILabelClientException):
            client.info()  # no token yet
        with pytest.raises(MONAILabelClientException):
            client.auth_token("user", "wrong")
        client.update_auth(client.auth_token("user", TOKEN))  # what the Slicer extension does
        assert "ctsam3d" in client.info()["models"]
        sid = client.create_session(str(volume))["session_id"]
        result, params = client.infer("ctsam3d", sid, {"label": "spleen", "foreground": [list(block_voxel(img, lab))],
                                                       "background": []}, session_id=sid)
        assert same_grid(sitk.ReadImage(result), img) and params["session_id"] == sid
        result, params = client.infer("ctsam3d", "lps.nii.gz", {"label": "x", "foreground": [[30, 14, 20]], "background": []})
        assert params["label_names"] == {"x": 1} and params["session_id"] is None
        assert client.remove_session(sid)["name"] == sid
