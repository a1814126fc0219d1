"""The server names its model, refuses untrained presets and images not in HU, and says when a
click's result is empty (issue 19)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from server_helpers import make_client, synthetic_ct

from ctsam3d.errors import CheckpointError
from ctsam3d.server import ServerConfig


def test_config_names_the_model(client, lite_model):
    cfg = client.get("/api/config").json()
    assert cfg["model_name"] == lite_model.model_name == "ctsam3d-lite (untrained)"
    assert cfg["model_trained_on"].startswith("nothing")


def test_default_model_named_without_loading(tmp_path, data_dir):
    from ctsam3d.hub.registry import default_model

    entry = default_model()
    if entry is None:
        pytest.skip("no bundled weights in this checkout")
    with make_client(None, tmp_path / "state", data_dir) as c:
        cfg = c.get("/api/config").json()
        assert c.app.state.ctx.models._model is None  # not loaded for the page header
    assert cfg["model_name"] == entry.name and cfg["model_trained_on"] == entry.anatomy


def test_untrained_preset_refused_unless_allowed(tmp_path):
    with pytest.raises(CheckpointError, match="untrained preset.*--untrained"):
        ServerConfig(state_dir=tmp_path, model="ctsam3d-lite")
    assert ServerConfig(state_dir=tmp_path, model="ctsam3d-lite", allow_untrained=True).allow_untrained


@pytest.mark.parametrize("shift, scale, message", [(1024, 1, "no negative intensities"),
                                                   (1024, 1 / 4095, "look normalised")])
def test_upload_not_in_hu_refused(client, tmp_path, shift, scale, message):
    img, _ = synthetic_ct("LPS")
    raw = sitk.Cast((sitk.Cast(img, sitk.sitkFloat32) + shift) * scale, sitk.sitkFloat32)
    path = tmp_path / "raw.nii.gz"
    sitk.WriteImage(raw, str(path))
    with open(path, "rb") as f:
        r = client.post("/api/sessions/upload", files=[("files", ("scan.nii.gz", f))])
    assert r.status_code == 400 and message in r.json()["detail"] and "scan.nii.gz" in r.json()["detail"]
    assert "Hounsfield" in r.json()["detail"]
    state = client.app.state.ctx.config.state_dir / "sessions"
    assert not [p for p in state.iterdir() if not p.name.startswith(".")] if state.is_dir() else True


def test_empty_result_says_so(client, monkeypatch):
    from ctsam3d.server.workspace import Change, SegObject, Workspace

    sid = client.post("/api/sessions", json={"image": "lps.nii.gz"}).json()["session_id"]
    oid = client.post(f"/api/sessions/{sid}/objects", json={"name": "liver"}).json()["id"]
    monkeypatch.setattr(Workspace, "click", lambda self, oid, ijk, positive: Change(None, SegObject(oid, "liver", (1, 2, 3)), 1.0))
    r = client.post(f"/api/sessions/{sid}/objects/{oid}/clicks", json={"ijk": [10, 10, 10], "positive": True})
    assert r.status_code == 200 and r.json()["warning"].startswith("Empty result: the model (ctsam3d-lite (untrained)")


@pytest.mark.parametrize(
    ("config", "refine", "mirror"),
    [({}, True, True), ({"refine": False}, False, True), ({"refine": True}, True, True), ({"mirror": False}, True, False)],
)
def test_server_sessions_follow_the_refine_and_mirror_settings(tmp_path, data_dir, lite_model, config, refine, mirror):
    """``ctsam3d serve --no-refine / --no-mirror`` (``ServerConfig.refine / mirror``) reach every model session."""
    with make_client(lite_model, tmp_path / "state", data_dir, **config) as c:
        engine = c.app.state.ctx.models.engine(synthetic_ct()[0])
        assert engine.session.refinement.enabled is refine
        assert engine.session.mirror is mirror


@pytest.mark.parametrize("flag", ["refine", "mirror"])
def test_serve_no_refine_and_no_mirror_flags_parse(flag):
    import argparse

    from ctsam3d.cli import serve_cmd

    p = argparse.ArgumentParser()
    serve_cmd.add_arguments(p)
    dest = f"no_{flag}"
    assert getattr(p.parse_args([f"--no-{flag}"]), dest) and not getattr(p.parse_args([]), dest)
