"""Per-structure HU statistics measured on real labelled CT (input of :mod:`.synthetic`).

The committed table ``hu_stats.json`` (next to this module) was measured on the
TotalSegmentator example abdomen/pelvis CT and its TotalSegmentator v2 label map (see its
``provenance`` entry). Regenerate it with::

    python -m ctsam3d.data.hu_stats \\
        --ct ../shared/data/totalseg_examples/example_ct.nii.gz \\
        --seg ../shared/data/totalseg_examples/example_seg_fast_force_split.nii.gz \\
        -o src/ctsam3d/data/hu_stats.json

Table layout (all HU values rounded to 0.1)::

    {"structures": {name: {"mean", "std", "p5", "p25", "p50", "p75", "p95", "voxels", "eroded"}},
     "background": {"fat": {... stats ..., "fraction"}, "soft_tissue": {..., "fraction"},
                    "air_lung": {..., "fraction"}, "outside_air": {...}},
     "provenance": {"sources", "catalogue", "date", "command", "version", "notes"}}

Structure statistics use the mask eroded by one voxel when that keeps at least
``MIN_ERODED`` voxels (``eroded: true``), so boundary partial volume does not widen them.
``background`` describes the *unlabelled* voxels inside the body (body = CT > -500 HU,
largest component, holes filled per axial slice): fat is -190..-30 HU, soft tissue /
muscle -29..150 HU, air/lung below -500 HU; ``fraction`` is each class's share of the
unlabelled body voxels.

Arrays are numpy ``[z, y, x]``; HU are Hounsfield units as stored in the file.
"""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path

import numpy as np

from ..errors import InputError

__all__ = ["measure_hu_stats", "load_hu_stats", "save_hu_stats", "HU_STATS_PATH", "BACKGROUND_RANGES"]

HU_STATS_PATH = Path(__file__).with_name("hu_stats.json")
PERCENTILES = (5, 25, 50, 75, 95)
MIN_ERODED = 50
#: unlabelled tissue classes inside the body: name -> (low, high) HU, inclusive
BACKGROUND_RANGES = {"fat": (-190, -30), "soft_tissue": (-29, 150), "air_lung": (-1024, -500)}


def _stats(values: np.ndarray) -> dict:
    v = values.astype(np.float64)
    out = {"mean": round(float(v.mean()), 1), "std": round(float(v.std()), 1)}
    for p, q in zip(PERCENTILES, np.percentile(v, PERCENTILES)):
        out[f"p{p}"] = round(float(q), 1)
    out["voxels"] = int(v.size)
    return out


def body_mask(ct_zyx: np.ndarray, threshold: float = -500.0) -> np.ndarray:
    """The patient's body: CT > ``threshold`` HU, largest 3D component, holes filled per axial slice.

    Args:
        ct_zyx: HU volume ``[z, y, x]``.

    Returns:
        bool ``[z, y, x]``.
    """
    from scipy import ndimage as ndi

    fg = ndi.binary_opening(ct_zyx > threshold, iterations=1)
    lab, n = ndi.label(fg)
    if n == 0:
        return np.zeros(ct_zyx.shape, bool)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    body = lab == int(sizes.argmax())
    for z in range(body.shape[0]):
        body[z] = ndi.binary_fill_holes(body[z])
    return body


def measure_hu_stats(ct_zyx: np.ndarray, seg_zyx: np.ndarray, names: dict[int, str]) -> dict:
    """Measure the statistics table (without provenance) from arrays.

    Args:
        ct_zyx: HU volume ``[z, y, x]``.
        seg_zyx: integer label map on the same grid ``[z, y, x]``.
        names: label id -> structure name (ids not listed are still excluded from the
            background, but get no entry).

    Returns:
        ``{"structures": {...}, "background": {...}}`` (see the module doc).
    """
    from scipy import ndimage as ndi

    if ct_zyx.shape != seg_zyx.shape:
        raise InputError(f"HU statistics: CT shape {ct_zyx.shape} differs from label shape {seg_zyx.shape}")
    structures = {}
    for i in sorted(int(v) for v in np.unique(seg_zyx) if v != 0):
        if i not in names:
            continue
        m = seg_zyx == i
        er = ndi.binary_erosion(m)
        use_eroded = int(er.sum()) >= MIN_ERODED
        s = _stats(ct_zyx[er if use_eroded else m])
        s["eroded"] = use_eroded
        structures[names[i]] = s
    body = body_mask(ct_zyx)
    free = body & (seg_zyx == 0)
    vals = ct_zyx[free]
    background = {}
    for name, (lo, hi) in BACKGROUND_RANGES.items():
        sel = vals[(vals >= lo) & (vals <= hi)]
        if sel.size:
            s = _stats(sel)
            s["fraction"] = round(float(sel.size / max(vals.size, 1)), 4)
            background[name] = s
    outside = ct_zyx[~body]
    if outside.size:
        background["outside_air"] = _stats(outside)
    return {"structures": structures, "background": background}


