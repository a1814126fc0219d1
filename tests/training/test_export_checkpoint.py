"""Exporting a model folder from a training checkpoint (interim evaluation of a running run)."""

from __future__ import annotations

import pytest
import torch
from train_helpers import make_cache, tiny_config

from ctsam3d.modeling import load_model
from ctsam3d.training import train
from ctsam3d.training.checkpoint import load_checkpoint
from ctsam3d.training.config import config_from_dict
from ctsam3d.training.export_checkpoint import export_checkpoint, main


def test_export_matches_the_checkpoint_and_refuses_to_overwrite(tmp_path):
    torch.set_num_threads(1)
    cache = make_cache(tmp_path / "data", 2)
    train(config_from_dict(tiny_config(cache, tmp_path / "run", total_steps=2, val={"every": 0})))
    ckpt = tmp_path / "run" / "checkpoint.pt"
    out = export_checkpoint(ckpt, tmp_path / "exported")
    m = load_model(out)
    st = load_checkpoint(ckpt)
    for k, v in st["model"].items():
        assert torch.equal(m.state_dict()[k].contiguous(), v), k
    assert m.config.training["steps"] == 2
    # the CPP net was trained but never calibrated here: no invented threshold
    assert m.config.cpp.peak_threshold is None
    with pytest.raises(FileExistsError):
        export_checkpoint(ckpt, out)
    assert main([str(ckpt), "-o", str(out)]) == 1
    assert main([str(tmp_path / "missing.pt"), "-o", str(tmp_path / "x")]) == 1
