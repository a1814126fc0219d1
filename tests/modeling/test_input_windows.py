"""Input channels from HU windows: the ``ctsam3d-lite-wb`` preset (soft-tissue + wide window),
configs saved before the field existed, and loading that refuses weights and config that
do not belong together."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from ctsam3d.errors import CheckpointError, InputError
from ctsam3d.geometry import normalize_hu, normalize_windows
from ctsam3d.modeling import ModelConfig, build_model, load_model, save_model
from ctsam3d.modeling.presets import PRESETS, WIDE_WINDOW, get_preset


def test_wb_preset_is_lite_plus_a_wide_window():
    lite, wb = get_preset("ctsam3d-lite"), get_preset("ctsam3d-lite-wb")
    assert "ctsam3d-lite-wb" in PRESETS
    assert wb.windows() == ((-125.0, 225.0), WIDE_WINDOW) and wb.in_channels == 2
    assert lite.windows() == ((-125.0, 225.0),) and lite.in_channels == 1
    assert get_preset("ctsam3d-paper").in_channels == 1  # the paper preset keeps its one window
    # everything else is the lite network, its CPP input on V's grid (modeling/cpp_frame.py)
    a, b = lite.to_dict(), wb.to_dict()
    for k in ("preset", "extra_hu_windows"):
        a.pop(k), b.pop(k)
    assert (a["cpp"].pop("frame"), b["cpp"].pop("frame")) == ("own", "v")
    assert a == b


def test_wb_network_shapes():
    m = build_model(get_preset("ctsam3d-lite-wb")).eval()
    x = torch.rand(1, 2, 64, 64, 64)
    with torch.no_grad():
        feats = m.encode(x)
        heat = m.cpp(x, torch.zeros(1, 1, 64, 64, 64), x)
    assert [tuple(f.shape[1:2]) for f in feats] == [(8,), (16,), (32,), (64,)]
    assert heat.shape == (1, 1, 64, 64, 64)
    with pytest.raises(InputError, match=r"\(B, 2, D, H, W\)"):
        m.encode(torch.rand(1, 1, 64, 64, 64))
    with pytest.raises(InputError, match="mask_u"):
        m.cpp(x, torch.zeros(1, 2, 64, 64, 64), x)


def test_old_config_without_the_field_loads_with_one_window():
    d = get_preset("ctsam3d-lite").to_dict()
    d.pop("extra_hu_windows")
    cfg = ModelConfig.from_dict(d)
    assert cfg.extra_hu_windows == () and cfg.in_channels == 1


@pytest.mark.parametrize(
    "windows, match",
    [([[100.0, -100.0]], "extra_hu_windows"), ([[0.0, 1.0, 2.0]], "extra_hu_windows")],
)
def test_bad_windows_refused(windows, match):
    cfg = get_preset("ctsam3d-lite")
    cfg.extra_hu_windows = tuple(tuple(w) for w in windows)
    with pytest.raises(CheckpointError, match=match):
        cfg.validate()


def test_extra_windows_need_the_conv_encoder():
    cfg = get_preset("ctsam3d-paper")
    cfg.extra_hu_windows = ((-1000.0, 1000.0),)
    with pytest.raises(CheckpointError, match="conv encoder"):
        cfg.validate()


def test_round_trip_and_mismatch_fails_loudly(tmp_path):
    torch.manual_seed(0)
    wb = build_model(get_preset("ctsam3d-lite-wb"))
    save_model(wb, tmp_path / "wb")
    back = load_model(tmp_path / "wb")
    assert back.config.windows() == wb.config.windows()
    for k, v in wb.state_dict().items():
        assert torch.equal(v, back.state_dict()[k].contiguous()), k
    # 2-channel weights with a config.json that lost its second window
    cfg = json.loads((tmp_path / "wb" / "config.json").read_text())
    cfg["extra_hu_windows"] = []
    (tmp_path / "wb" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"take 2 image channel\(s\).*give 1"):
        load_model(tmp_path / "wb")
    # and the other way round: lite weights, a config claiming two windows
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lite = load_model("ctsam3d-lite")
    save_model(lite, tmp_path / "lite")
    cfg = json.loads((tmp_path / "lite" / "config.json").read_text())
    cfg["extra_hu_windows"] = [[-1000.0, 1000.0]]
    (tmp_path / "lite" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"take 1 image channel\(s\).*give 2"):
        load_model(tmp_path / "lite")


def test_normalize_windows_stacks_one_channel_per_window():
    hu = np.array([[-1024.0, -500.0, 0.0, 100.0, 700.0, 2000.0]], np.float32)
    out = normalize_windows(hu, ((-125.0, 225.0), (-1000.0, 1000.0)))
    assert out.shape == (2, 1, 6) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0], normalize_hu(hu, (-125.0, 225.0)))
    np.testing.assert_allclose(out[1, 0], [0.0, 0.25, 0.5, 0.55, 0.85, 1.0], atol=1e-6)
