"""``python -m ctsam3d.train --config FILE`` — the entry point for ``torchrun``.

Single process::

    python -m ctsam3d.train --config configs/smoke-cpu.yaml

DDP on one machine (NCCL on GPUs, gloo on CPU)::

    torchrun --nproc_per_node 4 -m ctsam3d.train --config configs/starter-lite.yaml

Multi-node: see ``docs/training.md``. Imports neither SimpleITK nor the CLI machinery, so
it runs on machines that only have torch, numpy, scipy, monai, pyyaml and tqdm.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ctsam3d.train", description="Train a CT-SAM3D model from a config file")
    add_arguments(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or info messages")
    p.add_argument("-v", "--verbose", action="store_true", help="show tracebacks and debug messages")
    return p


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", required=True, help="training config (YAML or JSON), see configs/")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set total_steps=200 --set optim.lr=3e-4 (repeatable)",
    )
    p.add_argument("-o", "--output", help="output folder (overrides output_dir)")
    p.add_argument("-d", "--device", help="cpu, cuda, cuda:N (gpu/gpu:N accepted); overrides device")
    p.add_argument("--no-resume", action="store_true", help="start from scratch even if a checkpoint exists")


def run_from_args(args) -> int:
    from .training.config import load_config
    from .training.loop import train

    overrides = list(args.overrides)
    if args.output:
        overrides.append(f"output_dir={args.output}")
    if args.device:
        overrides.append(f"device={args.device}")
    if args.no_resume:
        overrides.append("resume=false")
    if getattr(args, "quiet", False):
        overrides.append("progress=false")
    cfg = load_config(args.config, overrides)
    if args.no_resume:
        from pathlib import Path

        ckpt = Path(cfg.output_dir) / "checkpoint.pt"
        if ckpt.exists() and int(os.environ.get("RANK", "0")) == 0:
            ckpt.unlink()
    res = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        v = res.get("val") or {}
        msg = ", ".join(f"{k}={v[k]:.3f}" for k in sorted(v) if "/" not in k)
        print(f"trained to step {res['step']}{' (time budget reached)' if res['stopped_early'] else ''}; "
              f"model: {res['model_dir']}{'; validation ' + msg if msg else ''}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    from .errors import CtSam3dError

    args = build_parser().parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    level = logging.WARNING if args.quiet or rank else (logging.DEBUG if args.verbose else logging.INFO)
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
    try:
        return run_from_args(args)
    except CtSam3dError as exc:
        if args.verbose:
            raise
        print(f"ctsam3d train: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
