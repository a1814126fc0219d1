"""How much one click's mask depends on where it lands: Dice of one click at random interior voxels.

The evaluation protocol's first click sits at the structure's distance-transform maximum, the
best place there is; a user clicks anywhere inside. For every structure of the chosen cases this
script clicks ``--per-structure`` voxels drawn at random (seeded) from the structure eroded by
``--erode`` voxels (the structure itself when that leaves nothing), each once in a fresh object
of one :class:`ctsam3d.Session` (default settings), and reports Dice of the resulting mask on the
CT's own grid: mean, min and max per structure, and the mean over structures. Prints a table,
writes JSON (``--json``)::

    python benchmarks/one_click_scan.py --data docs/results/manifests/wholebody_heldout.json \\
        --catalogue totalseg_v2 --model ctsam3d-lite-wb --cases example_ct_dicom \\
        --structures liver,spleen,stomach,pancreas,aorta --json benchmarks/results/one_click_scan_heldout.json

One PyTorch thread unless ``OMP_NUM_THREADS`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from click_drops import add_dataset_arguments, iter_targets, load_quietly  # (benchmarks/ is on sys.path)
from scipy import ndimage


def interior_voxels(target: np.ndarray, n: int, erode: int, rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """``n`` distinct ``(z, y, x)`` voxels of ``target`` eroded by ``erode`` voxels (all of it when
    erosion empties it), drawn with ``rng``."""
    inner = ndimage.binary_erosion(target, iterations=erode) if erode > 0 else target
    if not inner.any():
        inner = target
    cand = np.argwhere(inner)
    pick = rng.choice(len(cand), size=min(n, len(cand)), replace=False)
    return [tuple(int(v) for v in cand[i]) for i in sorted(pick)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_dataset_arguments(ap, model_required=False)
    ap.add_argument("--per-structure", type=int, default=8, help="random clicks per structure")
    ap.add_argument("--erode", type=int, default=2, help="voxels eroded before drawing clicks")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    import torch

    from ctsam3d import Session
    from ctsam3d.evaluation.metrics import dice

    model = load_quietly(args.model)
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    rows = []
    for case, _, session, name, target in iter_targets(args, lambda: Session(model)):
        dices, clicks = [], []
        for z, y, x in interior_voxels(target, args.per_structure, args.erode, rng):
            session.reset()
            session.add_click((x, y, z))  # ITK index (i, j, k)
            dices.append(dice(sitk.GetArrayViewFromImage(session.result()) > 0, target))
            clicks.append([x, y, z])
        row = {"case": case.case_id, "structure": name, "voxels": int(target.sum()),
               "dice": [round(d, 4) for d in dices], "clicks_ijk": clicks,
               "mean": round(float(np.mean(dices)), 4), "min": round(float(np.min(dices)), 4),
               "max": round(float(np.max(dices)), 4)}
        rows.append(row)
        print(f"{case.case_id} {name}: mean {row['mean']:.3f} (min {row['min']:.3f}, max {row['max']:.3f})",
              file=sys.stderr)
    print(f"\n{'case':18s} {'structure':32s} {'voxels':>9s} {'n':>3s} {'mean':>6s} {'min':>6s} {'max':>6s}")
    for r in rows:
        print(f"{r['case']:18s} {r['structure']:32s} {r['voxels']:9d} {len(r['dice']):3d} "
              f"{r['mean']:6.3f} {r['min']:6.3f} {r['max']:6.3f}")
    overall = round(float(np.mean([r["mean"] for r in rows])), 4) if rows else None
    print(f"mean over {len(rows)} structures: {overall}")
    if args.json:
        out = {"command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]), "model": args.model,
               "data": args.data, "per_structure": args.per_structure, "erode": args.erode, "seed": args.seed,
               "mean_over_structures": overall, "rows": rows, "elapsed_s": round(time.perf_counter() - t0, 1),
               "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                           "torch_threads": torch.get_num_threads()}}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
