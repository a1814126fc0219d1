"""Golden test: the paper preset in reference-exact mode reproduces the released network.

The deterministic weights of ``../shared/docs/reference-golden/README.md`` are written in the
released format (``params.pth`` with ``model_state_dict`` + a ``config.py``), converted with
``ctsam3d convert-checkpoint``, and the outputs compared with the golden arrays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ctsam3d.cli.main import main as cli_main
from ctsam3d.modeling import load_model

torch.set_num_threads(2)

GOLDEN = Path(__file__).resolve().parents[3] / "shared" / "docs" / "reference-golden"

CONFIG_PY = """\
import os
from easydict import EasyDict as edict
cfg = edict()
cfg.dataset = {}
cfg.dataset.patch_size = [64, 64, 64]  # [Z, Y, X]
cfg.dataset.target_spacing = 1.5
cfg.dataset.img_dir = os.path.join(os.environ["HOME"], "images")
cfg.dataset.normalization_params = {}
cfg.dataset.normalization_params.min_value = -125
cfg.dataset.normalization_params.max_value = 225
cfg.network = "restv2_tiny"
"""


def deterministic_state(manifest: Path) -> dict[str, torch.Tensor]:
    """The README's formula, tensor t in manifest order."""
    state = {}
    lines = manifest.read_text().splitlines()[1:]
    for t, line in enumerate(lines):
        name, shape_s, dtype = line.split("\t")
        shape = () if shape_s == "scalar" else tuple(int(s) for s in shape_s.split("x"))
        if name.endswith("num_batches_tracked"):
            state[name] = torch.zeros(shape, dtype=torch.int64)
            continue
        n = int(np.prod(shape)) if shape else 1
        i = np.arange(n, dtype=np.float64)
        base = np.sin(1.7 * t + 0.001 * (t + 1) * i + 0.3)
        if name.endswith("running_var"):
            v = 1 + 0.1 * np.abs(base)
        elif name.endswith("running_mean"):
            v = 0.01 * base
        else:
            v = 0.1 * base
        state[name] = torch.from_numpy(v.astype(np.float32).reshape(shape))
        assert dtype == "float32"
    return state


@pytest.fixture(scope="module")
def golden():
    if not GOLDEN.is_dir():
        pytest.skip(f"needs {GOLDEN} (not present on this machine)")
    return {p.stem: np.load(p) for p in GOLDEN.glob("*.npy")}


@pytest.fixture(scope="module")
def converted(golden, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("release")
    torch.save({"model_state_dict": deterministic_state(GOLDEN / "state_dict_manifest.tsv"), "epoch": 1000},
               tmp / "params.pth")
    (tmp / "config.py").write_text(CONFIG_PY)
    out = tmp / "converted"
    rc = cli_main(["convert-checkpoint", "-q", "-i", str(tmp / "params.pth"), "--config", str(tmp / "config.py"),
                   "-o", str(out)])
    assert rc == 0
    model = load_model(out)
    assert model.config.reference_exact and model.config.preset == "ctsam3d-paper"
    assert model.config.hu_window == (-125.0, 225.0) and model.config.spacing_mm == 1.5
    return model, tmp


def _close(ours: torch.Tensor, ref: np.ndarray, atol: float) -> float:
    err = float(np.abs(ours.detach().cpu().numpy() - ref).max())
    assert err <= atol, err
    return err


def test_golden_outputs(golden, converted):
    """Each part against the golden arrays at the README's tolerances.

    The masks are compared with the decoder fed the golden encoder features. End to end the
    golden masks are ill-conditioned: the decoder's instance norm over the 8 voxels of the 2³
    feature (per-channel variance ~1e-4) amplifies the encoder's float32 rounding ~1000×
    (measured: a 1e-6 relative perturbation of the golden 2³ feature moves mask_2 by 1.5e-3;
    the float64 encoder, 1e-5 from the golden feature, gives end-to-end errors of 1.9e-3 on
    mask_1 and 1.0e-2 on mask_2). So end to end only mask_1 is checked, at 5e-3 — still below
    what a wrong layer, eps or channel order gives (≥ 1.6e-2).
    """
    model, tmp = converted
    image = torch.from_numpy(golden["input_image"]).float()[None, None]
    prev = torch.from_numpy(golden["mask_1"]).float()[None, None]
    with torch.inference_mode():
        prompt1 = model.render_prompt([[(30, 34, 32)]], [[(8, 8, 8)]])
        _close(prompt1[0, :2], golden["click_map_1"], 1e-6)
        prompt2 = model.render_prompt([[(30, 34, 32), (40, 40, 40)]], [[(8, 8, 8)]], prev)

        feats = model.encode(image)
        for k, f in enumerate(feats):
            ref = golden[f"encoder_feature_{k}"]
            assert f.shape[1:] == ref.shape
            _close(f[0], ref, 1e-3 * float(np.abs(ref).max()))

        gold_feats = [torch.from_numpy(golden[f"encoder_feature_{k}"])[None] for k in range(4)]
        mask1 = torch.sigmoid(model.decode(gold_feats, prompt1)[0])
        _close(mask1[0, 0], golden["mask_1"], 1e-4)
        mask2 = torch.sigmoid(model.decode(gold_feats, prompt2)[0])
        _close(mask2[0, 0], golden["mask_2"], 1e-4)

        e2e1 = torch.sigmoid(model.decode(feats, prompt1)[0])
        _close(e2e1[0, 0], golden["mask_1"], 5e-3)

        mask_u = (prev > 0.5).float()
        image_v = torch.from_numpy(np.roll(golden["input_image"], 32, axis=0)).float()[None, None]
        heat = model.cpp(image, mask_u, image_v)
        _close(heat[0, 0], golden["cpp_heatmap"], 1e-4)

    # on-the-fly conversion of params.pth gives the same function, bit for bit
    direct = load_model(tmp / "params.pth")
    with torch.inference_mode():
        again = torch.sigmoid(direct.decode(direct.encode(image), prompt1)[0])
    assert torch.equal(again, e2e1)
