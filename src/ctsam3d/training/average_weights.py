"""Average the weights of several fine-tunes of one model (a "model soup").

    python -m ctsam3d.training.average_weights A B [C ...] [--weights 0.5 0.5] -o NEW_MODEL

Fine-tunes that start from the same weights usually stay in one basin of the loss, and the
element-wise average of their parameters often keeps what each gained while losing less of what
each forgot (Wortsman et al., "Model soups", ICML 2022). ``ctsam3d-lite-wb`` stage 6 is such an
average (docs/training.md §9, checkpoints/wholebody-lite-bolus/README.md).

Every source must describe the same network — the same config apart from the structure list,
the training record and the package version — and carry the same CPP net (weights and
calibration: an average of CPP nets would have no calibrated threshold; put one in afterwards
with :mod:`ctsam3d.training.merge_cpp`). Anything else is a :class:`CheckpointError` naming the
source and what differs. Floating-point tensors are averaged in float64 and stored in their own
dtype; any other tensor must be equal in every source. The new model's ``config.json`` keeps
the first source's config; its ``training`` record lists each source with its weight and its
own training record, so the recipe stays traceable. Nothing is overwritten.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

__all__ = ["average_models"]


def _weights(n: int, weights: Sequence[float] | None) -> list[float]:
    from ..errors import CheckpointError

    if weights is None:
        return [1.0 / n] * n
    w = [float(x) for x in weights]
    if len(w) != n:
        raise CheckpointError(f"--weights: {len(w)} weight(s) for {n} models; give one per model")
    if any(not (x > 0) for x in w):
        raise CheckpointError(f"--weights: every weight must be > 0, got {w}")
    if abs(sum(w) - 1.0) > 1e-6:
        raise CheckpointError(f"--weights: must sum to 1, got {w} (sum {sum(w):.6g})")
    return w


def average_models(
    sources: Sequence[str | Path],
    out_dir: str | Path,
    weights: Sequence[float] | None = None,
    note: str | None = None,
) -> Path:
    """Write ``out_dir`` = the weighted average of the models ``sources`` (folders or names).

    Args:
        sources: two or more model folders (or bundled / installed model names) of one network.
        out_dir: new model folder.
        weights: one positive weight per source, summing to 1; None = uniform.
        note: a sentence for ``training["history"]`` (what the average is and why).

    Raises:
        CheckpointError: fewer than two sources, bad weights, an unreadable model, configs that
            describe different networks, differing CPP nets, or unequal non-float tensors.
        FileExistsError: ``out_dir`` already holds a model.
    """
    import torch

    from ..errors import CheckpointError
    from ..modeling import load_model, save_model
    from .merge_cpp import config_differences, show_differences

    out_dir = Path(out_dir)
    if (out_dir / "model.safetensors").exists() or (out_dir / "config.json").exists():
        raise FileExistsError(f"{out_dir}: already holds a model; choose a new folder")
    if len(sources) < 2:
        raise CheckpointError(f"average_weights: need at least two models, got {len(sources)}")
    w = _weights(len(sources), weights)
    models = [load_model(str(s), device="cpu") for s in sources]
    first = models[0]
    states = [m.state_dict() for m in models]
    for src, m, st in zip(sources[1:], models[1:], states[1:]):
        diff = config_differences(first.config, m.config)
        if (m.config.cpp.peak_threshold, m.config.cpp.frame) != (first.config.cpp.peak_threshold, first.config.cpp.frame):
            diff.append("cpp calibration")
        if diff:
            raise CheckpointError(f"{src}: not the same network as {sources[0]} "
                                  f"({show_differences(first.config, m.config, diff)})")
        for k, v in st.items():
            if k.startswith("cpp_predictor.") and not torch.equal(v, states[0][k]):
                raise CheckpointError(
                    f"{src}: its CPP net differs from {sources[0]}'s ({k}); average the segmentation "
                    "networks of models that share one CPP net, or merge one in afterwards (merge_cpp)"
                )
    averaged = {}
    for k, v0 in states[0].items():
        if v0.is_floating_point():
            acc = sum(wi * st[k].double() for wi, st in zip(w, states))
            averaged[k] = acc.to(v0.dtype)
        else:
            for src, st in zip(sources[1:], states[1:]):
                if not torch.equal(st[k], v0):
                    raise CheckpointError(f"{src}: {k} is not a float tensor and differs from {sources[0]}'s")
            averaged[k] = v0.clone()
    with torch.no_grad():
        first.load_state_dict(averaged, strict=True)
    structures = sorted({s for m in models for s in (m.config.structures or [])})
    first.config.structures = structures
    first.config.training = {
        "history": note or f"element-wise weighted average of {len(sources)} models (ctsam3d.training.average_weights)",
        "averaged_from": [
            {"model": str(s), "weight": wi, "training": m.config.training or {}}
            for s, wi, m in zip(sources, w, models)
        ],
    }
    save_model(first, out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    from ..errors import CtSam3dError

    p = argparse.ArgumentParser(prog="python -m ctsam3d.training.average_weights", description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", help="two or more model folders (or names) of one network")
    p.add_argument("--weights", nargs="+", type=float, help="one weight per model, > 0, summing to 1 (default: uniform)")
    p.add_argument("--note", help="what the average is, for the new model's training record")
    p.add_argument("-o", "--output", required=True, help="new model folder")
    args = p.parse_args(argv)
    try:
        out = average_models(args.models, args.output, args.weights, args.note)
    except (CtSam3dError, FileExistsError) as exc:
        print(f"average_weights: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
