"""Simulated clicks on masks: the protocol shared by training and evaluation.

All arrays are numpy volumes indexed ``[z, y, x]`` (the order of
``sitk.GetArrayFromImage``); clicks are returned as voxel indices ``(z, y, x)`` of
the same array (``index_zyx``), never millimetres. ``spacing_zyx`` is the voxel size
in millimetres in the same axis order; when given, distances are measured in mm so
anisotropic grids (e.g. 0.8 × 0.8 × 5 mm) place clicks where a user would.

Rules (RITM / SAM style, the defaults of docs/reference-model.md):

* **first click**: at the maximum of the Euclidean distance transform (EDT) of the
  target, i.e. the interior point farthest from its boundary (``mode="center"``), or a
  random voxel well inside it (``mode="random"``).
* **next click**: the error voxels are split into *missed* (target and not predicted)
  and *false* (predicted and not target); each set is split into 6-connected
  components; the largest component (by volume; voxel count × voxel volume, so equal
  to ranking by voxel count on one grid) gets the click, at its EDT maximum. A missed
  region gives a positive click, a false region a negative click. With ``exclude`` (the
  evaluation protocol passes the clicks made so far) those voxels are never chosen: the
  click goes to the region's deepest other voxel, or to the next largest region when all
  of the largest one's voxels were clicked.

Distances are to the nearest voxel outside the region, and the volume border counts as
outside (the array is padded with background), so a click is never placed on the edge
of a patch or image just because the structure continues beyond it.

Ties are broken deterministically: among voxels within 1e-6 mm of the EDT maximum, the
one closest to their centroid (in mm) wins, then the first in ``[z, y, x]`` raster
order; among equally large error regions, the one with the larger EDT maximum, then
missed before false, then the first in raster order.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

from ..errors import ClickError

__all__ = ["first_click", "next_click", "next_clicks_batch", "error_regions"]

Index = tuple[int, int, int]
_TIE_TOL = 1e-6
_FACE = ndimage.generate_binary_structure(3, 1)  # 6-connectivity


def _as_bool(name: str, array, shape: tuple[int, ...] | None = None) -> np.ndarray:
    a = np.asarray(array)
    if a.ndim != 3:
        raise ClickError(f"{name}: expected a 3D (z, y, x) array, got shape {a.shape}")
    if shape is not None and a.shape != shape:
        raise ClickError(f"{name}: shape {a.shape} differs from target shape {shape}")
    return a if a.dtype == bool else a > 0.5 if a.dtype.kind == "f" else a != 0


def _spacing(spacing_zyx) -> tuple[float, float, float]:
    if spacing_zyx is None:
        return (1.0, 1.0, 1.0)
    s = tuple(float(v) for v in np.asarray(spacing_zyx, dtype=float).reshape(-1))
    if len(s) != 3 or not all(np.isfinite(v) and v > 0 for v in s):
        raise ClickError(f"spacing_zyx: expected three positive numbers (mm), got {spacing_zyx!r}")
    return s  # type: ignore[return-value]


def _edt_in_box(mask: np.ndarray, box: tuple[slice, ...], spacing: Sequence[float]) -> np.ndarray:
    """EDT (mm) of ``mask[box]`` with a one-voxel background pad: the border counts as outside."""
    crop = np.pad(mask[box], 1, mode="constant", constant_values=False)
    dt = ndimage.distance_transform_edt(crop, sampling=spacing)
    return dt[1:-1, 1:-1, 1:-1]


def _argmax_tiebreak(dt: np.ndarray, spacing: Sequence[float]) -> tuple[Index, float]:
    """Index (in ``dt``) of the EDT maximum, ties broken towards the centroid of the ties."""
    peak = float(dt.max())
    cand = np.argwhere(dt >= peak - _TIE_TOL)
    if len(cand) > 1:
        sp = np.asarray(spacing)
        mm = cand * sp
        d2 = ((mm - mm.mean(axis=0)) ** 2).sum(axis=1)
        best = cand[int(np.flatnonzero(d2 <= d2.min() + _TIE_TOL)[0])]  # argwhere is raster-ordered
    else:
        best = cand[0]
    return (int(best[0]), int(best[1]), int(best[2])), peak


def _offset(idx: Index, box: tuple[slice, ...]) -> Index:
    return (idx[0] + box[0].start, idx[1] + box[1].start, idx[2] + box[2].start)


def first_click(
    target,
    *,
    spacing_zyx=None,
    rng: np.random.Generator | int | None = None,
    mode: str = "center",
) -> Index | None:
    """First (positive) click on a target mask.

    Args:
        target: bool-like array ``(z, y, x)``; nonzero = the structure.
        spacing_zyx: voxel size in mm ``(z, y, x)``; None = isotropic 1 mm.
        rng: ``np.random.Generator`` or int seed, used only by ``mode="random"``
            (None there = an unseeded generator).
        mode: ``"center"`` = the EDT maximum (deterministic); ``"random"`` = a uniformly
            drawn voxel among those at least half the maximum depth inside the target.

    Returns:
        ``(z, y, x)`` voxel index inside the target, or None when the target is empty.

    Raises:
        ClickError: wrong dimensionality, bad spacing or unknown mode.
    """
    if mode not in ("center", "random"):
        raise ClickError(f"mode: expected 'center' or 'random', got {mode!r}")
    t = _as_bool("target", target)
    sp = _spacing(spacing_zyx)
    box = ndimage.find_objects(t.view(np.uint8))
    if not box or box[0] is None:
        return None
    box = box[0]
    dt = _edt_in_box(t, box, sp)
    if mode == "center":
        idx, _ = _argmax_tiebreak(dt, sp)
        return _offset(idx, box)
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    cand = np.argwhere(dt >= 0.5 * dt.max())
    pick = cand[int(gen.integers(len(cand)))]
    return _offset((int(pick[0]), int(pick[1]), int(pick[2])), box)


def error_regions(target, prediction, *, valid=None) -> tuple[np.ndarray, np.ndarray]:
    """Missed (``target & ~prediction``) and false (``prediction & ~target``) voxels, both
    restricted to ``valid`` when given. Arrays ``(z, y, x)`` bool."""
    t = _as_bool("target", target)
    p = _as_bool("prediction", prediction, t.shape)
    missed = t & ~p
    false = p & ~t
    if valid is not None:
        v = _as_bool("valid", valid, t.shape)
        missed &= v
        false &= v
    return missed, false


def _labelled(mask: np.ndarray):
    """6-connected components of ``mask``: ``(sizes, component(i) -> (bbox, mask in bbox))``;
    label ids follow raster order of each component's first voxel (deterministic order)."""
    outer = ndimage.find_objects(mask.view(np.uint8))  # label only inside the errors' bbox
    if not outer or outer[0] is None:
        return np.zeros(0, np.int64), None
    outer = outer[0]
    labels, _ = ndimage.label(mask[outer], structure=_FACE)
    sizes = np.bincount(labels.ravel())[1:]
    boxes = ndimage.find_objects(labels)

    def component(i: int) -> tuple[tuple[slice, ...], np.ndarray]:
        b = boxes[i]
        full = tuple(slice(o.start + s.start, o.start + s.stop) for o, s in zip(outer, b))
        return full, labels[b] == i + 1

    return sizes, component


