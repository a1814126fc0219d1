"""Why Dice falls after a click: a per-click trace of the ``ctsam3d evaluate`` protocol.

Runs the evaluation protocol (first click at the structure's distance-transform maximum, each
next click at the deepest not-yet-clicked voxel of the largest error region; ``--allow-repeats``:
the protocol before 2026-12-05, which could click one voxel again and again) through
:class:`ctsam3d.Session` and records, for every click:

* sign, the lattice patch the session decoded it in and whether that patch was new (a new
  patch's prediction is max-merged; a click in an existing patch re-decodes it with the
  previous mask and replaces its region; a negative click never adds);
* how many clicks the decoder saw in that patch (user and expansion clicks), against the
  model's training maximum (``training.recipe.clicks.iterations`` of its config);
* Dice before/after on the image grid, and on the 3 mm lattice inside the decoded patch
  (ground truth resampled linearly onto the patch, > 0.5): a drop on the lattice too is the
  model's prediction, not the resampling of its probabilities onto the image grid;
* voxels added / removed (true / false), the added voxels that an earlier negative click had
  removed ("re-added"), and whether the clicked voxel is right afterwards.

Then prints how often Dice falls (by more than ``--drop``) per kind of click, and writes JSON
(``--json``). Reads session internals (``_objects``, ``_choose_patch``): a diagnostic, not API::

    python benchmarks/click_drops.py --data docs/results/manifests/totalseg_examples.json \\
        --catalogue totalseg_v2 --model ctsam3d-lite-torso --cases example_ct \\
        --json benchmarks/results/click_drops_torso_example_ct.json
    python benchmarks/click_drops.py --data ../shared/data/openkbp/validation \\
        --model ctsam3d-lite-starter --cases pt_202,pt_218 --structures spinal_cord

One PyTorch thread unless ``OMP_NUM_THREADS`` says otherwise (what the committed reports used).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int((a & b).sum()) / s


def _training_clicks(model) -> int | None:
    try:
        return int(model.config.training["recipe"]["clicks"]["iterations"])
    except (AttributeError, KeyError, TypeError, ValueError):
        return None


def trace_structure(session, image, target: np.ndarray, spacing_zyx, n_clicks: int, allow_repeats: bool) -> list[dict]:
    """Protocol clicks on one structure (a new object of ``session``); one record per click."""
    import SimpleITK as sitk

    from ctsam3d.clicks import first_click, next_click
    from ctsam3d.geometry import crop_patch
    from ctsam3d.inference.prompts import make_click

    gt_image = sitk.GetImageFromArray(target.astype(np.float32))
    gt_image.CopyInformation(image)
    lattice = session.lattice
    size = lattice.patch_size
    session.new_object()
    mask = np.zeros_like(target)
    removed_by_negative = np.zeros_like(target)
    made: list[tuple[int, int, int]] = []
    rows = []
    for k in range(n_clicks):
        if k == 0:
            zyx, positive = first_click(target, spacing_zyx=spacing_zyx), True
        else:
            nxt = next_click(target, mask, spacing_zyx=spacing_zyx, exclude=None if allow_repeats else made)
            if nxt is None:
                break
            zyx, positive = nxt
        made.append(tuple(int(v) for v in zyx))
        ijk = tuple(int(v) for v in zyx[::-1])
        obj = session._objects.get(session.current_object)
        click = make_click(ijk, positive, image, lattice)
        start, is_new = session._choose_patch(obj, click) if obj is not None and obj.patches else (
            lattice.patch_start_around(click.zyx), True)
        lat_gt = crop_patch(gt_image, lattice.grid(start), pad=0.0) > 0.5
        lat_before = obj.store.read_mask(start, size) if obj is not None else np.zeros(size, bool)
        pred = session.add_click(ijk, positive=positive)
        obj = session._objects[session.current_object]
        new = sitk.GetArrayFromImage(session.result()) != 0
        lat_after = obj.store.read_mask(start, size)
        added, removed = new & ~mask, mask & ~new
        in_patch = [c for c in obj.clicks if all(0 <= a - b < n for a, b, n in zip(c.zyx, start, size))]
        rows.append({
            "k": k + 1, "click_zyx": list(made[-1]), "positive": bool(positive), "patch": [int(v) for v in start],
            "new_patch": bool(is_new),
            "clicks_in_patch": sum(c.source == "user" for c in in_patch),
            "auto_clicks_in_patch": sum(c.source != "user" for c in in_patch),
            "dice_before": round(_dice(mask, target), 4), "dice": round(_dice(new, target), 4),
            "lattice_dice_before": round(_dice(lat_before, lat_gt), 4),
            "lattice_dice": round(_dice(lat_after, lat_gt), 4),
            "added_true": int((added & target).sum()), "added_false": int((added & ~target).sum()),
            "removed_true": int((removed & target).sum()), "removed_false": int((removed & ~target).sum()),
            "readded": int((added & removed_by_negative).sum()),
            "clicked_voxel_right": bool(new[tuple(zyx)] == positive),
            "expansion_patches": int(pred.expansion_patches),
        })
        if not positive:
            removed_by_negative |= removed
        mask = new
    return rows


def summarize(records: list[dict], drop: float, n_train: int | None) -> list[tuple[str, int, int, float, int]]:
    """(kind, clicks, drops, mean change of Dice, drops on the lattice too) per kind of click."""
    later = [r for r in records if r["k"] > 1]
    n = n_train or 0
    kinds = [
        ("positive", lambda r: r["positive"]),
        ("  in a new patch (max-merge)", lambda r: r["positive"] and r["new_patch"]),
        ("  re-decoding its patch (replace)", lambda r: r["positive"] and not r["new_patch"]),
        (f"  <= {n} user clicks in the patch", lambda r: r["positive"] and r["clicks_in_patch"] <= n),
        (f"  {n + 1}-{2 * n} user clicks in the patch", lambda r: r["positive"] and n < r["clicks_in_patch"] <= 2 * n),
        (f"  > {2 * n} user clicks in the patch", lambda r: r["positive"] and r["clicks_in_patch"] > 2 * n),
        ("  patch holds expansion clicks", lambda r: r["positive"] and r["auto_clicks_in_patch"] > 0),
        ("negative", lambda r: not r["positive"]),
        ("  patch holds expansion clicks", lambda r: not r["positive"] and r["auto_clicks_in_patch"] > 0),
        ("  clicked voxel still in the mask", lambda r: not r["positive"] and not r["clicked_voxel_right"]),
    ]
    out = []
    for name, sel in kinds:
        rs = [r for r in later if sel(r)]
        d = np.array([r["dice"] - r["dice_before"] for r in rs]) if rs else np.zeros(0)
        lat = sum(1 for r in rs if r["dice"] - r["dice_before"] < -drop and r["lattice_dice"] - r["lattice_dice_before"] < -drop)
        out.append((name, len(rs), int((d < -drop).sum()), round(float(d.mean()), 4) if len(d) else None, lat))
    return out


def add_dataset_arguments(ap: argparse.ArgumentParser, model_required: bool = True) -> None:
    """The data, model and selection arguments these diagnostics share (as ``ctsam3d evaluate``)."""
    ap.add_argument("--data", required=True, help="dataset folder or pairs manifest (as ctsam3d evaluate)")
    ap.add_argument("--format", default="pairs")
    ap.add_argument("--catalogue", default="openkbp")
    ap.add_argument("--model", required=model_required, default=None,
                    help="model name or folder (as ctsam3d evaluate --model; default: the default model)")
    ap.add_argument("--cases", default=None, help="comma-separated case ids (default: all)")
    ap.add_argument("--structures", default=None, help="comma-separated structure names (default: all present)")


def load_quietly(spec):
    """``ctsam3d.load_model(spec)`` with one PyTorch thread unless ``OMP_NUM_THREADS`` is set."""
    import torch

    from ctsam3d.modeling import load_model

    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_model(spec)


def iter_targets(args, make_session):
    """``(case, image, session, structure name, target)`` for every selected structure present:
    one ``make_session()`` per case, set to its image; ``target`` bool ``(z, y, x)``."""
    from ctsam3d.evaluation.datasets import normalize_name, open_cases

    cases = open_cases(args.data, args.format, catalogue=args.catalogue)
    if args.cases:
        wanted = args.cases.split(",")
        cases = [c for c in cases if c.case_id in wanted]
    for case in cases:
        image = case.load_image()
        session = make_session()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            session.set_image(image)
        lookup = {normalize_name(n): n for n in case.names}
        keys = [normalize_name(s) for s in args.structures.split(",")] if args.structures else list(lookup)
        for key in keys:
            if key not in lookup:
                continue
            target = case.load_mask(lookup[key], image)
            if target is None or not target.any():
                continue
            yield case, image, session, lookup[key], target


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_dataset_arguments(ap)
    ap.add_argument("--clicks", type=int, default=10)
    ap.add_argument("--no-expansion", action="store_true")
    ap.add_argument("--allow-repeats", action="store_true", help="the protocol before 2026-12-05 (a voxel may be clicked again)")
    ap.add_argument("--drop", type=float, default=0.01, help="a fall of Dice by more than this counts as a drop")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    import torch

    from ctsam3d import Session

    model = load_quietly(args.model)
    n_train = _training_clicks(model)
    t0 = time.perf_counter()
    records = []
    for case, image, session, name, target in iter_targets(args, lambda: Session(model, expansion=not args.no_expansion)):
        sx, sy, sz = image.GetSpacing()
        rows = trace_structure(session, image, target, (sz, sy, sx), args.clicks, args.allow_repeats)
        for r in rows:
            r.update(case=case.case_id, structure=name)
        records += rows
        print(f"{case.case_id} {name}: Dice " + " ".join(f"{r['dice']:.2f}" for r in rows), file=sys.stderr)
    table = summarize(records, args.drop, n_train)
    runs = {(r["case"], r["structure"]) for r in records}
    curve = {}
    for k in range(1, args.clicks + 1):  # carry the last value forward (as the protocol does)
        vals = []
        for run in runs:
            rs = [r for r in records if (r["case"], r["structure"]) == run]
            vals.append(rs[min(k, len(rs)) - 1]["dice"])
        curve[k] = round(float(np.mean(vals)), 4)
    print(f"\n{args.model} on {args.data} ({len(runs)} structures, model trained with <= {n_train} clicks per patch)")
    print("mean Dice@1..%d: %s" % (args.clicks, " ".join(f"{v:.3f}" for v in curve.values())))
    print(f"\n{'click (k >= 2)':40s} {'n':>5s} {'drops':>6s} {'mean dDice':>10s} {'also on lattice':>16s}")
    for name, n, d, m, lat in table:
        print(f"{name:40s} {n:5d} {d:6d} {'' if m is None else format(m, '+.4f'):>10s} {lat:16d}")
    if args.json:
        out = {"command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]), "model": args.model,
               "data": args.data, "training_clicks": n_train, "allow_repeats": args.allow_repeats,
               "drop": args.drop, "dice_at_click": curve,
               "summary": [dict(zip(("kind", "clicks", "drops", "mean_delta_dice", "drops_on_lattice"), row)) for row in table],
               "records": records, "elapsed_s": round(time.perf_counter() - t0, 1),
               "machine": {"python": platform.python_version(), "cpus": os.cpu_count(),
                           "torch_threads": torch.get_num_threads()}}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        # one line per key, one line per click record (compact, still diffable)
        body = ",\n".join(
            f"{json.dumps(k)}: " + ("[\n" + ",\n".join(json.dumps(r, separators=(",", ":")) for r in v) + "\n]"
                                   if k == "records" else json.dumps(v))
            for k, v in out.items())
        Path(args.json).write_text("{\n" + body + "\n}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
