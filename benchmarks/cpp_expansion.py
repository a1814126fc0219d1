"""Cross-patch expansion after one click: none vs mask continuation vs CPP peaks.

    python benchmarks/cpp_expansion.py --model MODEL --ct CT --label LABELMAP [--min-extent 150] \
        [--out benchmarks/results/cpp_expansion_NAME.json]

For every structure of ``LABELMAP`` (resampled onto ``CT``'s grid, nearest neighbour) whose
extent along some axis is at least ``--min-extent`` mm (longer than most of a lite patch): one
positive click at the structure's distance-transform maximum in three fresh sessions — expansion
off, expansion by mask continuation (``ExpansionConfig(prompts="mask")``), expansion ``auto``
(CPP peaks when the model's ``cpp.peak_threshold`` is set). Per session: Dice against the label,
patches segmented, CPP evaluations, how many automatic clicks (CPP / continuation) landed on the
structure, wall seconds of the click. Prints a table, writes JSON. One torch thread
(``--threads``). Only Dice of one click: a statement about expansion, not about the model.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage


def main(argv: list[str] | None = None) -> int:
    import ctsam3d
    from ctsam3d.inference.expansion import ExpansionConfig
    from ctsam3d.io.read import read_volume

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--ct", required=True, help="CT file or DICOM folder")
    p.add_argument("--label", required=True, help="label map (any grid; resampled onto the CT's)")
    p.add_argument("--min-extent", type=float, default=150.0, help="mm; shorter structures are skipped")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None, help="JSON file to write")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = ctsam3d.load_model(args.model)
    ct = read_volume(args.ct)
    labimg = sitk.Resample(sitk.ReadImage(args.label), ct, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    labs = sitk.GetArrayFromImage(labimg)
    sp = np.array(ct.GetSpacing())[::-1]
    modes = (("none", False), ("continuation", ExpansionConfig(prompts="mask")), ("auto", True))
    rows = []
    for lid in np.unique(labs[labs > 0]):
        lab = labs == lid
        nz = np.argwhere(lab)
        ext = float(((nz.max(0) - nz.min(0) + 1) * sp).max())
        if ext < args.min_extent:
            continue
        zyx = np.unravel_index(int(np.argmax(ndimage.distance_transform_edt(lab, sampling=sp))), lab.shape)
        row = {"label": int(lid), "extent_mm": round(ext, 1)}
        for name, exp in modes:
            s = ctsam3d.Session(model, expansion=exp)
            s.set_image(ct)
            t0 = time.perf_counter()
            rec = s.add_click(tuple(int(v) for v in zyx[::-1]))
            wall = time.perf_counter() - t0
            m = sitk.GetArrayFromImage(s.result()) > 0
            auto = [c for c in s.clicks() if c.source in ("cpp", "continuation")]
            on = sum(bool(lab[tuple(int(round(v)) for v in c.index_ijk[::-1])]) for c in auto)
            row[name] = {"dice": float(2 * (m & lab).sum() / (m.sum() + lab.sum())), "patches": rec.n_patches,
                         "cpp_evaluations": int(getattr(rec, "cpp_evaluations", 0) or 0),
                         "auto_clicks": len(auto), "auto_clicks_on_structure": on, "seconds": round(wall, 3)}
        rows.append(row)
        print(f"{row['label']:4d} {ext:5.0f} mm  " + "  ".join(
            f"{n} {row[n]['dice']:.3f} (p{row[n]['patches']}, {row[n]['auto_clicks_on_structure']}/{row[n]['auto_clicks']})"
            for n, _ in modes), flush=True)
    mean = {n: float(np.mean([r[n]["dice"] for r in rows])) if rows else None for n, _ in modes}
    print(f"mean Dice over {len(rows)} structures: " + ", ".join(f"{n} {v:.4f}" for n, v in mean.items() if v is not None))
    if args.out:
        out = {"model": args.model, "cpp": model.config.cpp.__dict__, "ct": args.ct, "label": args.label,
               "min_extent_mm": args.min_extent, "threads": args.threads, "mean_dice": mean, "structures": rows}
        Path(args.out).write_text(json.dumps(out, indent=1, default=list) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
