"""Settings of the intensity-guided boundary refinement, compared on a validation set.

Reproduces how ``ctsam3d.inference.refine.Refinement``'s defaults were chosen (docs/training.md
§9): every setting runs the bundled model through ``ctsam3d.Session`` with the evaluation
protocol of ``ctsam3d evaluate`` (seed 0, first click at the distance-transform maximum), and the
table lists mean Dice after 1, 3 and 5 clicks. Choose on **validation** data (OpenKBP
validation by default), never on the held-out sets.

    python benchmarks/refine_grid.py                                  # OpenKBP validation, 5 clicks
    python benchmarks/refine_grid.py --max-cases 8 --json out.json    # a quicker look

The first grid (2026-12-05) also varied a Gaussian smoothing of the HU before the lookup (0, 0.7,
1.5 mm) with a monkeypatched session; the product has none (no smoothing was as good as any),
so this script does not offer it. One torch thread per process: run two side by side on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "openkbp" / "validation"

# (name, Refinement kwargs or None for the plain 0.5 threshold)
GRID = [
    ("plain 0.5", None),
    ("w=1 c=3 (default)", {}),
    ("w=0.5 c=3", {"weight": 0.5}),
    ("w=1.5 c=3", {"weight": 1.5}),
    ("w=1 c=2", {"cap": 2.0}),
    ("w=1 c=5", {"cap": 5.0}),
    ("w=2 c=5", {"weight": 2.0, "cap": 5.0}),
]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="validation folder (pairs format)")
    ap.add_argument("--catalogue", default="openkbp")
    ap.add_argument("--clicks", type=int, default=5)
    ap.add_argument("--max-cases", type=int, default=None)
    ap.add_argument("--only", default=None, help="comma-separated row numbers of the grid (0-based)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    if not args.data.exists():
        print(f"refine_grid: {args.data} not found (needs ../shared/data)", file=sys.stderr)
        return 2

    import torch

    torch.set_num_threads(1)
    from ctsam3d.evaluation import SessionMethod, evaluate
    from ctsam3d.inference.refine import Refinement
    from ctsam3d.modeling import load_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_model()
    rows = GRID if args.only is None else [GRID[int(i)] for i in args.only.split(",")]
    out = []
    print(f"{'setting':22s} " + " ".join(f"Dice@{k:<3d}" for k in (1, 3, args.clicks)) + "  seconds")
    for name, kw in rows:
        refine = False if kw is None else Refinement(**kw)
        method = SessionMethod(model, refine=refine, name="model")
        t0 = time.perf_counter()
        rep = evaluate(args.data, "pairs", [method], clicks=args.clicks, catalogue=args.catalogue,
                       max_cases=args.max_cases, progress=False)
        d = rep["dice_at_click"]["model"]
        row = {"setting": name, "refine": kw, "dice": {k: d[str(k)] for k in (1, 3, args.clicks)},
               "seconds": round(time.perf_counter() - t0, 1)}
        out.append(row)
        print(f"{name:22s} " + " ".join(f"{row['dice'][k]:.3f}   " for k in (1, 3, args.clicks)) + f"  {row['seconds']}")
    if args.json:
        args.json.write_text(json.dumps({"data": str(args.data), "clicks": args.clicks, "max_cases": args.max_cases,
                                         "rows": out}, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
