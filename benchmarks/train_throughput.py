"""Training throughput: patches per second and the share of step time spent waiting for data.

Runs the real training loop (``ctsam3d.training.train``: sampler in DataLoader workers,
click simulation, focal+Dice/CPP/quality losses, AdamW) for a few steps on a preprocessed
cache and reads the per-step timings it logs (``train.csv``: ``data_wait`` = time blocked
on the next batch / step time). The first ``--warmup`` steps (worker start-up, first
allocations) are left out.

    python benchmarks/train_throughput.py                               # lite preset, CPU
    python benchmarks/train_throughput.py -d cuda --batch-size 32 --workers 14 --clicks-backend torch

Needs a cache from ``ctsam3d preprocess`` (default ``cache/openkbp-train``). Prints a table
and writes JSON (``--json``, default ``benchmarks/results/train_throughput_<device>.json``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cache", default=str(ROOT / "cache" / "openkbp-train"), help="training cache folder")
    p.add_argument("--preset", default="ctsam3d-lite")
    p.add_argument("-d", "--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--workers", type=int, default=1, help="DataLoader worker processes")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the training process")
    p.add_argument("--steps", type=int, default=12, help="timed steps")
    p.add_argument("--warmup", type=int, default=3, help="untimed first steps")
    p.add_argument("--clicks", type=int, default=3, help="click-simulation rounds per step (fixed)")
    p.add_argument("--clicks-backend", default="numpy", choices=["numpy", "torch"])
    p.add_argument("--json", help="output JSON path")
    a = p.parse_args(argv)

    import torch

    from ctsam3d.training import train
    from ctsam3d.training.config import config_from_dict

    if not (Path(a.cache) / "cases").is_dir():
        print(f"no cache at {a.cache}: run 'ctsam3d preprocess' first (see docs/training.md)", file=sys.stderr)
        return 1
    torch.set_num_threads(a.threads)
    total = a.warmup + a.steps
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config_from_dict(
            {
                "output_dir": tmp,
                "preset": a.preset,
                "data": {"train_cache": a.cache},
                "total_steps": total,
                "batch_size": a.batch_size,
                "device": a.device,
                "workers": a.workers,
                "checkpoint_every": 10**9,
                "log_every": 1,
                "progress": False,
                "tensorboard": False,
                "resume": False,
                "val": {"every": 0},
                "clicks": {"iterations": a.clicks, "random_iterations": False, "backend": a.clicks_backend},
                "optim": {"warmup_steps": 1},
            }
        )
        t0 = time.perf_counter()
        train(cfg)
        wall = time.perf_counter() - t0
        rows = list(csv.DictReader(open(Path(tmp) / "train.csv")))
    timed = [r for r in rows if int(r["step"]) > a.warmup]
    step_s = [a.batch_size / float(r["patches_per_s"]) for r in timed]
    wait_s = [float(r["data_wait"]) * s for r, s in zip(timed, step_s)]
    res = {
        "preset": a.preset,
        "device": a.device,
        "device_name": torch.cuda.get_device_name() if a.device.startswith("cuda") else platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": a.threads,
        "workers": a.workers,
        "batch_size": a.batch_size,
        "click_rounds": a.clicks,
        "clicks_backend": a.clicks_backend,
        "timed_steps": len(timed),
        "step_s_mean": sum(step_s) / len(step_s),
        "patches_per_s": a.batch_size * len(step_s) / sum(step_s),
        "data_wait_share": sum(wait_s) / sum(step_s),
        "wall_s_including_startup": wall,
    }
    print(f"{'preset':<14}{'device':<8}{'batch':>6}{'workers':>8}{'step s':>9}{'patches/s':>11}{'data wait':>11}")
    print(
        f"{a.preset:<14}{a.device:<8}{a.batch_size:>6}{a.workers:>8}{res['step_s_mean']:>9.3f}"
        f"{res['patches_per_s']:>11.2f}{100 * res['data_wait_share']:>10.1f}%"
    )
    out = Path(a.json) if a.json else ROOT / "benchmarks" / "results" / f"train_throughput_{a.device.split(':')[0]}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
