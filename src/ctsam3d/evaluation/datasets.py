"""Evaluation cases: the project's dataset adapters plus the CVPR 2025 ``.npz`` format.

A :class:`Case` knows which structure names it *may* hold (``names``) without reading
anything, and loads its image and one structure's mask on demand. A structure absent
from a case (no label file, or no voxel of its id) gives ``None``: the protocol skips it,
it is never scored as zero.

Formats (``fmt``):

* ``pairs``, ``totalseg``, ``nnunet``: listed by :func:`ctsam3d.data.open_dataset`
  (``pairs`` also takes a ``.csv`` / ``.json`` manifest file, see that module). Label ids of
  ``pairs`` data are named by ``names`` if given, else by a ``labels.json`` /
  ``dataset.json`` beside the cases (``{"labels": {name: id}}`` or ``{id: name}``), else by
  the anatomy catalogue ``catalogue`` (default ``openkbp``).
* ``cvpr-npz``: CVPR 2025 interactive challenge ``.npz`` files with ``imgs`` (D, H, W),
  ``spacing`` (z, y, x) mm and ``gts`` (D, H, W) label ids; names from a ``dataset.json`` /
  ``labels.json`` beside them, else ``label_<id>``. Intensities are used as stored (the
  challenge's CT may be pre-scaled, not HU).

Images are SimpleITK images (HU, any orientation) read by :func:`ctsam3d.io.read_volume`;
masks are bool numpy ``(z, y, x)`` on the image grid, read by :func:`ctsam3d.io.read_label`
with the image as reference (a grid mismatch fails that case with a message).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import SimpleITK as sitk

from ..anatomy import normalize_name
from ..errors import InputError

__all__ = ["Case", "open_cases", "normalize_name", "FORMATS"]

FORMATS = ("pairs", "totalseg", "nnunet", "cvpr-npz")


@dataclass
class Case:
    """One evaluation case.

    Attributes:
        case_id: name used in reports.
        names: structure names this case may hold, as the dataset spells them (match them
            with :func:`ctsam3d.anatomy.normalize_name`).
        load_image: returns the CT as a SimpleITK image.
        load_mask: ``(name, image) -> bool (z, y, x) array, or None`` when absent.
        source: the image path, for messages.
    """

    case_id: str
    names: list[str]
    load_image: Callable[[], sitk.Image]
    load_mask: Callable[[str, sitk.Image], np.ndarray | None]
    source: str = ""


def _parse_labels(obj) -> dict[int, str]:
    """``{name: id}`` or ``{id: name}`` (ids int or str) → ``{id: name}``; region labels (lists) skipped."""
    out: dict[int, str] = {}
    for k, v in dict(obj).items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if int(v) != 0:
                out[int(v)] = str(k)
        elif isinstance(v, str) and str(k).lstrip("-").isdigit() and int(k) != 0:
            out[int(k)] = v
    return out


def _names_beside(folder: Path) -> dict[int, str] | None:
    for fname in ("labels.json", "dataset.json"):
        p = folder / fname
        if p.is_file():
            try:
                d = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise InputError(f"{p}: not valid JSON ({exc})") from None
            return _parse_labels(d.get("labels", d)) if isinstance(d, dict) else None
    return None


def _spec_case(spec) -> Case:
    """A :class:`ctsam3d.data.CaseSpec` as a lazily loaded evaluation case."""
    from ..io import read_label, read_volume

    cache: dict = {}
    if spec.label is not None:
        name_to_id = {str(n): int(i) for i, n in spec.names.items()}

        def load_mask(name: str, image: sitk.Image) -> np.ndarray | None:
            if "labels" not in cache:
                cache["labels"] = sitk.GetArrayFromImage(read_label(spec.label, reference=image))
            m = cache["labels"] == name_to_id[name]
            return m if m.any() else None

        names = list(name_to_id)
    else:
        files = {str(n): Path(p) for n, p in spec.label_files.items()}

        def load_mask(name: str, image: sitk.Image) -> np.ndarray | None:
            m = sitk.GetArrayFromImage(read_label(files[name], reference=image)) != 0
            return m if m.any() else None

        names = list(files)

    def load_image() -> sitk.Image:
        cache.clear()
        return read_volume(spec.image, what="image")

    return Case(spec.case_id, names, load_image, load_mask, source=str(spec.image))


def _npz_case(path: Path, names: dict[int, str] | None) -> Case:
    cache: dict = {}

    def arrays() -> dict:
        if "npz" not in cache:
            try:
                with np.load(path, allow_pickle=False) as z:
                    cache["npz"] = {k: z[k] for k in ("imgs", "spacing", "gts")}
            except KeyError as exc:
                raise InputError(f"{path}: missing array {exc} (need imgs, spacing, gts)") from None
            except (OSError, ValueError) as exc:
                raise InputError(f"{path}: cannot read npz ({exc})") from None
            a = cache["npz"]
            if a["imgs"].ndim != 3 or a["gts"].shape != a["imgs"].shape or np.size(a["spacing"]) != 3:
                raise InputError(f"{path}: expected imgs and gts (D, H, W) of one shape and spacing (z, y, x)")
        return cache["npz"]

    def load_image() -> sitk.Image:
        a = arrays()
        img = sitk.GetImageFromArray(a["imgs"].astype(np.float32))
        img.SetSpacing(tuple(float(s) for s in np.asarray(a["spacing"], float).reshape(3)[::-1]))
        return img

    if names is None:
        try:
            names = {int(i): f"label_{int(i)}" for i in np.unique(arrays()["gts"]) if i != 0}
        except InputError as exc:
            return _broken_case(path.stem, exc)
    name_to_id = {str(n): i for i, n in names.items()}

    def load_mask(name: str, image: sitk.Image) -> np.ndarray | None:
        m = arrays()["gts"] == name_to_id[name]
        return m if m.any() else None

    return Case(path.stem, list(name_to_id), load_image, load_mask, source=str(path))


def _broken_case(case_id: str, exc: Exception) -> Case:
    def fail(*_):
        raise exc

    return Case(case_id, [], fail, fail)


def open_cases(data: str | Path, fmt: str = "pairs", *, catalogue: str = "openkbp",
               names: dict[int, str] | None = None) -> list[Case]:
    """List the cases of a dataset (nothing heavy is read until a case is used).

    Args:
        data: dataset folder, or a manifest file for ``pairs``.
        fmt: one of :data:`FORMATS`.
        catalogue: anatomy catalogue naming ``pairs`` label ids (see module docstring).
        names: explicit ``{id: name}`` for ``pairs`` / ``cvpr-npz`` label ids.

    Raises:
        InputError: unknown format, missing folder, or no case of that format found.
    """
    from ..data import open_dataset

    data = Path(data)
    if fmt not in FORMATS:
        raise InputError(f"--format: unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
    if not data.exists():
        raise InputError(f"{data}: data folder not found")
    if fmt == "cvpr-npz":
        if not data.is_dir():
            raise InputError(f"{data}: expected a folder of .npz files (format 'cvpr-npz')")
        nm = names or _names_beside(data)
        cases = [_npz_case(p, nm) for p in sorted(data.glob("*.npz"))]
        if not cases:
            raise InputError(f"{data}: no .npz files found (format 'cvpr-npz')")
        return cases
    if data.is_file():
        if fmt != "pairs" or data.suffix.lower() not in (".json", ".csv"):
            raise InputError(f"{data}: a file is accepted only as a pairs manifest (.json or .csv)")
        specs = open_dataset(data, "manifest", catalogue=catalogue, names=names)
    else:
        if fmt == "pairs" and names is None:
            names = _names_beside(data)
        specs = open_dataset(data, fmt, catalogue=catalogue, names=names)
    if not specs:
        raise InputError(f"{data}: no cases found for format {fmt!r}")
    return [_spec_case(s) for s in specs]
