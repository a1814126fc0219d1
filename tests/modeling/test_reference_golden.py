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
    """Each part against the golden arrays; end to end as tight as float32 allows.

    Parts (README tolerances or tighter): click map 1e-6; encoder features 1e-4 of their
    largest magnitude (README: 1e-3) with the median error under 5e-6 of it; the decoder fed
    the golden features gives mask_1 and mask_2 within 1e-4; the CPP heatmap within 1e-4.
    Measured (2 threads): features 3.0e-6, 4.6e-6, 9.9e-6, 1.1e-5 max and 0.5-1.7e-6 median;
    masks 1.2e-5 and 2.0e-5. The encoder has no systematic difference from the reference:
    the float64 encoder is as far from the golden features (2.1e-6, 4.4e-6, 4.5e-6, 1.0e-5)
    as our float32 one is from float64 (3.0e-6, 5.2e-6, 9.2e-6, 2.9e-6), i.e. the golden
    features carry the reference machine's float32 rounding. Only ~2 % of their values are
    bit-equal to ours under any kernel choice tried (1 or 2 threads, oneDNN off, ATen/oneDNN
    ISA and MKL_CBWR settings, SDPA or the reference's explicit softmax(q·kᵀ·scale)·v).
    The 1e-4 feature bound catches what 1e-3 lets through: tanh-GELU gives 4.5e-4 at 2³.

    End to end the golden masks cannot be met at 1e-4 by any implementation that does not
    reproduce the reference's float32 kernels bit for bit. The decoder is ill-conditioned in
    its input: the 2³ feature has per-channel std ~1/150 of its magnitude, so each instance
    norm amplifies relative changes, ~46000x from f3 to the last SPADE block. In exact
    (float64) arithmetic a random ±1-ulp change of the golden 2³ feature (9.5e-8 relative)
    moves mask_2 by 2.2e-4 (float32 decoder: up to 4.8e-4), while every float32 encoder,
    and the float64 one, is ~100 ulps (1e-5) from the golden feature. Measured end to end
    (max abs error, mask_1 / mask_2): ours 2.2e-3 / 1.2e-2; the reference's op order in plain
    torch 1.8e-3 / 8.0e-3 (1 thread: 1.9e-3 / 1.0e-2); float64 encoder and decoder 1.9e-3 /
    1.0e-2. Those errors are noise, not signal: an encoder with the wrong GELU (tanh) gives
    2.1e-3 / 1.2e-2 too. So end to end both masks are checked at bounds that hold with
    margin (5e-3, 3e-2); the part checks above are what pins the function.
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
            scale = float(np.abs(ref).max())
            _close(f[0], ref, 1e-4 * scale)
            assert float(np.median(np.abs(f[0].numpy() - ref))) <= 5e-6 * scale

        gold_feats = [torch.from_numpy(golden[f"encoder_feature_{k}"])[None] for k in range(4)]
        mask1 = torch.sigmoid(model.decode(gold_feats, prompt1)[0])
        _close(mask1[0, 0], golden["mask_1"], 1e-4)
        mask2 = torch.sigmoid(model.decode(gold_feats, prompt2)[0])
        _close(mask2[0, 0], golden["mask_2"], 1e-4)

        e2e1 = torch.sigmoid(model.decode(feats, prompt1)[0])
        _close(e2e1[0, 0], golden["mask_1"], 5e-3)
        e2e2 = torch.sigmoid(model.decode(feats, prompt2)[0])
        _close(e2e2[0, 0], golden["mask_2"], 3e-2)

        mask_u = (prev > 0.5).float()
        image_v = torch.from_numpy(np.roll(golden["input_image"], 32, axis=0)).float()[None, None]
        heat = model.cpp(image, mask_u, image_v)
        _close(heat[0, 0], golden["cpp_heatmap"], 1e-4)

    # on-the-fly conversion of params.pth gives the same function, bit for bit
    direct = load_model(tmp / "params.pth")
    with torch.inference_mode():
        again = torch.sigmoid(direct.decode(direct.encode(image), prompt1)[0])
    assert torch.equal(again, e2e1)
