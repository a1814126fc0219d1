"""``ctsam3d segment``: segment one structure from clicks and write the mask on the input grid.

Example::

    ctsam3d segment -i ct.nii.gz -o aorta.nii.gz --click 60,72,40 --click 61,70,90 --negative 70,80,40
    ctsam3d segment -i ct_dicom/ -o liver.dcm --world --click=-12.5,30,101    # LPS mm; DICOM-SEG

Clicks are ITK voxel indices ``i,j,k`` of the input file (i fastest; what 3D Slicer shows
as IJK), or LPS millimetres with ``--world``. They are applied in command-line order (the
first must be positive). Write a negative number as ``--click=-12.5,30,101`` so it is not
taken for an option. The output format follows the file name: ``.nii.gz``/``.nii``,
``.nrrd``, ``.mha``, or ``.dcm`` (DICOM-SEG; the input must then be a DICOM series).
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from concurrent.futures import ThreadPoolExecutor

from ..errors import ClickError, InputError

log = logging.getLogger(__name__)

NAME = "segment"
HELP = "Segment a structure from clicks and write the mask"
#: The process ends as soon as the mask is written (no interpreter teardown; see cli.main).
FAST_EXIT = True


class _PromptAction(argparse.Action):
    """Collects ``--click`` / ``--negative`` in command-line order as ``(text, positive)``."""

    def __call__(self, parser, namespace, values, option_string=None):
        items = list(getattr(namespace, self.dest, None) or [])
        items.append((values, bool(self.const)))
        setattr(namespace, self.dest, items)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--input", required=True, help="CT image file (.nii.gz, .nrrd, .mha, ...) or DICOM folder")
    parser.add_argument("-o", "--output", required=True, help="mask to write: .nii.gz, .nii, .nrrd, .mha or .dcm (DICOM-SEG)")
    parser.add_argument(
        "--click", dest="prompts", action=_PromptAction, const=True, metavar="I,J,K",
        help="positive click: ITK voxel index i,j,k of the input (or LPS mm with --world); repeatable",
    )
    parser.add_argument(
        "--negative", dest="prompts", action=_PromptAction, const=False, metavar="I,J,K",
        help="negative (background) click; repeatable",
    )
    parser.add_argument("--world", action="store_true", help="clicks are LPS millimetres instead of voxel indices")
    parser.add_argument("--prompts", dest="prompts_file", default=None, metavar="JSON",
                        help="prompts file: clicks, 3D boxes, 2D boxes, lassos, scribbles in order, index or world "
                             "space (schema: docs/prompts.md); instead of --click/--negative")
    parser.add_argument("--model", default=None,
                        help="model name ('ctsam3d models' lists them), model directory, .safetensors or released params.pth "
                             "(default: the released weights when installed, else the bundled default)")
    parser.add_argument("--untrained", action="store_true",
                        help="--model names a preset's freshly initialised weights (meaningless masks, for testing): a preset name is "
                             "refused without it, and ctsam3d-lite-wb means the bundled trained model unless it is given")
    parser.add_argument("--allow-non-hu", action="store_true",
                        help="segment an image whose intensities do not look like CT Hounsfield units (refused otherwise)")
    parser.add_argument("-d", "--device", default="cpu", help="cpu, cuda, cuda:N, mps (gpu, gpu:N accepted); default cpu")
    parser.add_argument("--no-expansion", action="store_true", help="no cross-patch expansion (only the clicked patches)")
    parser.add_argument("--max-patches", type=int, default=None, metavar="N", help="expansion budget: neighbour patches per click (default 16)")
    parser.add_argument("--no-refine", action="store_true",
                        help="threshold the model's probabilities at 0.5, without the intensity-guided boundary refinement")
    parser.add_argument("--no-mirror", action="store_true",
                        help="decode each patch once, without averaging it with its left-right mirror (about half the model time per click)")
    parser.add_argument("--name", default=None, help="structure name stored in DICOM-SEG output (default: mask)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")


def parse_point(text: str, option: str) -> tuple[float, float, float]:
    """``"i,j,k"`` -> three floats; ClickError naming the option otherwise."""
    parts = [p.strip() for p in str(text).replace(";", ",").split(",")]
    if len(parts) != 3 or not all(parts):
        raise ClickError(f"{option} {text!r}: expected three comma-separated numbers like 120,85,40")
    try:
        return tuple(float(p) for p in parts)  # type: ignore[return-value]
    except ValueError:
        raise ClickError(f"{option} {text!r}: expected three comma-separated numbers like 120,85,40") from None


def resolve_device(spec: str) -> str:
    """``cpu | cuda | cuda:N | mps | gpu | gpu:N`` -> torch device string, checked to exist.

    Raises:
        InputError: unknown name or a device this machine does not have.
    """
    d = (spec or "cpu").strip().lower()
    if d.startswith("gpu"):
        d = "cuda" + d[3:]
    if d == "cpu":
        return d
    import torch  # only for a GPU: on the CPU path torch is imported while the CT is read
    if d == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise InputError("-d mps: Apple MPS is not available on this machine")
        return d
    if d == "cuda" or d.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise InputError(f"-d {spec}: CUDA is not available on this machine (use -d cpu)")
        if d.startswith("cuda:"):
            try:
                n = int(d[5:])
            except ValueError:
                raise InputError(f"-d {spec}: expected cuda:N with a GPU number N") from None
            if not 0 <= n < torch.cuda.device_count():
                raise InputError(f"-d {spec}: no such GPU (this machine has {torch.cuda.device_count()})")
        return d
    raise InputError(f"-d {spec}: unknown device; use cpu, cuda, cuda:N, mps, gpu or gpu:N")


def run(args: argparse.Namespace) -> int:
    from ..io import read_volume, write_mask
    from ..io.write import check_output

    prompts = list(args.prompts or [])
    prompt_specs = None
    if getattr(args, "prompts_file", None) is not None:  # --prompts: checked fully before any work
        from ..inference.prompt_file import load_prompts

        if prompts:
            raise ClickError("--prompts: give the clicks in the prompts file, not also as --click/--negative")
        prompt_specs = load_prompts(args.prompts_file)
        prompts = [("0,0,0", True)]  # (the file's prompts are applied below)
    if not prompts:
        raise ClickError("no clicks: give at least one --click i,j,k (or --prompts prompts.json)")
    points = [(parse_point(t, "--click" if pos else "--negative"), pos) for t, pos in prompts]
    if not points[0][1]:
        raise ClickError("the first click must be positive (--click), not --negative")
    if args.max_patches is not None and args.max_patches < 0:
        raise InputError(f"--max-patches {args.max_patches}: must be >= 0")
    check_output(args.output, overwrite=args.overwrite, source=args.input)  # fail before any work
    device = resolve_device(args.device)

    # Progress: a line before each step that can take a second. PyTorch's import and the model
    # load run in a worker thread while the CT is read (both mostly outside the GIL).
    t_start = time.perf_counter()
    log.info("reading %s and loading the model …", args.input)
    with ThreadPoolExecutor(1, thread_name_prefix="ctsam3d-load") as pool:
        loading = pool.submit(_load_model, args.model, device, args.quiet, args.untrained)
        t0 = time.perf_counter()
        image = read_volume(args.input)
        log.info(
            "%s: %s voxels, %s mm (%.1f s)", args.input, " x ".join(str(s) for s in image.GetSize()),
            " x ".join(f"{s:.2f}" for s in image.GetSpacing()), time.perf_counter() - t0,
        )
        from ..io.hu_check import NotHUWarning, check_hu

        hu = check_hu(image)  # issue 19: a CT not in HU gives meaningless masks; refused unless asked
        if not hu.plausible and not args.allow_non_hu:
            raise InputError(f"{hu.message(args.input)}; its masks would be meaningless (--allow-non-hu segments it anyway)")
        if not hu.plausible:
            log.warning("%s; the mask will not be meaningful", hu.message(args.input))
        model, Session = loading.result()
    if args.model is not None:  # (the default model is named by load_model)
        log.info("model: %s (%s)", getattr(model, "model_name", args.model), model.config.preset)
    log.info("model ready (%.1f s since start); segmenting …", time.perf_counter() - t_start)
    session = Session(model, expansion=not args.no_expansion, max_patches=args.max_patches,
                      refine=False if args.no_refine else None, mirror=False if args.no_mirror else None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotHUWarning)  # said above
        session.set_image(image)
    space = "world" if args.world else "index"
    if prompt_specs is not None:
        from ..inference.prompt_file import apply_prompts

        def _said(spec, rec):
            log.info("prompt %d (%s %s): %.0f ms, %d patch(es) decoded, mask %.1f ml", spec.number, spec.type,
                     "+" if spec.positive else "-", rec.timing_ms["total"], rec.patches_decoded, rec.volume_ml)

        apply_prompts(session, prompt_specs, args.prompts_file, on_step=_said)
        points = []
    for n, (point, positive) in enumerate(points, 1):
        rec = session.add_click(point, positive=positive, space=space)
        log.info(
            "click %d (%s %s): %.0f ms, %d patch(es) decoded (%d by expansion), mask %.1f ml",
            n, "+" if positive else "-", ",".join(f"{v:g}" for v in point), rec.timing_ms["total"],
            rec.patches_decoded, rec.expansion_patches, rec.volume_ml,
        )
    t0 = time.perf_counter()
    mask = session.result()
    import SimpleITK as sitk

    if not sitk.GetArrayViewFromImage(mask).any():
        log.warning("%s", empty_mask_message(model, args.output))
    # source=image: the CT read above gives the grid (and, from DICOM, the series for a SEG); not read again
    path = write_mask(mask, args.output, source=image, overwrite=args.overwrite, names={1: args.name or "mask"})
    log.info("wrote %s (%.0f ms; %.1f s in all)", path, (time.perf_counter() - t0) * 1000, time.perf_counter() - t_start)
    return 0


def empty_mask_message(model, where: str) -> str:
    """One line for an empty result: which model found nothing and what it was trained on."""
    from ..hub.registry import find_model

    name = getattr(model, "model_name", None) or model.config.preset
    entry = find_model(name)
    trained = f"; it was trained on {entry.anatomy}" if entry is not None else ""
    return (f"{where}: the mask is empty (0 voxels): model {name} found no structure at the clicks{trained}. "
            f"Try a click nearer the structure's centre or another model ('ctsam3d models')")


def _load_model(spec, device: str, quiet: bool, untrained: bool = False):
    """``(model, Session class)``: the inference imports and the model, for the worker thread.
    A name that means untrained weights (a preset no bundled model bears) is refused unless
    ``untrained``; with ``untrained`` a preset name gives its fresh weights (``ctsam3d-lite-wb`` too)."""
    import warnings

    from ..hub.registry import is_preset, is_untrained
    from ..inference.session import Session
    from ..modeling import load_model

    if is_untrained(spec) and not untrained:
        raise InputError(
            f"--model {spec}: an untrained preset (freshly initialised weights; its masks mean nothing). "
            f"Use a trained model ('ctsam3d models' lists them; default: none given) or add --untrained"
        )
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore")
        return load_model(spec, device=device, untrained=untrained and is_preset(spec)), Session
