"""Batched decode on CPU: item by item (what ``CTSAM3D.decode`` does) vs one dense batched call.

    python benchmarks/batch_decode.py [--batch 4] [--runs 3] [--threads 2]

Cross-patch expansion decodes the neighbour patches of a step together. On CPU inference
``CTSAM3D.decode`` runs them one by one so that the SPADE folding of
``ctsam3d.modeling.spade_fold`` (batch of one) applies to each; this times that against the
decoder called on the whole batch (the dense γ/β path), for each preset, with first-click
prompts (one click per patch, zero previous mask: what an expansion patch gets). Random
weights (cost does not depend on them). Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from ctsam3d.modeling import build_model, get_preset

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["ctsam3d-lite", "ctsam3d-paper"])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(HERE / "results" / "batch_decode.json"))
    args = ap.parse_args(argv)
    if args.batch < 2 or args.runs < 1:
        raise SystemExit("batch_decode: --batch must be >= 2 and --runs >= 1")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for preset in args.presets:
        cfg = get_preset(preset)
        cfg.reference_exact = preset == "ctsam3d-paper"  # how the released weights run
        model = build_model(cfg).optimize_for_inference()
        n, size = args.batch, cfg.patch_size
        with torch.inference_mode():
            feats = model.encode(torch.rand(n, 1, *size))
            clicks = [[(size[0] // 2, size[1] // 2, (b + 1) * size[2] // (n + 1))] for b in range(n)]
            prompt = model.render_prompt(clicks, [[] for _ in range(n)], None)
            fmt_feats, fmt_prompt = [model._fmt(f) for f in feats], model._fmt(prompt)
            times = {"item_by_item": [], "batched_dense": []}
            model.decode(feats, prompt)  # warm-up (caches the zero-prompt fields)
            for _ in range(args.runs):  # interleaved: both see the same machine load
                t = time.perf_counter()
                a, _ = model.decode(feats, prompt)
                times["item_by_item"].append((time.perf_counter() - t) * 1e3)
                t = time.perf_counter()
                b, _ = model.mask_decoder(fmt_feats, fmt_prompt)
                times["batched_dense"].append((time.perf_counter() - t) * 1e3)
            diff = float((torch.sigmoid(a) - torch.sigmoid(b)).abs().max())
        row = {"preset": preset, "batch": n, **{f"{k}_ms_median": statistics.median(v) for k, v in times.items()},
               "max_abs_diff_sigmoid": diff}
        row["speedup"] = row["batched_dense_ms_median"] / row["item_by_item_ms_median"]
        rows.append(row)
    print(f"batched decode, {args.batch} first-click patches, {args.threads} threads, median of {args.runs}")
    print(f"{'preset':15} {'item by item ms':>16} {'one batch ms':>13} {'speed-up':>9} {'max diff':>9}")
    for r in rows:
        print(f"{r['preset']:15} {r['item_by_item_ms_median']:16.0f} {r['batched_dense_ms_median']:13.0f} "
              f"{r['speedup']:8.2f}x {r['max_abs_diff_sigmoid']:9.1e}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    machine = {"cpu": platform.processor() or platform.machine(), "logical_cpus": os.cpu_count(),
               "threads": args.threads, "torch": torch.__version__, "load_average_start": os.getloadavg()}
    out.write_text(json.dumps({"machine": machine, "command": " ".join(["python", "benchmarks/batch_decode.py",
                                                                         *(argv or sys.argv[1:])]),
                               "results": rows}, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
