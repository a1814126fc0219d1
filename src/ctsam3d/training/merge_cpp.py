"""Put a separately trained CPP net into a model: its weights, calibrated threshold and frame.

The cross-patch prompt (CPP) net is trained from ground-truth masks only (``train_parts: cpp``),
so it does not depend on the segmentation network and can be trained in parallel with it
(docs/training.md §9: stage 2 next to stage 1). This module joins the two:

    python -m ctsam3d.training.merge_cpp BASE_MODEL --cpp-from CPP_MODEL -o NEW_MODEL

writes ``NEW_MODEL`` = ``BASE_MODEL`` with every ``cpp_predictor.*`` weight of ``CPP_MODEL`` and
its ``cpp.peak_threshold`` and ``cpp.frame`` (the segmentation network, structures and training
summary stay the base's; ``training["cpp_from"]`` records where the CPP net came from). The
same is available while exporting a checkpoint:
``python -m ctsam3d.training.export_checkpoint CHECKPOINT -o NEW_MODEL --cpp-from CPP_MODEL``.

Both models must describe the same network apart from the CPP calibration: the same preset,
patch, spacing, HU windows, sizes of every part — anything else differing is a
:class:`~ctsam3d.errors.CheckpointError` naming the keys. Nothing is overwritten.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["apply_cpp", "config_differences", "merge_cpp", "show_differences"]

#: config keys that may differ between the base and the CPP model
_FREE = {"cpp.peak_threshold", "cpp.frame", "structures", "training", "package_version"}


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if key in _FREE:
            continue
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        else:
            out[key] = v
    return out


def config_differences(base_config, cpp_config) -> list[str]:
    """Keys (dotted) in which two ModelConfigs differ, ignoring the CPP calibration, the
    structure list, the training summary and the package version."""
    a, b = _flat(base_config.to_dict()), _flat(cpp_config.to_dict())
    return sorted(k for k in set(a) | set(b) if a.get(k, "<absent>") != b.get(k, "<absent>"))


def show_differences(a_config, b_config, keys: list[str], limit: int = 4) -> str:
    """``"key: value_a vs value_b, ..."`` for the first ``limit`` of ``keys`` (dotted, as
    :func:`config_differences` returns them), for error messages."""
    a, b = _flat(a_config.to_dict()), _flat(b_config.to_dict())
    return ", ".join(f"{k}: {a.get(k, '<absent>')!r} vs {b.get(k, '<absent>')!r}" for k in keys[:limit])


def apply_cpp(model, cpp_model, source: str) -> None:
    """Copy ``cpp_model``'s CPP weights, ``cpp.peak_threshold`` and ``cpp.frame`` into ``model``
    (in place).

    Raises:
        CheckpointError: the two configs differ elsewhere (the message lists the keys).
    """
    import torch

    from ..errors import CheckpointError

    diff = config_differences(model.config, cpp_model.config)
    if diff:
        shown = show_differences(model.config, cpp_model.config, diff)
        raise CheckpointError(f"--cpp-from {source}: its model config differs from the base model's in "
                              f"{len(diff)} key(s) ({shown}); both must be the same network")
    src = {k: v for k, v in cpp_model.state_dict().items() if k.startswith("cpp_predictor.")}
    own = {k for k in model.state_dict() if k.startswith("cpp_predictor.")}
    if set(src) != own or not src:
        raise CheckpointError(f"--cpp-from {source}: its CPP net's weights do not match the base model's")
    with torch.no_grad():
        state = model.state_dict()
        for k, v in src.items():
            state[k].copy_(v)
    model.config.cpp.peak_threshold = cpp_model.config.cpp.peak_threshold
    model.config.cpp.frame = cpp_model.config.cpp.frame
    training = dict(model.config.training or {})
    ct = cpp_model.config.training or {}
    training["cpp_from"] = {
        "model": str(source),
        "steps": ct.get("steps"),
        "validation": {k: v for k, v in (ct.get("validation") or {}).items() if k.startswith("cpp_")},
        "recipe": ct.get("recipe"),
    }
    model.config.training = training


def merge_cpp(base: str | Path, cpp_from: str | Path, out_dir: str | Path) -> Path:
    """Write ``out_dir`` = ``base`` model with ``cpp_from``'s CPP net (see the module doc).

    Raises:
        CheckpointError: unreadable model or differing configs.
        FileExistsError: ``out_dir`` already holds a model.
    """
    from ..modeling import load_model, save_model

    out_dir = Path(out_dir)
    if (out_dir / "model.safetensors").exists() or (out_dir / "config.json").exists():
        raise FileExistsError(f"{out_dir}: already holds a model; choose a new folder")
    model = load_model(str(base), device="cpu")
    apply_cpp(model, load_model(str(cpp_from), device="cpu"), str(cpp_from))
    save_model(model, out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    from ..errors import CtSam3dError

    p = argparse.ArgumentParser(prog="python -m ctsam3d.training.merge_cpp", description=__doc__.splitlines()[0])
    p.add_argument("base", help="model folder (or name) whose segmentation network is kept")
    p.add_argument("--cpp-from", required=True, help="model folder whose CPP net (weights, threshold, frame) is taken")
    p.add_argument("-o", "--output", required=True, help="new model folder")
    args = p.parse_args(argv)
    try:
        out = merge_cpp(args.base, args.cpp_from, args.output)
    except (CtSam3dError, FileExistsError) as exc:
        print(f"merge_cpp: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