def next_click(
    target,
    prediction,
    *,
    spacing_zyx=None,
    valid=None,
    exclude=None,
) -> tuple[Index, bool] | None:
    """Next corrective click: at the EDT maximum of the largest error region.

    Args:
        target: bool-like ``(z, y, x)`` ground truth.
        prediction: bool-like ``(z, y, x)`` current mask (float arrays are thresholded at 0.5).
        spacing_zyx: voxel size in mm ``(z, y, x)``; None = isotropic 1 mm.
        valid: optional bool ``(z, y, x)``: voxels where the label is known / inside the
            patch; errors outside it are ignored.
        exclude: optional voxels ``(z, y, x)`` never to click (the clicks already made, as the
            ``not_clicked_map`` of RITM-style clickers). They stay error voxels -- region sizes
            and depths are measured with them -- but are not eligible click positions: the
            click goes to the deepest eligible voxel of the largest region, and when every
            voxel of the largest region(s) is excluded, to the next largest region.

    Returns:
        ``((z, y, x), positive)``: the click voxel (inside the chosen error region) and
        True for a missed region (positive click) or False for a false region (negative
        click); None when there is no error (or no eligible voxel).
    """
    missed, false = error_regions(target, prediction, valid=valid)
    sp = _spacing(spacing_zyx)
    banned = np.zeros((0, 3), np.int64) if exclude is None else np.asarray(list(exclude), np.int64).reshape(-1, 3)
    parts = [_labelled(m) for m in (missed, false)]  # order 0: missed (positive), 1: false
    # all components, largest first; within a size: missed before false, then raster order
    ranked = sorted(((int(n), order, i) for order, (sizes, _) in enumerate(parts) for i, n in enumerate(sizes)),
                    key=lambda t: (-t[0], t[1], t[2]))
    k = 0
    while k < len(ranked):
        size = ranked[k][0]
        best: tuple | None = None  # (size, depth, -sign_order) compared lexicographically
        while k < len(ranked) and ranked[k][0] == size:
            _, order, i = ranked[k]
            k += 1
            box, comp = parts[order][1](i)
            dt = ndimage.distance_transform_edt(np.pad(comp, 1), sampling=sp)[1:-1, 1:-1, 1:-1]
            if len(banned):
                lo = np.array([b.start for b in box])
                rel = banned - lo
                rel = rel[np.all((rel >= 0) & (rel < np.asarray(dt.shape)), axis=1)]
                dt[tuple(rel.T)] = 0.0
                if not dt.max() > 0:
                    continue  # every voxel of this region was clicked already
            idx, depth = _argmax_tiebreak(dt, sp)
            key = (size, depth, -order)
            if best is None or key > best[0]:  # strict: the earlier (raster) one wins exact ties
                best = (key, _offset(idx, box), order == 0)
        if best is not None:
            return best[1], best[2]
    return None


