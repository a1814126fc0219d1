"""Putting a separately trained CPP net (stage 2) into a model (stage 1): weights, calibrated
threshold and frame; refused when the two models are not the same network."""

from __future__ import annotations

import pytest
import torch

from ctsam3d.errors import CheckpointError
from ctsam3d.modeling import load_model, save_model
from ctsam3d.modeling.presets import get_preset
from ctsam3d.training.checkpoint import save_checkpoint
from ctsam3d.training.export_checkpoint import export_checkpoint
from ctsam3d.training.merge_cpp import config_differences, main, merge_cpp

from train_helpers import random_wb_model


def _model(seed: int, frame: str, threshold, **over):
    return random_wb_model(seed, frame=frame, threshold=threshold, **over)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("merge")
    base = _model(0, "own", None)
    base.config.structures, base.config.training = ["liver"], {"steps": 7}
    cpp = _model(1, "v", 0.42)
    cpp.config.structures, cpp.config.training = ["x"], {"steps": 3, "validation": {"cpp_hit": 0.6, "dice@1": 0.1}}
    save_model(base, d / "base")
    save_model(cpp, d / "cpp")
    return d, base, cpp


def _check_merged(m, base, cpp, source):
    own, theirs = base.state_dict(), cpp.state_dict()
    for k, v in m.state_dict().items():
        want = theirs[k] if k.startswith("cpp_predictor.") else own[k]
        assert torch.equal(v.contiguous(), want.contiguous()), k
    assert m.config.cpp.frame == "v" and m.config.cpp.peak_threshold == pytest.approx(0.42)
    assert m.config.structures == ["liver"] and m.config.training["steps"] == 7
    assert m.config.training["cpp_from"]["model"] == str(source)
    assert m.config.training["cpp_from"]["validation"] == {"cpp_hit": 0.6}


def test_merge_takes_the_cpp_net_and_keeps_the_rest(models, tmp_path):
    d, base, cpp = models
    out = merge_cpp(d / "base", d / "cpp", tmp_path / "merged")
    _check_merged(load_model(out), base, cpp, d / "cpp")
    with pytest.raises(FileExistsError):
        merge_cpp(d / "base", d / "cpp", out)
    assert main([str(d / "base"), "--cpp-from", str(d / "cpp"), "-o", str(out)]) == 1


def test_export_checkpoint_with_cpp_from(models, tmp_path):
    d, base, cpp = models
    ckpt = tmp_path / "checkpoint.pt"
    save_checkpoint(ckpt, {"step": 7, "model": base.state_dict(), "model_config": base.config.to_dict(),
                           "train_config": {"sampler": {"cpp": False}}})
    out = export_checkpoint(ckpt, tmp_path / "exported", cpp_from=d / "cpp")
    m = load_model(out)
    base.config.training = {"steps": 7}
    _check_merged(m, base, cpp, d / "cpp")


@pytest.mark.parametrize(
    "over, key",
    [
        ({"extra_hu_windows": ((-500.0, 500.0),)}, "extra_hu_windows"),
        ({"spacing_mm": 1.5}, "spacing_mm"),
        ({"hu_window": (-100.0, 200.0)}, "hu_window"),
    ],
)
def test_merge_refuses_another_network(models, tmp_path, over, key, capsys):
    d, _, _ = models
    other = _model(2, "v", 0.3, **over)
    save_model(other, tmp_path / "other")
    with pytest.raises(CheckpointError, match=key):
        merge_cpp(d / "base", tmp_path / "other", tmp_path / "merged")
    assert not (tmp_path / "merged").exists()
    assert main([str(d / "base"), "--cpp-from", str(tmp_path / "other"), "-o", str(tmp_path / "m2")]) == 1
    assert "differs" in capsys.readouterr().err


def test_config_differences_ignore_only_the_calibration(models):
    _, base, cpp = models
    assert config_differences(base.config, cpp.config) == []
    other = get_preset("ctsam3d-lite-wb")
    other.cpp.channels = (4, 8, 16, 32)
    assert config_differences(base.config, other) == ["cpp.channels"]


def test_export_when_the_init_model_is_gone(models, tmp_path, capsys):
    """A stage-1 checkpoint names init_weights whose model is no longer installed (a bundled
    model since removed): exported without a threshold and a warning, or with --cpp-from's."""
    from ctsam3d.training.export_checkpoint import main as export_main

    d, base, cpp = models
    ckpt = tmp_path / "checkpoint.pt"
    save_checkpoint(ckpt, {"step": 7, "model": base.state_dict(), "model_config": base.config.to_dict(),
                           "train_config": {"sampler": {"cpp": False}, "init_weights": str(tmp_path / "gone")}})
    assert export_main([str(ckpt), "-o", str(tmp_path / "plain")]) == 0
    assert load_model(tmp_path / "plain").config.cpp.peak_threshold is None
    assert "cannot be loaded" in capsys.readouterr().err
    assert export_main([str(ckpt), "-o", str(tmp_path / "merged"), "--cpp-from", str(d / "cpp")]) == 0
    assert load_model(tmp_path / "merged").config.cpp.peak_threshold == pytest.approx(0.42)
