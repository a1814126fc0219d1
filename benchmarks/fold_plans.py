"""What each SPADE folding plan costs on the paper decoder's later-click prompts.

    python benchmarks/fold_plans.py [--runs 7] [--threads 2]

For the prompts of ``benchmarks/model_cost.py`` (a later click on each organ of the bundled
example CT, the synthetic patch-filling organ, a first click), resized to the paper decoder's
32³ and 16³ grids as its reference-exact mode resizes them, this prints per grid:

* ``need``: the voxels whose γβ differ from a cached field (the prompt's support grown by the
  two 3×3×3 convs' reach, less the constant interior), as a fraction of the grid;
* the estimate of :func:`ctsam3d.modeling.spade_fold.plan_recompute` for one box per connected
  group and for the voxel-by-voxel plan, and the plan it picks;
* the measured time of one norm's exact γβ recompute (shared conv + γβ conv, 128 hidden →
  2C, random weights) by boxes, voxel by voxel, and densely over the whole grid (median of
  ``--runs``, interleaved), and each as a fraction of the dense time.

Prints a table and writes ``benchmarks/results/fold_plans.json``; the measured fractions are
what :data:`~ctsam3d.modeling.spade_fold.VOXEL_COST` and
:data:`~ctsam3d.modeling.spade_fold.MAX_RECOMPUTE_FRACTION` are calibrated against.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def _prompts(model, cfg) -> dict:
    sys.path.insert(0, str(HERE))
    from model_cost import _large_organ_prompt, _organ_prompts

    prompts = {k.split(":", 1)[1]: v for k, v in _organ_prompts(model, cfg).items()}
    prompts["large organ"] = _large_organ_prompt(model, cfg)
    c = [s // 2 for s in cfg.patch_size]
    prompts["first click"] = model.render_prompt([[tuple(c)]], [[]], None)
    return prompts


def _dense(norm, prompt):
    """The decoder's dense inference path: shared conv + ReLU, then γ and β as one conv."""
    import torch.nn.functional as F

    from ctsam3d.modeling.layers import conv3d
    from ctsam3d.modeling.spade_fold import gamma_beta_weights

    shared = norm.mlp_shared[0]
    a = F.relu(conv3d(prompt, shared.weight, shared.bias, shared.padding[0]))
    w, b = gamma_beta_weights(norm)
    return conv3d(a, w, b, norm.mlp_gamma.padding[0])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(HERE / "results" / "fold_plans.json"))
    args = ap.parse_args(argv)

    from ctsam3d.modeling import build_model, get_preset
    from ctsam3d.modeling import spade_fold as sf
    from ctsam3d.modeling.prompts import PromptPyramid

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = get_preset("ctsam3d-paper")
    cfg.reference_exact = True
    model = build_model(cfg).optimize_for_inference()
    dec = model.mask_decoder
    blocks = {32: dec.spade5, 16: dec.spade4}  # the two largest grids: 128 and 256 channels
    rows = []
    with torch.inference_mode():
        for name, prompt in _prompts(model, cfg).items():
            pyramid = PromptPyramid(prompt, reference=True)
            for edge, block in blocks.items():
                norm = block.norm_0
                p = pyramid.at((edge,) * 3).contiguous(memory_format=torch.channels_last_3d)
                interior = sf.constant_interior(p, 2)
                grown = sf.needed_voxels(p, 2, interior)
                boxes = sf._boxes_of(grown)
                box_est, voxel_est = sf.boxes_cost(boxes, grown.shape), sf.voxels_cost(grown)
                _, chosen, _ = sf.plan_recompute(p, 2, interior, width=10**9)
                plans = {
                    "boxes": lambda: sf._recompute([norm], p, "boxes", boxes),
                    "voxels": lambda: sf._recompute([norm], p, "voxels", sf._voxels_of(grown)),
                    "dense": lambda: _dense(norm, p),
                }
                times = {k: [] for k in plans}
                for f in plans.values():
                    f()  # warm-up (and the cached concatenated weights)
                for _ in range(args.runs):
                    for k, f in plans.items():
                        t = time.perf_counter()
                        f()
                        times[k].append((time.perf_counter() - t) * 1e3)
                med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
                rows.append({
                    "prompt": name, "grid": edge, "need": float(grown.float().mean()),
                    "estimate_boxes": box_est, "estimate_voxels": voxel_est, "chosen": chosen,
                    **{f"{k}_ms": v for k, v in med.items()},
                    **{f"{k}_fraction": med[k] / med["dense"] for k in ("boxes", "voxels")},
                })
    print(f"{'prompt':15} {'grid':>4} {'need':>5} {'est box':>7} {'est vox':>7} {'chosen':>6} "
          f"{'boxes ms':>8} {'voxels ms':>9} {'dense ms':>8} {'box/dense':>9} {'vox/dense':>9}")
    for r in rows:
        print(f"{r['prompt']:15} {r['grid']:4d} {r['need']:5.2f} {r['estimate_boxes']:7.2f} "
              f"{r['estimate_voxels']:7.2f} {r['chosen']:>6} {r['boxes_ms']:8.0f} {r['voxels_ms']:9.0f} "
              f"{r['dense_ms']:8.0f} {r['boxes_fraction']:9.2f} {r['voxels_fraction']:9.2f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from model_cost import _cpu_name

    machine = {"cpu": _cpu_name(), "torch": torch.__version__, "threads": args.threads}
    out.write_text(json.dumps({"machine": machine, "command": "python benchmarks/fold_plans.py "
                               + " ".join(argv or sys.argv[1:]), "results": rows}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
