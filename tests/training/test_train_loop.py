"""The training loop end to end on a tiny network: checkpoints, exact resume, time budget, export."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from train_helpers import make_cache, tiny_config

from ctsam3d.errors import InputError
from ctsam3d.training import train
from ctsam3d.training.checkpoint import load_checkpoint
from ctsam3d.training.config import config_from_dict, load_config


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    torch.set_num_threads(1)
    return make_cache(tmp_path_factory.mktemp("train"))


def test_cli_train_writes_checkpoint_metrics_and_model(cache, tmp_path):
    from ctsam3d.cli.main import main
    from ctsam3d.modeling import load_model

    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps(tiny_config(cache, tmp_path / "run", total_steps=3)))
    assert main(["train", "--config", str(cfg_path), "-q"]) == 0
    run = tmp_path / "run"
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 3
    rows = list(csv.DictReader((run / "train.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert all(float(r["total"]) > 0 for r in rows)
    val = list(csv.DictReader((run / "val.csv").open()))
    assert [int(r["step"]) for r in val] == [2, 3] and 0.0 <= float(val[-1]["dice@3"]) <= 1.0
    model = load_model(run / "model")
    assert tuple(model.config.patch_size) == (32, 32, 32)
    assert model.config.training["steps"] == 3
    assert model.config.training["train_data"]["cases"] == 3
    assert set(model.config.structures) == {"brainstem", "spinal_cord"}


def test_killed_run_resumes_exactly(cache, tmp_path):
    over = {"total_steps": 5, "workers": 1, "val": {"every": 0}}  # DataLoader worker on
    full = train(config_from_dict(tiny_config(cache, tmp_path / "full", **over)))
    assert full["step"] == 5 and len(full["losses"]) == 5

    def kill_at_4(step, losses):
        if step == 4:  # killed before the step-4 checkpoint: steps 3-4 are lost
            raise KeyboardInterrupt

    cfg = config_from_dict(tiny_config(cache, tmp_path / "cut", **over))
    with pytest.raises(KeyboardInterrupt):
        train(cfg, on_step=kill_at_4)
    assert load_checkpoint(tmp_path / "cut" / "checkpoint.pt")["step"] == 2
    resumed = train(cfg)
    assert resumed["step"] == 5
    assert resumed["losses"] == full["losses"][2:]  # bit-identical
    a = full["model"].state_dict()
    b = resumed["model"].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_time_budget_stops_and_saves(cache, tmp_path):
    res = train(config_from_dict(tiny_config(cache, tmp_path / "run", total_steps=50, max_minutes=1e-6)))
    assert res["stopped_early"] and res["step"] == 1
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 1
    assert (tmp_path / "run" / "model" / "config.json").is_file()


@pytest.mark.parametrize(
    "change,message",
    [
        ({"totl_steps": 3}, r"unknown config key\(s\) \['totl_steps'\]"),
        ({"optim": {"lr": "fast"}}, "optim.lr must be a number"),
        ({"amp": "fp8"}, "amp must be"),
        ({"data": {"train_cache": ""}}, "train_cache is required"),
    ],
)
def test_bad_configs_are_refused(tmp_path, change, message):
    with pytest.raises(InputError, match=message):
        config_from_dict(tiny_config(tmp_path, tmp_path / "x", **change))


def test_yaml_config_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("output_dir: out\ndata: {train_cache: cache}\noptim: {lr: 0.001}\n")
    cfg = load_config(p, ["optim.lr=3e-4", "total_steps=7", "clicks.backend=torch"])
    assert cfg.optim.lr == pytest.approx(3e-4) and cfg.total_steps == 7 and cfg.clicks.backend == "torch"


def test_shipped_configs_parse():
    from pathlib import Path

    for p in sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml")):
        load_config(p)
