"""Segmentation metrics for the interactive protocol: Dice, NoC, NSD.

Masks are numpy arrays ``(z, y, x)`` (bool-like, nonzero = inside) on one voxel grid;
``spacing_zyx`` is that grid's voxel size in millimetres in the same axis order.

Conventions (also written into every report's ``protocol``):

* **Dice** = 2|P∩G| / (|P|+|G|); both empty → 1.0 (nothing to find, nothing found).
* **NSD** (normalised surface Dice, Nikolov et al. 2021) at tolerance τ mm: the share of
  both surfaces lying within τ of the other, surface elements weighted by area
  (MONAI ``compute_surface_dice`` with ``use_subvoxels=True``, the DeepMind
  surface-distance definition used by FLARE and the CVPR 2025 interactive challenge).
  Both empty → 1.0; exactly one empty → 0.0.
* **NoC@t** (number of clicks to reach Dice ≥ t) for a curve of Dice after clicks
  1..K: the first k with Dice_k ≥ t; a structure that never reaches t within K clicks
  counts as **K + 1** (and is also counted as a failure at t).
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np

__all__ = ["dice", "nsd", "noc", "NOC_THRESHOLDS"]

NOC_THRESHOLDS = (0.80, 0.85, 0.90)


def _bool(a) -> np.ndarray:
    a = np.asarray(a)
    return a if a.dtype == bool else a != 0


def dice(prediction, target) -> float:
    """Dice of two ``(z, y, x)`` masks; 1.0 when both are empty."""
    p, g = _bool(prediction), _bool(target)
    if p.shape != g.shape:
        raise ValueError(f"dice: prediction shape {p.shape} differs from target shape {g.shape}")
    denom = int(p.sum()) + int(g.sum())
    if denom == 0:
        return 1.0
    return 2.0 * int(np.logical_and(p, g).sum()) / denom


def nsd(prediction, target, spacing_zyx: Sequence[float] | None = None, tolerance_mm: float = 2.0) -> float:
    """Normalised surface Dice of two ``(z, y, x)`` masks at ``tolerance_mm`` millimetres.

    Args:
        prediction, target: bool-like ``(z, y, x)`` masks on the same grid.
        spacing_zyx: voxel size in mm ``(z, y, x)``; None = 1 mm isotropic.
        tolerance_mm: surface distance accepted as agreement, in mm.

    Returns:
        NSD in [0, 1]; 1.0 when both masks are empty, 0.0 when only one is.
    """
    import torch
    from monai.metrics import compute_surface_dice

    p, g = _bool(prediction), _bool(target)
    if p.shape != g.shape:
        raise ValueError(f"nsd: prediction shape {p.shape} differs from target shape {g.shape}")
    p_any, g_any = bool(p.any()), bool(g.any())
    if not p_any and not g_any:
        return 1.0
    if p_any != g_any:
        return 0.0
    # crop to the union's bounding box plus the tolerance: MONAI then works on a small array
    sp = np.ones(3) if spacing_zyx is None else np.asarray(spacing_zyx, dtype=float)
    margin = np.ceil(tolerance_mm / sp).astype(int) + 2
    idx = np.argwhere(p | g)
    lo = np.maximum(idx.min(0) - margin, 0)
    hi = np.minimum(idx.max(0) + 1 + margin, p.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    pc, gc = p[box], g[box]

    def onehot(m: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.stack([~m, m])[None].astype(np.float32))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # MONAI's own internal deprecation notice
        value = compute_surface_dice(
            onehot(pc), onehot(gc), [float(tolerance_mm)],
            spacing=tuple(float(s) for s in sp), use_subvoxels=True,
        )
    return float(value.reshape(-1)[0])


def noc(dice_curve: Sequence[float], threshold: float) -> int:
    """Clicks needed to reach ``threshold``: first k (1-based) with ``dice_curve[k-1] >= threshold``,
    or ``len(dice_curve) + 1`` when never reached (a failure)."""
    for k, d in enumerate(dice_curve, start=1):
        if d >= threshold - 1e-12:
            return k
    return len(dice_curve) + 1
