"""Expansion ceiling: the most cross-patch expansion can add to a one-click mask, per patch geometry.

    python benchmarks/expansion_ceiling.py \
        --label ../shared/data/totalseg_examples/aorta_crop/aorta.nii.gz

A session's first click opens one patch centred on the click (``Lattice.patch_start_around``
on the model's canonical lattice); without expansion the mask can only be what lies inside
that patch. For a label mask and the protocol's first click (its distance-transform maximum,
``ctsam3d.clicks.first_click``), this prints, for each geometry (spacing in mm and patch size in
voxels): the share of the structure's voxels whose centres lie inside the first patch ``f``,
the Dice a perfect model reaches without expansion (``2f / (1 + f)``: the structure clipped to
the patch) and the most expansion could then add (``1 - 2f / (1 + f)``, when it completes the
structure exactly). A gain above that ceiling is only possible when the in-patch mask is itself
wrong. Writes JSON next to the table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ctsam3d.clicks import first_click
from ctsam3d.geometry import index_to_lps
from ctsam3d.inference.lattice import Lattice

HERE = Path(__file__).resolve().parent

#: (name, spacing mm, patch voxels): the lite presets and the paper preset.
GEOMETRIES = (("lite (ctsam3d-lite-wb)", 3.0, 64), ("paper (ctsam3d-paper)", 1.5, 64))


def inside_fraction(label: sitk.Image, spacing: float, patch: int) -> tuple[float, tuple[int, int, int]]:
    """Share of ``label``'s nonzero voxels inside the patch its first click opens, and the click (z, y, x)."""
    mask = sitk.GetArrayFromImage(label) > 0
    if not mask.any():
        raise SystemExit("expansion_ceiling: the label is empty")
    click = first_click(mask, spacing_zyx=label.GetSpacing()[::-1])
    lat = Lattice.for_image(label, spacing, patch)
    to_lattice = lambda zyx: lat.world_to_zyx(index_to_lps(label, np.asarray(zyx, float)[..., ::-1]))  # noqa: E731
    start = np.asarray(lat.patch_start_around(to_lattice(click)))
    pos = to_lattice(np.argwhere(mask))
    # A lattice voxel v belongs to the patch when start <= v < start + patch; an input voxel centre
    # is covered by the patch's voxels when it lies within half a lattice voxel of them.
    inside = ((pos >= start - 0.5) & (pos < start + patch - 0.5)).all(axis=1)
    return float(inside.mean()), tuple(int(c) for c in click)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--label", required=True, help="binary label image (NIfTI, NRRD, ...)")
    ap.add_argument("--out", default=str(HERE / "results" / "expansion_ceiling.json"))
    args = ap.parse_args(argv)
    path = Path(args.label)
    if not path.is_file():
        raise SystemExit(f"expansion_ceiling: --label {args.label}: no such file")
    label = sitk.ReadImage(str(path))
    rows = []
    for name, spacing, patch in GEOMETRIES:
        f, click = inside_fraction(label, spacing, patch)
        best = 2 * f / (1 + f)
        rows.append({"geometry": name, "spacing_mm": spacing, "patch_voxels": patch, "patch_mm": spacing * patch,
                     "first_click_zyx": list(click), "inside_fraction": round(f, 4),
                     "best_dice_without_expansion": round(best, 4), "max_expansion_gain": round(1 - best, 4)})
    print(f"label: {path.name}  first click (z, y, x) {rows[0]['first_click_zyx']}")
    print(f"{'geometry':26s} {'patch':>8s} {'inside':>7s} {'best no-exp':>12s} {'max gain':>9s}")
    for r in rows:
        print(f"{r['geometry']:26s} {r['patch_mm']:6.0f}mm {r['inside_fraction']:7.3f} "
              f"{r['best_dice_without_expansion']:12.3f} {r['max_expansion_gain']:9.3f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"label": path.name, "rows": rows}, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
