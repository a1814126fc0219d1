"""``ctsam3d convert-checkpoint``: released CT-SAM3D ``params.pth`` -> our model directory.

    ctsam3d convert-checkpoint -i params.pth [--config config.py] -o model_dir/

Writes ``model_dir/model.safetensors`` + ``model_dir/config.json`` (preset ``ctsam3d-paper``,
``reference_exact: true``). ``config.py`` is read without executing it (defaults to the file
beside ``params.pth``); every weight name and shape must match or the command fails naming it.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..errors import CheckpointError, InputError, OutputExistsError

NAME = "convert-checkpoint"
HELP = "Convert the released CT-SAM3D params.pth"
log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--input", required=True, help="released params.pth (dict with model_state_dict)")
    parser.add_argument("--config", default=None, help="released config.py (default: the one beside --input)")
    parser.add_argument("-o", "--output", required=True, help="output model directory")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing model in --output")


def run(args: argparse.Namespace) -> int:
    from ..io.sniff import torch_checkpoint_problem
    from ..io.write import check_writable
    from ..modeling.checkpoint import CONFIG_FILE, WEIGHTS_FILE, save_model
    from ..modeling.reference_import import convert_reference

    src = Path(args.input)
    if not src.is_file():
        raise InputError(f"--input {src}: no such file")
    if args.config is not None and not Path(args.config).is_file():
        raise InputError(f"--config {args.config}: no such file")
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise InputError(f"--output {out}: exists and is not a directory")
    if not args.overwrite and any((out / f).exists() for f in (WEIGHTS_FILE, CONFIG_FILE)):
        raise OutputExistsError(f"--output {out}: already holds a model (use --overwrite)")
    if (what := torch_checkpoint_problem(src)) is not None:
        raise CheckpointError(f"--input {src}: not a PyTorch checkpoint: it is {what}; expected the released params.pth")
    check_writable(out / WEIGHTS_FILE, f"--output {out}")  # before the conversion, not after
    model = convert_reference(src, args.config)
    save_model(model, out)
    n = sum(t.numel() for t in model.state_dict().values())
    log.info(
        "wrote %s (%d tensors, %.1f M values; preset %s, %.1f mm, patch %s, HU %s, reference_exact; "
        "CPP peak threshold %s: a default, not calibrated on these weights)",
        out, len(model.state_dict()), n / 1e6, model.config.preset, model.config.spacing_mm,
        tuple(model.config.patch_size), tuple(model.config.hu_window), model.config.cpp.peak_threshold,
    )
    return 0