def measure_files(ct_path: str | Path, seg_path: str | Path, catalogue: str = "totalseg_v2") -> dict:
    """Read a CT and its label map (same grid) and measure the table, with provenance.

    Raises:
        InputError: missing/unreadable files, different grids, unknown catalogue.
    """
    import SimpleITK as sitk

    from ..anatomy import get_catalogue

    arrays = []
    for p, what in ((ct_path, "CT"), (seg_path, "label map")):
        if not Path(p).is_file():
            raise InputError(f"{p}: {what} file is missing")
        try:
            arrays.append(sitk.ReadImage(str(p)))
        except RuntimeError:
            raise InputError(f"{p}: cannot read the {what}") from None
    ct_img, seg_img = arrays
    if ct_img.GetSize() != seg_img.GetSize() or not np.allclose(ct_img.GetSpacing(), seg_img.GetSpacing(), rtol=1e-3):
        raise InputError(f"{seg_path}: label grid differs from the CT grid of {ct_path}")
    seg = sitk.GetArrayFromImage(seg_img)
    if seg.dtype.kind == "f":
        raise InputError(f"{seg_path}: label map is not an integer image")
    names = dict(get_catalogue(catalogue).labels)
    table = measure_hu_stats(sitk.GetArrayFromImage(ct_img), seg.astype(np.int64), names)
    from .._version import __version__

    table["provenance"] = {
        "sources": [str(ct_path), str(seg_path)],
        "catalogue": catalogue,
        "date": datetime.date.today().isoformat(),
        "command": "python -m ctsam3d.data.hu_stats " + " ".join(sys.argv[1:]) if __name__ == "__main__" else "ctsam3d.data.hu_stats.measure_files",
        "version": __version__,
        "notes": "One non-contrast abdomen/pelvis CT (3 mm); labels are TotalSegmentator model output, not manual.",
    }
    return table


def save_hu_stats(table: dict, path: str | Path = HU_STATS_PATH) -> Path:
    """Write the table as JSON (one structure per line block); returns the path."""
    p = Path(path)
    p.write_text(json.dumps(table, indent=1, sort_keys=False) + "\n", encoding="utf-8")
    return p


def load_hu_stats(path: str | Path | None = None) -> dict:
    """The statistics table (default: the committed ``hu_stats.json``).

    Raises:
        InputError: missing or malformed file.
    """
    p = Path(path) if path is not None else HU_STATS_PATH
    if not p.is_file():
        raise InputError(f"{p}: HU statistics file is missing (regenerate: python -m ctsam3d.data.hu_stats)")
    try:
        table = json.loads(p.read_text(encoding="utf-8"))
        table["structures"], table["background"]  # noqa: B018 - shape check
    except (ValueError, KeyError, TypeError):
        raise InputError(f"{p}: not a HU statistics table (needs 'structures' and 'background')") from None
    return table


def main(argv: list[str] | None = None) -> int:
    """CLI: measure a CT + label map and write the JSON table."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m ctsam3d.data.hu_stats", description=__doc__.splitlines()[0])
    ap.add_argument("--ct", required=True, help="CT volume (HU)")
    ap.add_argument("--seg", required=True, help="integer label map on the CT's grid")
    ap.add_argument("--catalogue", default="totalseg_v2", help="anatomy catalogue naming the label ids")
    ap.add_argument("-o", "--output", default=str(HU_STATS_PATH), help="output JSON")
    args = ap.parse_args(argv)
    try:
        table = measure_files(args.ct, args.seg, args.catalogue)
    except InputError as exc:
        print(f"hu_stats: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {save_hu_stats(table, args.output)} ({len(table['structures'])} structures)")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
