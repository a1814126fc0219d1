"""Tiny training set-up for fast tests: a 32³ patch, 4-channel lite network, synthetic cache."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "datasets"))

from dataset_helpers import write_pairs  # noqa: E402

from ctsam3d.data import open_dataset, preprocess  # noqa: E402
from ctsam3d.modeling import get_preset  # noqa: E402

# keep the preset's last decoder width (it may be tied to the mask head), shrink the rest
_UP = [4] * (len(get_preset("ctsam3d-lite").decoder.up_channels) - 1) + [get_preset("ctsam3d-lite").decoder.up_channels[-1]]

TINY_MODEL = {
    "patch_size": [32, 32, 32],
    "spacing_mm": 2.0,
    "encoder": {"dims": [4, 4, 4, 4], "skip_channels": [4, 4, 4, 4]},
    "decoder": {"up_channels": _UP, "hidden": 4},
    "quality": {"hidden": 4},
    "cpp": {"channels": [4, 4, 4, 4]},
}


def make_cache(root: Path, n: int = 3) -> Path:
    """Synthetic pairs -> cache folder ``root/cache``."""
    write_pairs(root / "pairs", n)
    preprocess(open_dataset(root / "pairs"), root / "cache", progress=False)
    return root / "cache"


def tiny_config(cache: Path, out: Path, **over) -> dict:
    cfg = {
        "output_dir": str(out),
        "preset": "ctsam3d-lite",
        "model_overrides": TINY_MODEL,
        "data": {"train_cache": str(cache), "val_cache": str(cache)},
        "total_steps": 4,
        "batch_size": 2,
        "device": "cpu",
        "workers": 0,
        "checkpoint_every": 2,
        "log_every": 1,
        "progress": False,
        "tensorboard": False,
        "optim": {"lr": 1e-2, "warmup_steps": 1},
        "clicks": {"iterations": 3},
        "val": {"every": 2, "patches": 4, "batch_size": 4, "clicks": [1, 3]},
        "sampler": {"cpp_shift": [0.25, 0.5]},
    }
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k] = {**cfg[k], **v}
        else:
            cfg[k] = v
    return cfg


def random_wb_model(seed: int, *, frame: str | None = None, threshold: float | None = None, **config):
    """A ``ctsam3d-lite-wb`` network with N(0, 1) weights drawn from ``seed``: distinct models for
    the tools that combine saved models (merge_cpp, average_weights). ``frame`` / ``threshold`` set
    the CPP calibration (None: the preset's frame, no threshold); other keywords set config fields."""
    import torch

    from ctsam3d.modeling.ctsam3d import build_model

    cfg = get_preset("ctsam3d-lite-wb")
    if frame is not None:
        cfg.cpp.frame = frame
    cfg.cpp.peak_threshold = threshold
    for k, v in config.items():
        setattr(cfg, k, v)
    torch.manual_seed(seed)
    m = build_model(cfg)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_()
    return m
