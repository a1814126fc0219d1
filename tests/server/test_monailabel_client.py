"""The MONAI Label project's own Python client drives the server (a real uvicorn on loopback).

The client comes from PyPI ``monailabel`` installed outside the main environment, so its
dependencies cannot disturb ours::

    python -m pip install --no-deps --target build/monailabel-client \\
        monailabel==0.8.5 requests urllib3 idna charset-normalizer certifi

(``CTSAM3D_MONAILABEL_CLIENT`` may point elsewhere.) The folder is put on ``sys.path`` only
inside this test.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from server_helpers import block_voxel, same_grid, synthetic_ct

from ctsam3d.server import ServerConfig, create_app
from ctsam3d.server.background import BackgroundServer

CLIENT_DIR = Path(os.environ.get("CTSAM3D_MONAILABEL_CLIENT", Path(__file__).resolve().parents[2] / "build" / "monailabel-client"))
INSTALL = ("python -m pip install --no-deps --target build/monailabel-client "
           "monailabel==0.8.5 requests urllib3 idna charset-normalizer certifi")


@pytest.fixture
def monailabel_client_class(monkeypatch):
    if not (CLIENT_DIR / "monailabel" / "client" / "client.py").is_file():
        pytest.skip(f"MONAI Label client not installed in {CLIENT_DIR}; run: {INSTALL}")
    monkeypatch.syspath_prepend(str(CLIENT_DIR))
    from monailabel.client import MONAILabelClient

    return MONAILabelClient


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the client imports the stdlib 'cgi' module
def test_monailabel_client_info_session_infer(monailabel_client_class, lite_model, data_dir, tmp_path):
    img, lab = synthetic_ct("PLI")
    volume = tmp_path / "volume.nii.gz"
    sitk.WriteImage(img, str(volume))
    app = create_app(ServerConfig(state_dir=tmp_path / "state", data_dir=data_dir, expansion=False), model=lite_model)
    out = tmp_path / "client"
    out.mkdir()
    with BackgroundServer(app) as url:
        client = monailabel_client_class(url, tmpdir=str(out), client_id="slicer-test")
        assert client.auth_enabled() is False
        info = client.info()
        model = info["models"]["ctsam3d"]
        assert model["type"] == "deepgrow" and model["dimension"] == 3 and "liver" in model["labels"]
        assert client.train_status(check_if_running=True) is False

        session = client.create_session(str(volume))
        sid = session["session_id"]
        assert client.get_session(sid)["name"] == sid

        fg = [list(block_voxel(img, lab))]
        result_file, params = client.infer("ctsam3d", sid, {"label": "spleen", "foreground": fg, "background": []}, session_id=sid)
        assert result_file.endswith(".nii.gz") and params["label_names"] == {"spleen": 1}
        mask = sitk.ReadImage(result_file)
        assert same_grid(mask, img)
        assert set(np.unique(sitk.GetArrayFromImage(mask)).tolist()) <= {0, 1}
        assert int(sitk.GetArrayFromImage(mask).sum()) == params["voxels"]

        # the next click resends all points, with a background point
        bg = [[2, 2, 2]]
        result_file, params = client.infer("ctsam3d", sid, {"label": "spleen", "foreground": fg, "background": bg}, session_id=sid)
        assert params["background"] == bg and same_grid(sitk.ReadImage(result_file), img)

        # infer on a datastore image without a session
        result_file, params = client.infer("ctsam3d", "lps.nii.gz", {"label": "x", "foreground": [[30, 14, 20]], "background": []})
        assert same_grid(sitk.ReadImage(result_file), synthetic_ct("LPS")[0])
        assert "lps.nii.gz" in client.datastore()["objects"]

        assert client.remove_session(sid)["name"] == sid

        # "Submit Label" for a local volume: upload the image to the datastore, then the label
        label = tmp_path / "label.nii.gz"
        sitk.WriteImage(lab, str(label))
        assert client.upload_image(str(volume), "CT Chest")["image"] == "CT Chest"
        assert client.save_label("CT Chest", str(label), tag="final")["label"] == "CT Chest"
        assert client.datastore()["objects"]["CT Chest"]["labels"] == {"final": {"ext": ".nii.gz", "info": {}}}
