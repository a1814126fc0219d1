"""``ctsam3d demo``: the bundled model on the bundled example CT, from simulated clicks.

For each structure of the example's label map (OpenKBP validation patient 201, see
``ctsam3d/examples/README.md``) the demo places clicks the way a user would
(:mod:`ctsam3d.clicks`: first at the structure's centre, then at the largest error), runs an
interactive :class:`~ctsam3d.inference.session.Session`, and reports Dice against the
clinician's label after each click and the time per click. It writes one mask per structure,
the label map (with a ``labels.json`` sidecar), ``overview.png`` (axial, coronal, sagittal
planes with the prediction and the reference) and ``demo.json`` into ``OUT_DIR``.
``--serve`` then opens the example in the web tool (when the server is installed).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
import warnings
from pathlib import Path

import numpy as np

from ..errors import InputError

log = logging.getLogger(__name__)

NAME = "demo"
HELP = "Run the bundled model on the bundled example CT"

DEFAULT_STRUCTURES = ("brainstem", "spinal_cord", "parotid_right", "parotid_left", "mandible")
COLOURS = ["#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#bfef45"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", type=Path, default=None, metavar="OUT_DIR",
                        help="folder for masks, label map, overview.png and demo.json (default ./ctsam3d-demo, "
                             "or ./ctsam3d-demo-N when that exists, so a repeated run never touches earlier results)")
    parser.add_argument("--model", default=None,
                        help="model name ('ctsam3d models'), directory or .safetensors (default: the default model)")
    parser.add_argument("--untrained", action="store_true", help="--model names a preset's untrained weights (refused without it; "
                        "ctsam3d-lite-wb means the bundled trained model unless it is given)")
    parser.add_argument("-d", "--device", default="cpu", help="cpu, cuda, cuda:N, mps (gpu, gpu:N accepted)")
    parser.add_argument("--clicks", type=int, default=3, help="simulated clicks per structure (default 3)")
    parser.add_argument("--structures", default=",".join(DEFAULT_STRUCTURES),
                        help=f"comma-separated structures of the example (default {','.join(DEFAULT_STRUCTURES)})")
    parser.add_argument("--no-expansion", action="store_true", help="switch off cross-patch expansion")
    parser.add_argument("--max-patches", type=int, default=4, metavar="N", help="expansion budget per click (default 4)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs in OUT_DIR")
    parser.add_argument("--serve", action="store_true", help="afterwards open the example in the web tool (ctsam3d serve)")
    parser.add_argument("--port", type=int, default=None, help="with --serve: the web tool's port (default: serve's, 8000)")


def dice(a: np.ndarray, b: np.ndarray) -> float:
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int((a & b).sum()) / s


def _free_default_dir(base: str = "ctsam3d-demo") -> Path:
    """``./ctsam3d-demo``, or the first ``./ctsam3d-demo-N`` that does not exist yet."""
    out, n = Path(base), 2
    while out.exists():
        out, n = Path(f"{base}-{n}"), n + 1
    return out


def _structures(spec: str, names: dict[int, str], present: set[int]) -> list[tuple[int, str]]:
    by_name = {v: k for k, v in names.items()}
    out = []
    for name in [s.strip() for s in spec.split(",") if s.strip()]:
        if name not in by_name:
            raise InputError(f"--structures: unknown structure {name!r}; the example has {', '.join(names.values())}")
        if by_name[name] not in present:
            raise InputError(f"--structures: {name!r} is not contoured in the example")
        out.append((by_name[name], name))
    if not out:
        raise InputError("--structures: give at least one structure")
    return out


def run(args: argparse.Namespace) -> int:
    import SimpleITK as sitk

    from ..clicks import first_click, next_click
    from ..examples import example_case
    from ..inference.session import Session
    from ..io import read_label, read_volume, write_label_map, write_mask
    from ..io.write import check_output
    from ..modeling import load_model
    from .segment_cmd import resolve_device

    if args.clicks < 1:
        raise InputError(f"--clicks {args.clicks}: must be >= 1")
    if args.port is not None and not args.serve:
        raise InputError(f"--port {args.port}: only used with --serve")
    if args.port is not None and not 0 < args.port < 65536:
        raise InputError(f"--port {args.port}: must be between 1 and 65535")
    if args.max_patches < 0:
        raise InputError(f"--max-patches {args.max_patches}: must be >= 0")
    case = example_case()
    ct = read_volume(case.ct)
    labels = read_label(case.labels, reference=ct)
    lab = sitk.GetArrayFromImage(labels)
    structures = _structures(args.structures, case.names, set(np.unique(lab).tolist()))
    out = Path(args.output) if args.output is not None else _free_default_dir()
    for p in [out / f"{n}.nii.gz" for _, n in structures] + [out / "labels.nii.gz"]:
        check_output(p, overwrite=args.overwrite)  # fail before any work
    device = resolve_device(args.device)

    from ..hub.registry import is_preset, is_untrained

    if is_untrained(args.model) and not args.untrained:
        raise InputError(f"--model {args.model}: an untrained preset (freshly initialised weights; Dice would be "
                         f"meaningless). Use a trained model ('ctsam3d models' lists them) or add --untrained")
    t_load = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the preset warning is repeated below in plain words
        model = load_model(args.model, device=device, untrained=args.untrained and is_preset(args.model))
    trained = bool(getattr(model.config, "training", None))
    if not trained:
        log.warning("model %s has no training record: untrained weights, Dice will be meaningless", model.config.preset)
    session = Session(model, expansion=not args.no_expansion, max_patches=args.max_patches)
    session.set_image(ct)
    load_s = time.perf_counter() - t_load
    spacing_zyx = ct.GetSpacing()[::-1]

    rows, total_clicks, t_all = [], 0, time.perf_counter()
    for label_id, name in structures:
        target = lab == label_id
        session.new_object(name)
        dices, times, expansion = [], [], 0
        pred = np.zeros_like(target)
        made = []  # the evaluate protocol's rule: a voxel already clicked is not clicked again
        for n in range(args.clicks):
            if n == 0:
                zyx, positive = first_click(target, spacing_zyx=spacing_zyx), True
            else:
                nxt = next_click(target, pred, spacing_zyx=spacing_zyx, exclude=made)
                if nxt is None:  # perfect already
                    break
                zyx, positive = nxt
            made.append(tuple(zyx))
            rec = session.add_click(tuple(int(v) for v in zyx[::-1]), positive=positive)  # (z,y,x) -> (i,j,k)
            pred = sitk.GetArrayFromImage(session.result()) > 0
            dices.append(dice(pred, target))
            times.append(rec.timing_ms["total"])
            expansion += rec.expansion_patches
        total_clicks += len(times)
        rows.append({"structure": name, "label": label_id, "dice": dices, "ms_per_click": times,
                     "expansion_patches": expansion})
    run_s = time.perf_counter() - t_all

    out.mkdir(parents=True, exist_ok=True)
    names = {}
    for row in rows:
        oid = session.select_object(row["structure"])
        names[oid] = row["structure"]
        write_mask(session.result(oid), out / f"{row['structure']}.nii.gz", source=ct, overwrite=args.overwrite)
    label_map = session.label_map()
    write_label_map(label_map, out / "labels.nii.gz", names=names, source=ct, overwrite=args.overwrite)
    overview = out / "overview.png"
    write_overview(ct, sitk.GetArrayFromImage(label_map), lab, rows, names, overview, structures)

    summary = {
        "case": case.name,
        "model": model.config.preset,
        "trained": trained,
        "device": device,
        "clicks_per_structure": args.clicks,
        "expansion": not args.no_expansion,
        "max_patches": args.max_patches,
        "model_load_s": round(load_s, 3),
        "segmentation_s": round(run_s, 3),
        "structures": rows,
    }
    (out / "demo.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    _print_table(rows, args.clicks, model.config.preset, trained, load_s, run_s, total_clicks, out)

    if args.serve:
        return _serve(args, case.ct, out)
    return 0


def _print_table(rows, clicks, preset, trained, load_s, run_s, total_clicks, out) -> None:
    head = f"{'structure':<15}" + "".join(f"{'Dice@' + str(i + 1):>9}" for i in range(clicks)) + f"{'ms/click':>10}"
    lines = [f"ctsam3d demo: model {preset}{'' if trained else ' (UNTRAINED: Dice meaningless)'}, "
             f"example OpenKBP pt_201 (validation), Dice vs clinician labels", head, "-" * len(head)]
    for r in rows:
        d = "".join(f"{v:>9.3f}" for v in r["dice"]) + " " * 9 * (clicks - len(r["dice"]))
        lines.append(f"{r['structure']:<15}{d}{np.mean(r['ms_per_click']):>10.0f}")
    lines.append(f"{total_clicks} clicks in {run_s:.1f} s ({1000 * run_s / max(total_clicks, 1):.0f} ms per click "
                 f"incl. result), model load {load_s:.1f} s; outputs in {out}")
    print("\n".join(lines), flush=True)


def write_overview(ct, pred_zyx, ref_zyx, rows, names, path: Path, structures) -> None:
    """PNG: axial, coronal and sagittal planes (LPS-canonical, radiological view) with the
    prediction (top row) and the reference labels (bottom row) over the CT."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import SimpleITK as sitk
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from ..geometry import to_canonical

    spacing = float(min(ct.GetSpacing()))
    can = sitk.GetArrayFromImage(to_canonical(ct, spacing))  # [z, y, x], x -> L, y -> P, z -> S
    name_to_ref = {n: i for i, n in structures}
    ref_as_pred = np.zeros_like(ref_zyx, dtype=np.uint8)
    for oid, n in names.items():  # recolour the reference with the prediction's ids
        ref_as_pred[ref_zyx == name_to_ref[n]] = oid

    def canon(arr):
        img = sitk.GetImageFromArray(arr.astype(np.uint8))
        img.CopyInformation(ct)
        return sitk.GetArrayFromImage(to_canonical(img, spacing, is_label=True))

    pred_c, ref_c = canon(pred_zyx), canon(ref_as_pred)
    body = np.argwhere(can > -500)  # crop the display to the body (with a margin)
    if len(body):
        lo = np.maximum(body.min(axis=0) - 5, 0)
        hi = body.max(axis=0) + 6
        box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        can, pred_c, ref_c = can[box], pred_c[box], ref_c[box]
    fg = np.argwhere((pred_c > 0) | (ref_c > 0))
    cz, cy, cx = (fg.mean(axis=0).astype(int) if len(fg) else np.array(can.shape) // 2)
    n_obj = max(names) if names else 1
    cmap = ListedColormap([(0, 0, 0, 0)] + [COLOURS[(i - 1) % len(COLOURS)] for i in range(1, n_obj + 1)])
    planes = [
        ("axial", lambda a: a[cz], "upper"),
        ("coronal", lambda a: a[:, cy, :], "lower"),
        ("sagittal", lambda a: a[:, :, cx], "lower"),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(12, 8.4), dpi=100)
    for row, (title, lab) in enumerate((("prediction", pred_c), ("reference", ref_c))):
        for col, (plane, cut, origin) in enumerate(planes):
            ax = axes[row, col]
            ax.imshow(cut(can), cmap="gray", vmin=-160, vmax=240, origin=origin, interpolation="bilinear")
            ax.imshow(np.ma.masked_equal(cut(lab), 0), cmap=cmap, vmin=0, vmax=n_obj, alpha=0.5,
                      origin=origin, interpolation="nearest")
            ax.set_title(f"{title}: {plane}", fontsize=10)
            ax.axis("off")
    dice_by = {r["structure"]: r["dice"][-1] for r in rows}
    handles = [Patch(color=COLOURS[(oid - 1) % len(COLOURS)], label=f"{n} (Dice {dice_by.get(n, 0):.2f})")
               for oid, n in sorted(names.items())]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5), fontsize=9, frameon=False)
    fig.suptitle("ctsam3d demo (radiological view: patient left on the right)", fontsize=11)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name("." + path.name + ".part.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)


def _serve(args, ct_path: Path, out: Path) -> int:
    try:
        import ctsam3d.server  # noqa: F401

        from . import serve_cmd
    except ModuleNotFoundError as exc:
        log.warning("--serve: the web tool is not available in this installation (%s)", exc)
        return 0
    data = out / "data"
    data.mkdir(exist_ok=True)
    if not (data / ct_path.name).exists():
        shutil.copyfile(ct_path, data / ct_path.name)
    parser = argparse.ArgumentParser(prog="ctsam3d serve")
    serve_cmd.add_arguments(parser)
    argv = ["--data", str(data), "-d", args.device]
    if args.port is not None:
        argv += ["--port", str(args.port)]
    if args.model:
        argv += ["--model", str(args.model)]
    if args.untrained:
        argv.append("--untrained")
    if args.no_expansion:
        argv.append("--no-expansion")
    sargs = parser.parse_args(argv)
    sargs.quiet, sargs.verbose = args.quiet, args.verbose
    return int(serve_cmd.run(sargs) or 0)
