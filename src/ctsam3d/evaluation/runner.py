"""``evaluate``: run the simulated-click protocol over a dataset for several methods.

Loop: for each case (image read once) → each method ``start``-ed on it → for each
structure present → each method ``reset`` and run for K clicks (same first click; next
clicks per :class:`~ctsam3d.evaluation.protocol.ProtocolConfig.click_source`).
A case that cannot be read, a structure name the dataset does not know, or a method that
raises are recorded in ``failures``; every other case is still evaluated.
"""

from __future__ import annotations

import difflib
import logging
import os
import resource
import sys
import time
from pathlib import Path
from typing import Sequence

import SimpleITK as sitk

from ..errors import CtSam3dError, InputError
from ..geometry.orientation import PLANE_NORMALS
from .datasets import Case, normalize_name, open_cases
from .methods import InteractiveMethod
from .protocol import ProtocolConfig, describe_protocol, run_structure
from .report import summarize, write_report

__all__ = ["evaluate"]

log = logging.getLogger(__name__)


def _peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(kb / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def _cuda_peak_reset() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.reset_peak_memory_stats()


def _cuda_peak_mb() -> float | None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return None


def _environment() -> dict:
    import platform

    import numpy as np

    from .._version import __version__

    env = {"ctsam3d": __version__, "python": platform.python_version(), "numpy": np.__version__,
           "machine": platform.machine(), "cpus": os.cpu_count()}
    torch = sys.modules.get("torch")
    if torch is not None:
        env["torch"] = torch.__version__
        env["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            env["gpu"] = torch.cuda.get_device_name()
    return env


def _select_structures(cases: list[Case], structures: Sequence[str] | None, failures: list[dict]) -> list[str] | None:
    """Normalised keys of the requested structures the dataset knows; unknown ones go to ``failures``."""
    if not structures:
        return None
    known = {normalize_name(n): n for c in cases for n in c.names}
    wanted = []
    for s in structures:
        key = normalize_name(s)
        if key in known:
            wanted.append(key)
            continue
        close = difflib.get_close_matches(key, list(known), n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(known[c] for c in close)}?" if close else ""
        failures.append({"structure": s, "error": f"structure {s!r} not found in this dataset's labels "
                                                  f"({len(known)} names known){hint}"})
    return wanted


def evaluate(
    data_dir: str | Path,
    format: str = "pairs",  # noqa: A002 - the CLI's name
    methods: Sequence[InteractiveMethod] = (),
    clicks: int = 10,
    structures: Sequence[str] | None = None,
    out_dir: str | Path | None = None,
    seed: int = 0,
    *,
    max_cases: int | None = None,
    nsd_tolerance_mm: float = 2.0,
    first: str = "center",
    click_source: str = "own",
    progress: bool = True,
    title: str | None = None,
    catalogue: str = "openkbp",
    cases: list[Case] | None = None,
    command: str | None = None,
    first_prompt: str = "click",
    prompt_axis: int | str = 0,
) -> dict:
    """Evaluate ``methods`` on a dataset with simulated clicks; write the report if ``out_dir``.

    Args:
        data_dir: dataset folder (or a pairs manifest file), see :mod:`ctsam3d.evaluation.datasets`.
        format: ``pairs`` | ``totalseg`` | ``nnunet`` | ``cvpr-npz``.
        methods: :class:`InteractiveMethod` objects (distinct ``name`` each).
        clicks: K, clicks per structure.
        structures: names to evaluate (default: every structure of each case).
        out_dir: where report.json, report.csv and the PNGs go (None: nothing written).
        seed: seeds the random first click (``first="random"``) and torch.
        max_cases: evaluate only the first N cases (sorted by name).
        nsd_tolerance_mm: NSD tolerance in mm.
        first: ``"center"`` (distance-transform maximum) or ``"random"``.
        click_source: ``"own"`` or ``"first-method"`` (replay method 1's clicks to all).
        progress: show a tqdm bar on stderr.
        title: title of the report and plots.
        catalogue: anatomy catalogue naming ``pairs`` label ids.
        cases: already listed cases (skips listing ``data_dir`` again).
        command: the command line that produced the report (stored in it).
        first_prompt: interaction 1: ``"click"`` or a simulated ``"box2d"``, ``"lasso"`` or
            ``"scribble"`` (:mod:`ctsam3d.clicks.shapes`); the next ones are clicks.
        prompt_axis: where the first shape's slice lies: an anatomical plane (``"axial"``,
            ``"coronal"``, ``"sagittal"``, found for each image from its direction), or the array
            axis ``(z, y, x)`` the slice is normal to (0: the image's own slices; 1, 2: which plane
            that is depends on how the image is stored, e.g. 2 is sagittal in an LPS or RAS CT and
            coronal in an OpenKBP volume stored P, L, I).

    Returns:
        The report dict (see :mod:`ctsam3d.evaluation.report`).

    Raises:
        InputError: bad arguments or a data folder with no readable case list.
    """
    if not methods:
        raise InputError("--method: no method to evaluate")
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise InputError(f"--method: method names must differ, got {names}")
    if clicks < 1:
        raise InputError(f"--clicks: must be at least 1, got {clicks}")
    if first not in ("center", "random"):
        raise InputError(f"first click mode must be 'center' or 'random', got {first!r}")
    if click_source not in ("own", "first-method"):
        raise InputError(f"click source must be 'own' or 'first-method', got {click_source!r}")
    if first_prompt not in ("click", "box2d", "lasso", "scribble"):
        raise InputError(f"--first-prompt: must be click, box2d, lasso or scribble, got {first_prompt!r}")
    planes = tuple(PLANE_NORMALS)
    if prompt_axis not in (0, 1, 2, *planes):
        raise InputError(f"--prompt-axis: must be axial, coronal, sagittal or an array axis 0, 1, 2 (z, y, x), "
                         f"got {prompt_axis!r}")
    if first_prompt != "click":
        clicks_only = [m.name for m in methods if not getattr(m, "supports_shapes", False)]
        if clicks_only:
            raise InputError(f"--first-prompt {first_prompt}: method(s) {', '.join(clicks_only)} take clicks only")
    config = ProtocolConfig(clicks=int(clicks), nsd_tolerance_mm=float(nsd_tolerance_mm), first=first,
                            seed=int(seed), click_source=click_source, first_prompt=first_prompt,
                            prompt_axis=0 if prompt_axis in planes else int(prompt_axis),
                            prompt_plane=prompt_axis if prompt_axis in planes else None)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)

    t_start = time.perf_counter()
    cases = list(cases) if cases is not None else open_cases(data_dir, format, catalogue=catalogue)
    if max_cases:
        cases = cases[: int(max_cases)]
    failures: list[dict] = []
    skipped: list[dict] = []
    records: list[dict] = []
    wanted = _select_structures(cases, structures, failures)
    display = {normalize_name(n): n for c in cases for n in c.names}
    start_times: dict[str, list[float]] = {m.name: [] for m in methods}
    gpu_peak: dict[str, float] = {}

    from tqdm.auto import tqdm

    bar = tqdm(cases, desc="evaluate", unit="case", disable=not progress, file=sys.stderr)
    for case in bar:
        bar.set_postfix_str(case.case_id)
        try:
            image = case.load_image()
            if image.GetDimension() != 3:
                raise InputError(f"{case.source}: expected a 3D image, got {image.GetDimension()}D")
            targets = []
            lookup = {normalize_name(n): n for n in case.names}
            for key in (wanted if wanted is not None else list(lookup)):
                st = lookup.get(key)
                if st is None:
                    skipped.append({"case": case.case_id, "structure": display.get(key, key),
                                    "reason": "not labelled in this case"})
                    continue
                m = case.load_mask(st, image)
                if m is None:
                    skipped.append({"case": case.case_id, "structure": st, "reason": "absent (no voxel)"})
                else:
                    targets.append((st, m))
        except (CtSam3dError, RuntimeError, OSError, ValueError) as exc:
            failures.append({"case": case.case_id, "error": str(exc).strip().splitlines()[0]})
            log.warning("%s: skipped: %s", case.case_id, exc)
            continue
        sx, sy, sz = image.GetSpacing()
        spacing = (sz, sy, sx)
        active = []
        for method in methods:
            try:
                t0 = time.perf_counter()
                method.start(image)
                start_times[method.name].append(time.perf_counter() - t0)
                active.append(method)
            except Exception as exc:  # noqa: BLE001 - one method failing must not stop the rest
                failures.append({"case": case.case_id, "method": method.name, "error": f"start: {exc}"})
        for st, target in targets:
            replay = None
            for method in active:
                try:
                    method.reset()
                    _cuda_peak_reset()
                    res = run_structure(method, target, spacing, config, case=case.case_id, structure=st,
                                        replay=replay, direction=image.GetDirection())
                    peak = _cuda_peak_mb()
                    if peak is not None:
                        gpu_peak[method.name] = max(gpu_peak.get(method.name, 0.0), peak)
                except Exception as exc:  # noqa: BLE001
                    failures.append({"case": case.case_id, "structure": st, "method": method.name,
                                     "error": f"{type(exc).__name__}: {exc}"})
                    log.warning("%s/%s/%s failed: %s", case.case_id, st, method.name, exc)
                    continue
                if click_source == "first-method" and replay is None:
                    replay = res.clicks
                records.append(res.to_dict())
        del image, targets
    for method in methods:
        method.close()

    extra = {}
    for m in methods:
        e: dict = {"config": m.describe()}
        if start_times[m.name]:
            e["start_s"] = round(sum(start_times[m.name]) / len(start_times[m.name]), 4)
        if m.name in gpu_peak:
            e["peak_gpu_memory_mb"] = gpu_peak[m.name]
        extra[m.name] = e
    report = {
        "title": title or f"{Path(data_dir).name} ({format})",
        "data": str(data_dir),
        "format": format,
        "protocol": describe_protocol(config),
        **summarize(records, names, config.clicks, extra),
        "command": command,
        "environment": _environment(),
        "cases": len(cases),
        "per_case": records,
        "failures": failures,
        "skipped": skipped,
        "peak_rss_mb": _peak_rss_mb(),
        "elapsed_s": round(time.perf_counter() - t_start, 1),
    }
    if out_dir is not None:
        write_report(report, Path(out_dir))
    return report
