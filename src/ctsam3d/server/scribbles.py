"""Scribble label volumes as 3D Slicer's MONAI Label extension sends them -> clicks.

Slicer's scribbles panel (shown when ``/info/`` lists a model of type ``"scribbles"``) adds
two segments, ``background_scribbles`` and ``foreground_scribbles``, exports the visible
segments to a label volume on the image's grid and posts it as the ``label`` file of
``POST /infer/<scribbles model>``. MONAI Label's convention for the label values is
``scribbles_bg_label = 2`` and ``scribbles_fg_label = 3`` (1 is the structure's own label
segment), overridden by ``params.label_info`` entries ``{"name": "foreground_scribbles" |
"background_scribbles", "id": N}`` or by ``params.scribbles_fg_label`` /
``params.scribbles_bg_label``.

A scribble is rendered for the model as a dense row of clicks along it (see
:mod:`ctsam3d.inference.shape_render`), so the server turns the painted voxels into clicks:
one per ``step_mm`` cube of world space holding scribble voxels (the painted voxel nearest
the cube's painted centroid), at most ``max_points`` per polarity (evenly thinned), ordered
by ITK index. They then go through the same click path as Deepgrow points (only new points
run when the old ones are a prefix). The structure's own label (value 1) is not used.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..geometry import index_to_lps

__all__ = ["SUFFIX", "FG_LABEL", "BG_LABEL", "model_entry", "scribble_labels", "scribble_points"]

SUFFIX = "-scribbles"
FG_LABEL, BG_LABEL = 3, 2  # MONAI Label's defaults (scribbles_fg_label, scribbles_bg_label)


def model_entry(labels: list[str]) -> dict:
    """The ``/info/`` record of the scribbles model."""
    return {
        "type": "scribbles",
        "dimension": 3,
        "labels": labels,
        "description": "CT-SAM3D from 3D Slicer scribbles: foreground / background scribble label volume "
                       f"(values {FG_LABEL} / {BG_LABEL}, or as params.label_info says) -> 3D mask",
        "config": {},
    }


def _label_id(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or not 0 < int(value) < 2**16:
        raise InputError(f"params.{what}: expected a label value 1..65535, got {value!r}")
    return int(value)


def scribble_labels(params: dict) -> tuple[int, int]:
    """``(foreground, background)`` label values from the infer params (see module doc)."""
    fg, bg = FG_LABEL, BG_LABEL
    info = params.get("label_info") or []
    if not isinstance(info, list):
        raise InputError("params.label_info: expected a list of {name, id}")
    for item in info:
        if isinstance(item, dict) and item.get("name") in ("foreground_scribbles", "background_scribbles"):
            v = _label_id(item.get("id", item.get("idx")), "label_info id")
            if item["name"] == "foreground_scribbles":
                fg = v
            else:
                bg = v
    if "scribbles_fg_label" in params:
        fg = _label_id(params["scribbles_fg_label"], "scribbles_fg_label")
    if "scribbles_bg_label" in params:
        bg = _label_id(params["scribbles_bg_label"], "scribbles_bg_label")
    if fg == bg:
        raise InputError(f"scribbles: foreground and background scribbles have the same label value {fg}")
    return fg, bg


def _thin(label_kji: np.ndarray, value: int, image: sitk.Image, offset_ijk, step_mm: float,
          max_points: int) -> list[tuple[int, int, int]]:
    kji = np.argwhere(label_kji == value)
    if len(kji) == 0:
        return []
    ijk = kji[:, ::-1].astype(np.float64) + np.asarray(offset_ijk, np.float64)
    lps = index_to_lps(image, ijk)
    cells = np.floor(lps / step_mm).astype(np.int64)
    _, inverse = np.unique(cells, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    picks = []
    for c in range(int(inverse.max()) + 1):
        members = np.flatnonzero(inverse == c)
        centre = lps[members].mean(axis=0)
        best = members[int(np.argmin(((lps[members] - centre) ** 2).sum(axis=1)))]
        picks.append(tuple(int(v) for v in ijk[best]))
    picks.sort(key=lambda p: (p[2], p[1], p[0]))
    if len(picks) > max_points:
        picks = [picks[int(i)] for i in np.linspace(0, len(picks) - 1, max_points).round()]
    return picks


def scribble_points(label: sitk.Image, image: sitk.Image, fg_label: int = FG_LABEL, bg_label: int = BG_LABEL,
                    step_mm: float = 6.0, max_points: int = 64) -> tuple[list, list]:
    """Foreground and background clicks (ITK ``(i, j, k)`` of ``image``) from a scribble label
    volume on ``image``'s grid (see module doc).

    Raises:
        InputError: no foreground scribble in the volume.
    """
    arr = sitk.GetArrayViewFromImage(label)
    # the bounding box of the scribbles only: a whole-body label volume is mostly zeros
    nz = np.nonzero((arr == fg_label) | (arr == bg_label))
    if len(nz[0]) == 0:
        raise InputError(f"scribbles: the label volume holds no scribble (no voxel of value {fg_label} or {bg_label})")
    lo = [int(a.min()) for a in nz]
    sub = np.asarray(arr[lo[0]:int(nz[0].max()) + 1, lo[1]:int(nz[1].max()) + 1, lo[2]:int(nz[2].max()) + 1])
    offset = lo[::-1]  # (i, j, k)
    fg = _thin(sub, fg_label, image, offset, step_mm, max_points)
    bg = _thin(sub, bg_label, image, offset, step_mm, max_points)
    if not fg:
        raise InputError(f"scribbles: no foreground scribble (label value {fg_label}); draw one on the structure first")
    return fg, bg
