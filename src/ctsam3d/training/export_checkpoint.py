"""Export a model folder from a training checkpoint, e.g. while the run is still going.

``python -m ctsam3d.training.export_checkpoint CHECKPOINT -o MODEL_DIR`` writes
``model.safetensors`` + ``config.json`` (:func:`ctsam3d.modeling.save_model`) from the
network weights and model config stored in a checkpoint of :mod:`ctsam3d.training.loop`,
so an interim state can be evaluated (``ctsam3d evaluate --model MODEL_DIR``) without
stopping or touching the run. The checkpoint is only read.

The CPP peak threshold follows the loop's export rule when no CPP validation is at hand:
a run that does not train the CPP net (``sampler.cpp: false``) keeps its initial model's
calibration (``init_weights``; None without one, or when that model can no longer be loaded —
a warning says so); a run that trains it gets None (sessions
continue masks through the patch overlap) until a validation calibrates it — never the
preset's uncalibrated default.

``--cpp-from CPP_MODEL`` replaces the CPP net with one trained separately (weights, calibrated
threshold and frame; :mod:`ctsam3d.training.merge_cpp`, which refuses a model of another
network).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["export_checkpoint"]


def export_checkpoint(checkpoint: str | Path, out_dir: str | Path, cpp_from: str | Path | None = None) -> Path:
    """Write the checkpoint's network as a model folder; returns ``out_dir``. ``cpp_from``: a
    model folder whose CPP net (weights, ``cpp.peak_threshold``, ``cpp.frame``) replaces the
    checkpoint's (:func:`ctsam3d.training.merge_cpp.apply_cpp`).

    Raises:
        CheckpointError: unreadable checkpoint, or one without a model config.
        FileExistsError: ``out_dir`` already holds a model (nothing is overwritten).
    """
    from ..errors import CheckpointError
    from ..modeling import load_model, save_model
    from ..modeling.checkpoint import load_state_strict
    from ..modeling.config import ModelConfig
    from ..modeling.ctsam3d import build_model
    from .checkpoint import load_checkpoint

    out_dir = Path(out_dir)
    if (out_dir / "model.safetensors").exists() or (out_dir / "config.json").exists():
        raise FileExistsError(f"{out_dir}: already holds a model; choose a new folder")
    st = load_checkpoint(checkpoint)
    if "model_config" not in st:
        raise CheckpointError(f"{checkpoint}: has no model_config (written by an older version?)")
    mcfg = ModelConfig.from_dict(st["model_config"], source=f"{checkpoint}: model_config")
    tcfg = st.get("train_config") or {}
    init = tcfg.get("init_weights")
    mcfg.cpp.peak_threshold = None
    if not (tcfg.get("sampler") or {}).get("cpp", True) and init and cpp_from is None:
        try:
            mcfg.cpp.peak_threshold = load_model(init).config.cpp.peak_threshold
        except CheckpointError as exc:  # e.g. a bundled model since removed: no calibration to keep
            print(f"export_checkpoint: warning: init_weights {init} cannot be loaded ({exc}); "
                  f"exported without a CPP peak threshold", file=sys.stderr)
    mcfg.training = {
        "steps": int(st["step"]),
        "preset": mcfg.preset,
        "exported_from_checkpoint": str(checkpoint),
        "recipe": {k: v for k, v in tcfg.items() if k != "output_dir"},
    }
    model = build_model(mcfg)
    load_state_strict(model, st["model"], str(checkpoint))
    if cpp_from is not None:
        from .merge_cpp import apply_cpp

        apply_cpp(model, load_model(str(cpp_from), device="cpu"), str(cpp_from))
    save_model(model, out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    from ..errors import CtSam3dError

    p = argparse.ArgumentParser(prog="python -m ctsam3d.training.export_checkpoint", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="a checkpoint.pt written by ctsam3d train")
    p.add_argument("-o", "--output", required=True, help="new model folder")
    p.add_argument("--cpp-from", default=None, help="model folder whose CPP net (weights, threshold, frame) replaces the checkpoint's")
    args = p.parse_args(argv)
    try:
        out = export_checkpoint(args.checkpoint, args.output, args.cpp_from)
    except (CtSam3dError, FileExistsError) as exc:
        print(f"export_checkpoint: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
