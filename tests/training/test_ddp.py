"""Two-process DDP (gloo on CPU): ranks see different patches but keep identical weights."""

from __future__ import annotations

import json
import os
import socket

import torch
import torch.multiprocessing as mp
from train_helpers import make_cache, tiny_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, cfg: dict, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from ctsam3d.training import train
    from ctsam3d.training.config import config_from_dict

    res = train(config_from_dict(cfg))
    weights = {k: float(v.double().sum()) for k, v in res["model"].state_dict().items()}
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as fh:
        json.dump({"losses": res["losses"], "step": res["step"], "weights": weights}, fh)


def test_two_process_gloo_ddp(tmp_path):
    cache = make_cache(tmp_path / "data", n=2)
    cfg = tiny_config(cache, tmp_path / "run", total_steps=3, checkpoint_every=1, val={"every": 3, "patches": 2})
    # fork: the children reuse this process's imports (torch + monai take ~10 s per fresh process here)
    mp.start_processes(_worker, args=(2, _free_port(), cfg, str(tmp_path)), nprocs=2, join=True, start_method="fork")
    r0 = json.loads((tmp_path / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "rank1.json").read_text())
    assert r0["step"] == r1["step"] == 3
    assert r0["losses"][0] != r1["losses"][0]  # same initial weights, different patches
    for k, v in r0["weights"].items():  # gradients were averaged: weights stay identical
        assert abs(v - r1["weights"][k]) <= 1e-5 * max(1.0, abs(v)), k
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".") or p.suffix == ".pt") == ["checkpoint.pt"]
    assert (run / "model" / "config.json").is_file()
    assert len((run / "val.csv").read_text().splitlines()) == 2  # header + one validation, rank 0 only
