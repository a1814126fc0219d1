"""Initialising a 2-window ``ctsam3d-lite-wb`` network from 1-window ``ctsam3d-lite`` weights:
with zero new channels it computes what the source computed; other differences are refused;
a training run from such weights exports a 2-channel model and no invented CPP threshold."""

from __future__ import annotations

import warnings

import pytest
import torch
from train_helpers import TINY_MODEL, make_cache, tiny_config

from ctsam3d.errors import InputError
from ctsam3d.modeling import build_model, load_model, save_model
from ctsam3d.modeling.presets import get_preset
from ctsam3d.training import train
from ctsam3d.training.config import config_from_dict
from ctsam3d.training.init_weights import adapt_state


@pytest.fixture(scope="module")
def pair():
    torch.manual_seed(0)
    src = build_model(get_preset("ctsam3d-lite")).eval()
    dst = build_model(get_preset("ctsam3d-lite-wb")).eval()
    return src, dst


def test_zero_new_channels_reproduce_the_source(pair):
    src, dst = pair
    state, widened = adapt_state(src.state_dict(), dst, 1, 2, "zero")
    assert sorted(widened) == [
        "cpp_predictor.model.0.conv.unit0.conv.weight",
        "cpp_predictor.model.0.residual.weight",
        "image_encoder.stages.0.0.0.weight",
    ]
    dst.load_state_dict(state, strict=True)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(1, 1, 64, 64, 64, generator=g)
    wide = torch.rand(1, 1, 64, 64, 64, generator=g)  # anything: its weights are zero
    x2 = torch.cat([x, wide], 1)
    mask = (torch.rand(1, 1, 64, 64, 64, generator=g) > 0.7).float()
    with torch.no_grad():
        for a, b in zip(src.encode(x), dst.encode(x2)):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
        torch.testing.assert_close(src.cpp(x, mask, x), dst.cpp(x2, mask, x2), rtol=0, atol=1e-5)


def test_channels_land_in_their_places(pair):
    src, dst = pair
    state, _ = adapt_state(src.state_dict(), dst, 1, 2, "small", torch.Generator().manual_seed(0))
    s = src.state_dict()
    k = "cpp_predictor.model.0.conv.unit0.conv.weight"  # [U, mask, V] -> [U0, U1, mask, V0, V1]
    for old, new in ((0, 0), (1, 2), (2, 3)):
        assert torch.equal(state[k][:, new], s[k][:, old])
    assert state[k][:, 1].abs().max() > 0 and state[k][:, 4].abs().max() > 0  # small, not zero
    assert state[k][:, 4].abs().max() < 0.1 * s[k].abs().max()
    e = "image_encoder.stages.0.0.0.weight"
    assert torch.equal(state[e][:, 0], s[e][:, 0])


def test_other_differences_are_refused(pair):
    src, dst = pair
    s = dict(src.state_dict())
    s["image_encoder.stages.1.0.0.weight"] = torch.zeros(3, 3, 3, 3, 3)
    with pytest.raises(InputError, match="stages.1.0.0.weight"):
        adapt_state(s, dst, 1, 2)
    s = dict(src.state_dict())
    s.pop("mask_decoder.head.weight", None) or s.pop(next(iter(s)))
    with pytest.raises(InputError, match="network differs"):
        adapt_state(s, dst, 1, 2)
    with pytest.raises(InputError, match="new_channels"):
        adapt_state(src.state_dict(), dst, 1, 2, "ones")


def test_training_a_wb_model_from_lite_weights(tmp_path):
    torch.set_num_threads(1)
    cache = make_cache(tmp_path / "data", 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = config_from_dict(tiny_config(cache, tmp_path / "lite", total_steps=1, val={"every": 0}))
    lite_dir = train(cfg)["model_dir"]
    lite = load_model(lite_dir)
    assert lite.config.in_channels == 1
    over = {"preset": "ctsam3d-lite-wb", "model_overrides": TINY_MODEL, "init_weights": str(lite_dir),
            "total_steps": 2, "sampler": {"cpp": False}, "loss": {"cpp_weight": 0.0}}
    res = train(config_from_dict(tiny_config(cache, tmp_path / "wb", **over)))
    wb = load_model(res["model_dir"])
    assert wb.config.preset == "ctsam3d-lite-wb" and wb.config.in_channels == 2
    # the CPP net was neither trained nor validated: the source's calibration, not the preset's 0.5
    assert wb.config.cpp.peak_threshold == lite.config.cpp.peak_threshold
    k = "cpp_predictor.model.0.conv.unit0.conv.weight"
    torch.testing.assert_close(wb.state_dict()[k][:, [0, 2, 3]], lite.state_dict()[k])
