"""How often the session's prompt rules bite, on real CT (issue 17, items 13-15).

Measures, through the public :class:`ctsam3d.Session` API only (so the same script also runs
against an older checkout for before/after figures):

* **clicks** (OpenKBP *validation*, ``../shared/data/openkbp/validation``): the evaluation
  protocol's simulated clicks (first click at the organ's distance-transform maximum, then
  each next click at the largest error region: missed -> positive, false -> negative), up to
  ``--clicks`` per organ, default session (cross-patch expansion on). For every positive
  click: is the clicked voxel in the mask afterwards? For every negative click: how many
  voxels did the object gain (must be 0), is the clicked voxel out afterwards?
* **edit mode** (OpenKBP validation): ``set_initial_mask(organ)`` then ``result()``: is it
  voxel-identical? Then one simulated-user edit: the organ with its middle 4 slices removed
  and a positive click in the gap; voxels changed outside the gap's organ, voxels removed.
* **boxes** (OpenKBP validation): a box through the middle of each organ (its bounding box
  shrunk by a quarter on each side, so the organ goes on beyond it): voxels of the mask
  outside the box (must be 0).
* **aorta** (``../shared/data/totalseg_examples/aorta_crop``, evaluation-only; skipped when
  absent): edit mode with the TotalSegmentator aorta label: Dice of ``result()`` against the
  given mask, then after one positive click at its centre; volume; and an empty initial mask
  plus a negative click (its volume, must be 0).
* **cost** (``--cost``, instead of the above): on a synthetic 512 x 512 x 300 CT (0.8 x 0.8 x
  1.5 mm, an 80 mm bright ball), 8 later clicks (expansion off): p50 of the decoder, of the
  input-grid mask update (``timing_ms["mask"]``), of ``add_click`` and of ``result()``.

Prints a table and writes JSON (``--json``)::

    python benchmarks/prompt_rules.py --json benchmarks/results/prompt_rules.json
    python benchmarks/prompt_rules.py --cases 4 --clicks 3          # quicker
    python benchmarks/prompt_rules.py --cost --json benchmarks/results/prompt_rules_cost.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
ORGANS = {1: "brainstem", 2: "spinal_cord", 3: "parotid_right", 4: "parotid_left", 5: "esophagus", 6: "larynx",
          7: "mandible"}


def _img(arr, ref):
    import SimpleITK as sitk

    out = sitk.GetImageFromArray(np.asarray(arr, np.uint8))
    out.CopyInformation(ref)
    return out


def _mask(s):
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(s.result()) > 0


def _ijk(zyx):
    return tuple(int(v) for v in zyx[::-1])


def _cases(n):
    folder = SHARED / "openkbp" / "validation"
    cts = sorted(folder.glob("pt_*_ct.nii.gz"), key=lambda p: int(p.name.split("_")[1]))
    return [(p, folder / p.name.replace("_ct", "_oars")) for p in cts][: n or None]


def clicks_and_edits(model, cases, n_clicks, expansion=True) -> dict:
    import SimpleITK as sitk

    from ctsam3d import Session
    from ctsam3d.clicks import first_click, next_click

    pos = {"n": 0, "clicked_voxel_in_mask": 0}
    neg = {"n": 0, "gained_any": 0, "voxels_gained": 0, "clicked_voxel_out": 0, "ml_gained_max": 0.0}
    edit = {"n": 0, "readback_identical": 0, "gap_clicks": 0, "gap_click_in_mask": 0, "voxels_removed": 0,
            "voxels_changed_outside_organ_and_gap": 0, "voxels_changed_other_organs": 0, "gap_voxels": 0, "gap_filled": 0}
    box = {"n": 0, "voxels_outside_box": 0, "boxes_leaking": 0}
    per_case = []
    t0 = time.perf_counter()
    for ct_path, lab_path in cases:
        ct = sitk.ReadImage(str(ct_path))
        lab = sitk.GetArrayFromImage(sitk.ReadImage(str(lab_path)))
        sp = ct.GetSpacing()[::-1]
        vox_ml = float(np.prod(sp)) / 1000.0
        s = Session(model, expansion=expansion)
        s.set_image(ct)
        for organ, name in ORGANS.items():
            target = lab == organ
            if target.sum() < 20:
                continue
            # ---- simulated clicks
            s.reset()
            c = first_click(target, spacing_zyx=sp)
            click, positive = c, True
            for _ in range(n_clicks):
                before = _mask(s)
                s.add_click(_ijk(click), positive=positive)
                after = _mask(s)
                if positive:
                    pos["n"] += 1
                    pos["clicked_voxel_in_mask"] += int(after[click])
                else:
                    gained = int((after & ~before).sum())
                    neg["n"] += 1
                    neg["gained_any"] += int(gained > 0)
                    neg["voxels_gained"] += gained
                    neg["ml_gained_max"] = max(neg["ml_gained_max"], gained * vox_ml)
                    neg["clicked_voxel_out"] += int(not after[click])
                nxt = next_click(target, after, spacing_zyx=sp)
                if nxt is None:
                    break
                click, positive = nxt
            # ---- edit mode: read back, then a positive click in a 4-slice gap
            s.reset()
            s.set_initial_mask(_img(target, ct))
            edit["n"] += 1
            edit["readback_identical"] += int(np.array_equal(_mask(s), target))
            zs = np.flatnonzero(target.any(axis=(1, 2)))
            if len(zs) >= 8:
                mid = (zs[0] + zs[-1]) // 2
                gap = np.zeros_like(target)
                gap[mid - 2 : mid + 2] = True
                gap &= target
                initial = (lab > 0) & ~gap  # all organs of the patient, this one with a gap
                s.reset()
                s.set_initial_mask(_img(initial, ct))
                g = first_click(gap, spacing_zyx=sp)
                s.add_click(_ijk(g))
                after = _mask(s)
                changed = after != initial
                edit["gap_clicks"] += 1
                edit["gap_click_in_mask"] += int(after[g])
                edit["voxels_removed"] += int((initial & ~after).sum())
                edit["voxels_changed_outside_organ_and_gap"] += int((changed & ~target).sum())
                edit["voxels_changed_other_organs"] += int((changed & (lab > 0) & ~target).sum())
                edit["gap_voxels"] += int(gap.sum())
                edit["gap_filled"] += int((after & gap).sum())
            # ---- a box through the middle of the organ
            s.reset()
            k, j, i = np.nonzero(target)
            lo, hi = np.array([i.min(), j.min(), k.min()]), np.array([i.max(), j.max(), k.max()])
            a, b = lo + (hi - lo) // 4, hi - (hi - lo) // 4
            s.add_box(tuple(int(v) for v in a), tuple(int(v) for v in b))
            m = _mask(s)
            inbox = np.zeros_like(m)
            inbox[a[2] : b[2] + 1, a[1] : b[1] + 1, a[0] : b[0] + 1] = True
            out = int((m & ~inbox).sum())
            box["n"] += 1
            box["voxels_outside_box"] += out
            box["boxes_leaking"] += int(out > 0)
        per_case.append(ct_path.name)
        print(f"  {ct_path.name}: positive {pos['n']}, negative {neg['n']}, {time.perf_counter() - t0:.0f} s",
              file=sys.stderr, flush=True)
    pos["frequency_clicked_voxel_not_in_mask"] = 1 - pos["clicked_voxel_in_mask"] / max(pos["n"], 1)
    neg["frequency_gained"] = neg["gained_any"] / max(neg["n"], 1)
    return {"cases": per_case, "clicks_per_organ": n_clicks, "expansion": expansion, "positive": pos,
            "negative": neg, "edit": edit, "box": box, "seconds": time.perf_counter() - t0}


def aorta(model) -> dict | None:
    import SimpleITK as sitk
    from scipy import ndimage

    from ctsam3d import Session

    d = SHARED / "totalseg_examples" / "aorta_crop"
    if not (d / "aorta.nii.gz").is_file():
        return None
    ct = sitk.ReadImage(str(d / "ct_cropped.nii.gz"))
    label = sitk.ReadImage(str(d / "aorta.nii.gz"))
    a = sitk.GetArrayFromImage(label) > 0
    vox_ml = float(np.prod(ct.GetSpacing())) / 1000.0

    def dice(x, y):
        return float(2 * (x & y).sum() / (x.sum() + y.sum()))

    z, y, x = np.unravel_index(int(np.argmax(ndimage.distance_transform_edt(a))), a.shape)
    out = {"given_ml": float(a.sum() * vox_ml)}
    for expansion in (True, False):
        s = Session(model, expansion=expansion)
        s.set_image(ct)
        s.set_initial_mask(label)
        r0 = _mask(s)
        s.add_click((int(x), int(y), int(z)))
        r1 = _mask(s)
        out["expansion" if expansion else "no_expansion"] = {
            "readback_dice": dice(r0, a), "readback_identical": bool(np.array_equal(r0, a)),
            "after_positive_click_dice": dice(r1, a), "after_positive_click_ml": float(r1.sum() * vox_ml),
        }
    s = Session(model)
    s.set_image(ct)
    s.set_initial_mask(_img(np.zeros_like(a), ct))
    s.add_click((int(x), int(y), int(z)), positive=False)
    out["empty_initial_mask_negative_click_ml"] = float(_mask(s).sum() * vox_ml)
    return out


def cost(model) -> dict:
    import SimpleITK as sitk

    from ctsam3d import Session

    k, j, i = np.ogrid[:300, :512, :512]
    arr = np.full((300, 512, 512), -100, np.int16)
    arr[((i - 256) * 0.8) ** 2 + ((j - 256) * 0.8) ** 2 + ((k - 150) * 1.5) ** 2 < 40**2] = 150
    ct = sitk.GetImageFromArray(arr)
    ct.SetSpacing((0.8, 0.8, 1.5))
    s = Session(model, expansion=False)
    s.set_image(ct)
    s.add_click((256, 256, 150))
    rng = np.random.default_rng(0)
    rows = {"decode": [], "mask": [], "add_click": [], "result": []}
    for n in range(8):
        p = (256 + int(rng.integers(-30, 30)), 256 + int(rng.integers(-30, 30)), 150 + int(rng.integers(-15, 15)))
        rec = s.add_click(p, positive=bool(n % 3 != 2))
        rows["decode"].append(rec.timing_ms["decode"])
        rows["mask"].append(rec.timing_ms.get("mask", 0.0))
        rows["add_click"].append(rec.timing_ms["total"])
        t = time.perf_counter()
        s.result()
        rows["result"].append((time.perf_counter() - t) * 1000.0)
    return {"ct": "synthetic 512x512x300, 0.8x0.8x1.5 mm", "volume_ml": rec.volume_ml,
            "p50_ms": {k: float(np.median(v)) for k, v in rows.items()}, "ms": rows}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="model directory or bundled name (default: the default model)")
    ap.add_argument("--cases", type=int, default=0, help="first N validation patients (0: all 33)")
    ap.add_argument("--clicks", type=int, default=5, help="simulated clicks per organ")
    ap.add_argument("--no-expansion", action="store_true")
    ap.add_argument("--cost", action="store_true", help="only the mask-update cost on a synthetic 512x512x300 CT")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    import torch

    import ctsam3d

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cost:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = {"machine": {"python": platform.python_version(), "torch": torch.__version__,
                               "threads": torch.get_num_threads()}, "cost": cost(ctsam3d.load_model(args.model))}
        print("later click p50 ms: " + ", ".join(f"{k} {v:.1f}" for k, v in res["cost"]["p50_ms"].items()))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(res, indent=1))
        return 0
    if not (SHARED / "openkbp" / "validation").is_dir():
        print("needs ../shared/data/openkbp/validation", file=sys.stderr)
        return 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = ctsam3d.load_model(args.model)
        res = {
            "machine": {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
                        "cpu": platform.processor() or platform.machine()},
            "model": args.model or model.model_name,
            "ctsam3d": ctsam3d.__file__,
            "aorta": aorta(model),
            "openkbp_validation": clicks_and_edits(model, _cases(args.cases), args.clicks, not args.no_expansion),
        }
    k, p, n, e, b = res["openkbp_validation"], None, None, None, None
    p, n, e, b = k["positive"], k["negative"], k["edit"], k["box"]
    print(f"OpenKBP validation, {len(k['cases'])} patients, up to {k['clicks_per_organ']} simulated clicks per organ "
          f"(expansion {'on' if k['expansion'] else 'off'})")
    print(f"| rule | measured |\n|---|---|")
    print(f"| positive click: clicked voxel in the mask | {p['clicked_voxel_in_mask']} / {p['n']} "
          f"(not in: {100 * p['frequency_clicked_voxel_not_in_mask']:.1f} %) |")
    print(f"| negative click: object gained voxels | {n['gained_any']} / {n['n']} clicks, {n['voxels_gained']} voxels, "
          f"max {n['ml_gained_max']:.2f} ml |")
    print(f"| negative click: clicked voxel left the mask | {n['clicked_voxel_out']} / {n['n']} |")
    print(f"| edit mode: result() voxel-identical to the given mask | {e['readback_identical']} / {e['n']} |")
    print(f"| edit mode, positive click in a 4-slice gap: voxels removed | {e['voxels_removed']} |")
    print(f"| edit mode, gap click: voxels changed in the patient's other organs | {e['voxels_changed_other_organs']} |")
    print(f"| edit mode, gap click: voxels changed outside organ+gap / gap filled | "
          f"{e['voxels_changed_outside_organ_and_gap']} / {e['gap_filled']} of {e['gap_voxels']} |")
    print(f"| box through an organ: masks leaking / voxels outside the box | {b['boxes_leaking']} / {b['n']}, "
          f"{b['voxels_outside_box']} |")
    if res["aorta"]:
        a = res["aorta"]
        for key in ("expansion", "no_expansion"):
            r = a[key]
            print(f"| aorta ({key}): read-back Dice / after a positive click at its centre | {r['readback_dice']:.3f} / "
                  f"{r['after_positive_click_dice']:.3f}, {a['given_ml']:.1f} -> {r['after_positive_click_ml']:.1f} ml |")
        print(f"| aorta: empty initial mask + negative click | {a['empty_initial_mask_negative_click_ml']:.1f} ml |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(res, indent=1))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
