"""``ctsam3d evaluate``: compare interactive methods with simulated clicks.

Example (the committed validation report)::

    ctsam3d evaluate --data ../shared/data/openkbp/validation --format pairs \\
        --method model,model-noexp,random-walker,region-growing --clicks 10 -o docs/results/openkbp_validation
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from ..errors import InputError, OutputExistsError

NAME = "evaluate"
HELP = "Evaluate methods with simulated clicks"

METHODS = ("model", "model-noexp", "random-walker", "region-growing")
log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="dataset folder (or a .json/.csv manifest for --format pairs)")
    parser.add_argument("--format", default="pairs", choices=("pairs", "totalseg", "nnunet", "cvpr-npz"),
                        help="dataset layout (default pairs: <x>_ct.nii.gz + <x>_oars.nii.gz)")
    parser.add_argument("--catalogue", default="openkbp",
                        help="anatomy catalogue naming the label ids of pairs data (default openkbp)")
    parser.add_argument("--model", action="append", default=None, metavar="M",
                        help="model directory, .safetensors, params.pth or preset; repeat to compare several "
                             "(default: the default model, see 'ctsam3d models')")
    parser.add_argument("--method", default=",".join(METHODS),
                        help=f"comma-separated methods from {', '.join(METHODS)} (default: all)")
    parser.add_argument("--clicks", type=int, default=10, metavar="K", help="clicks per structure (default 10)")
    parser.add_argument("--structures", default=None,
                        help="comma-separated structure names (default: every structure of each case)")
    parser.add_argument("--max-cases", type=int, default=None, metavar="N", help="only the first N cases")
    parser.add_argument("--seed", type=int, default=0, help="seed for random first clicks and torch (default 0)")
    parser.add_argument("--first-click", default="center", choices=("center", "random"),
                        help="click 1 at the distance-transform maximum (default) or a random interior voxel")
    parser.add_argument("--first-prompt", default="click", choices=("click", "box2d", "lasso", "scribble"),
                        help="interaction 1: a click (default) or a simulated 2D box, lasso or scribble on the "
                             "structure's largest axial slice (ctsam3d.clicks.shapes); then clicks")
    parser.add_argument("--prompt-axis", default="0", choices=("axial", "coronal", "sagittal", "0", "1", "2"),
                        help="where --first-prompt's slice lies: an anatomical plane (axial, coronal, sagittal; "
                             "found for each image from its direction) or the array axis (z, y, x) it is normal "
                             "to: 0 the image's own slices (default), 1 or 2 (which plane depends on how the "
                             "image is stored)")
    parser.add_argument("--click-source", default="own", choices=("own", "first-method"),
                        help="next clicks from each method's own errors (default) or replay the first method's clicks")
    parser.add_argument("--nsd-tolerance", type=float, default=2.0, metavar="MM", help="NSD tolerance in mm (default 2)")
    parser.add_argument("--max-patches", type=int, default=None, metavar="N", help="model expansion budget (Session)")
    parser.add_argument("--no-refine", action="store_true",
                        help="model: threshold the pasted probabilities at 0.5, without the intensity-guided "
                             "boundary refinement (Session(refine=False); ctsam3d.inference.refine)")
    parser.add_argument("--no-mirror", action="store_true",
                        help="decode each patch once, without averaging it with its left-right mirror "
                             "(Session(mirror=False); ctsam3d.inference.runner.PatchRunner)")
    parser.add_argument("--title", default=None, help="title of the plots and report")
    parser.add_argument("-o", "--output", required=True, help="output folder for report.json, report.csv and PNG plots")
    parser.add_argument("-d", "--device", default="cpu", help="cpu, cuda, cuda:N, mps (gpu, gpu:N accepted); default cpu")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing report in the output folder")


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def build_methods(names: list[str], models: list[str] | None, device: str, max_patches: int | None,
                  no_refine: bool = False, no_mirror: bool = False) -> list:
    """Method objects for ``names``; model methods once per model (named by the model when several)."""
    from ..evaluation import RandomWalkerMethod, RegionGrowingMethod

    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise InputError(f"--method: unknown method {unknown[0]!r} (choose from {', '.join(METHODS)})")
    if not names:
        raise InputError("--method: no method given")
    out = []
    loaded = []
    if any(n.startswith("model") for n in names):
        from ..evaluation import SessionMethod
        from ..modeling import load_model

        for spec in models or [None]:
            model = load_model(spec, device=device)
            name = getattr(model, "model_name", None) or "default model"  # the default is not always the starter
            label = name if spec is None else (Path(spec).name if Path(spec).exists() else spec)
            loaded.append((label, spec or name, model))
    kwargs = {} if max_patches is None else {"max_patches": max_patches}
    if no_refine:
        kwargs["refine"] = False
    if no_mirror:
        kwargs["mirror"] = False
    for n in names:
        if n.startswith("model"):
            for label, source, model in loaded:
                base = "model" if len(loaded) == 1 else f"model[{label}]"
                expansion = n == "model"
                out.append(SessionMethod(model, expansion=expansion,
                                         name=base if expansion else f"{base}-noexp", source=source, **kwargs))
        elif n == "random-walker":
            out.append(RandomWalkerMethod())
        else:
            out.append(RegionGrowingMethod())
    return out


def _table(report: dict) -> str:
    K = report["protocol"]["clicks"]
    ks = [k for k in (1, 3, 5, 10) if k <= K] + ([K] if K not in (1, 3, 5, 10) else [])
    head = ["method", "n"] + [f"Dice@{k}" for k in ks] + [f"NSD@{K}", "NoC80", "NoC85", "NoC90", "s/click"]
    rows = [head]
    for m, s in report["methods"].items():
        if not s["n"]:
            rows.append([m, "0"] + ["-"] * (len(head) - 2))
            continue
        t = s.get("time_per_click_s", {}).get("mean")
        rows.append([m, str(s["n"])] + [f"{s['dice_at_click'][str(k)]:.3f}" for k in ks]
                    + [f"{s['nsd_at_click'][str(K)]:.3f}"] + [f"{s['noc'][t_]:.2f}" for t_ in ("80", "85", "90")]
                    + [f"{t:.3f}" if t is not None else "-"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)


def run(args: argparse.Namespace) -> int:
    from ..evaluation import evaluate
    from .segment_cmd import resolve_device

    out = Path(args.output)
    if (out / "report.json").exists() and not args.overwrite:
        raise OutputExistsError(f"{out / 'report.json'}: exists (pass --overwrite to replace it)")
    if args.clicks < 1:
        raise InputError(f"--clicks: must be at least 1, got {args.clicks}")
    from ..evaluation.datasets import open_cases

    cases = open_cases(args.data, args.format, catalogue=args.catalogue)  # bad data fails before a model loads
    names = _split(args.method)
    device = resolve_device(args.device) if any(n.startswith("model") for n in names) else "cpu"
    methods = build_methods(names, args.model, device, args.max_patches, args.no_refine, args.no_mirror)
    report = evaluate(
        args.data, args.format, methods, clicks=args.clicks, structures=_split(args.structures) or None,
        out_dir=out, seed=args.seed, max_cases=args.max_cases, nsd_tolerance_mm=args.nsd_tolerance,
        first=args.first_click, click_source=args.click_source, progress=not args.quiet, title=args.title,
        cases=cases, first_prompt=args.first_prompt, prompt_axis=int(args.prompt_axis) if args.prompt_axis.isdigit() else args.prompt_axis, command=" ".join(["ctsam3d", *(shlex.quote(a) for a in sys.argv[1:])]),
    )
    print(_table(report))
    for f in report["failures"]:
        where = "/".join(str(f[k]) for k in ("case", "structure", "method") if k in f)
        log.warning("failed: %s: %s", where or "-", f["error"])
    print(f"report: {out / 'report.json'} ({len(report['per_case'])} runs, {len(report['failures'])} failures, "
          f"{report['elapsed_s']} s)")
    return 1 if not report["per_case"] else 0