def next_clicks_batch(targets, predictions, *, spacing_zyx=None, valid=None) -> list[tuple[Index, bool] | None]:
    """:func:`next_click` over a batch, for training loops.

    Args:
        targets, predictions: ``(B, D, H, W)`` or ``(B, 1, D, H, W)`` numpy arrays or torch
            tensors (any device; moved to CPU). Predictions may be probabilities (> 0.5 = in).
        spacing_zyx: one spacing for the batch (patches share a grid), or None.
        valid: optional ``(B, D, H, W)`` / ``(B, 1, D, H, W)`` mask of known voxels.

    Returns:
        One entry per batch item, as :func:`next_click` (patch voxel indices ``(z, y, x)``).
    """

    def to_np(a):
        if a is None:
            return None
        if hasattr(a, "detach"):
            a = a.detach().cpu().numpy()
        a = np.asarray(a)
        if a.ndim == 5:
            if a.shape[1] != 1:
                raise ClickError(f"expected one channel in (B, 1, D, H, W), got shape {a.shape}")
            a = a[:, 0]
        if a.ndim != 4:
            raise ClickError(f"expected (B, D, H, W) or (B, 1, D, H, W), got shape {a.shape}")
        return a

    t, p, v = to_np(targets), to_np(predictions), to_np(valid)
    if p.shape != t.shape:
        raise ClickError(f"predictions shape {p.shape} differs from targets shape {t.shape}")
    return [
        next_click(t[b], p[b], spacing_zyx=spacing_zyx, valid=None if v is None else v[b])
        for b in range(t.shape[0])
    ]
