"""Resolution ceiling: the Dice a perfect model could reach when it works on a coarser grid.

    python benchmarks/resolution_ceiling.py --data ../shared/data/openkbp/validation --spacing 3

For each ``<x>_oars.nii.gz`` label map in ``--data`` (OpenKBP pairs layout, catalogue
``openkbp``) and each organ in it: the organ mask is resampled to the canonical grid at
``--spacing`` mm as training targets are (nearest neighbour, ``ctsam3d.geometry.to_canonical``)
and pasted back onto the original grid as sessions paste probabilities (linear, > 0.5); Dice
against the original mask. A second row does the same from a smoothed mask (Gaussian σ =
0.42 · spacing, the partial-volume fraction a model could predict). If these are far above a
model's Dice, the model, not the grid, is the limit. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ctsam3d.anatomy import get_catalogue
from ctsam3d.geometry.canonical import to_canonical

HERE = Path(__file__).resolve().parent


def _back(img: sitk.Image, ref: sitk.Image) -> np.ndarray:
    out = sitk.Resample(sitk.Cast(img, sitk.sitkFloat32), ref, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out) > 0.5


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / max(1, a.sum() + b.sum()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="folder of <x>_oars.nii.gz label maps")
    ap.add_argument("--spacing", type=float, default=3.0, help="model grid spacing in mm (lite: 3)")
    ap.add_argument("--out", default=str(HERE / "results" / "resolution_ceiling.json"))
    args = ap.parse_args(argv)
    files = sorted(Path(args.data).glob("*_oars.nii.gz"))
    if not files:
        raise SystemExit(f"resolution_ceiling: no *_oars.nii.gz label maps in {args.data}")
    names = dict(get_catalogue("openkbp").labels)
    rows: dict[str, dict[str, list[float]]] = {"nearest": {}, "smoothed": {}}
    for f in files:
        lab = sitk.ReadImage(str(f))
        arr = sitk.GetArrayFromImage(lab)
        for value, name in names.items():
            m = arr == value
            if not m.any():
                continue
            img = sitk.GetImageFromArray(m.astype(np.uint8))
            img.CopyInformation(lab)
            coarse = to_canonical(img, args.spacing, is_label=True)
            rows["nearest"].setdefault(name, []).append(_dice(_back(coarse, lab), m))
            smooth = sitk.SmoothingRecursiveGaussian(sitk.Cast(img, sitk.sitkFloat32), [0.42 * args.spacing] * 3)
            frac = sitk.Resample(smooth, coarse, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
            rows["smoothed"].setdefault(name, []).append(_dice(_back(frac, lab), m))
    organs = sorted(rows["nearest"])
    print(f"resolution ceiling, {args.spacing} mm grid, {len(files)} label maps in {args.data}")
    print(f"{'target':10} {'mean':>6} " + " ".join(f"{o[:12]:>12}" for o in organs))
    result = {"data": args.data, "spacing_mm": args.spacing, "cases": len(files), "rows": {}}
    for kind, per in rows.items():
        allv = [v for o in organs for v in per[o]]
        result["rows"][kind] = {"mean_all_runs": float(np.mean(allv)), "n": len(allv),
                                "per_structure": {o: float(np.mean(per[o])) for o in organs}}
        print(f"{kind:10} {np.mean(allv):6.3f} " + " ".join(f"{np.mean(per[o]):12.3f}" for o in organs))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
