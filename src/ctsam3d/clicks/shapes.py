"""Simulated 2D boxes, lassos and scribbles on masks (evaluation now, training later).

Same conventions as :mod:`.simulate`: arrays are numpy volumes ``[z, y, x]``; every point is
a voxel index ``(z, y, x)`` (floats allowed: continuous indices) of that array, never mm;
``spacing_zyx`` is the voxel size in mm in the same order. Everything is deterministic given
the ``rng`` (``numpy.random.Generator``).

A simulated prompt is a :class:`ShapePrompt` (``kind``, ``points``, ``axis``, ``index``,
``positive``). ``axis`` is the **numpy** axis the slice is normal to (0 = z: an axial slice of
an axial CT) and ``index`` the slice; for a 3D scribble both are None.

Rules (a user drawing on the slice where the structure is largest):

* **slice**: along ``axis``, the slice with the most target voxels (ties: the one nearest the
  middle of the structure's extent, then the lower index).
* **2D box**: the bounding box of the target on that slice, each of its four edges moved by
  ``jitter`` × (box side) × U(-1, 1) (rounded to voxels, clipped to the slice, at least one
  voxel wide); points: two opposite corners.
* **lasso**: the outer contour of the largest 2D connected piece of the target on that slice
  (marching squares at level 0.5), each vertex moved by a smooth random displacement
  (Gaussian noise along the contour, smoothed over a tenth of its length, scaled to standard
  deviation ``perturb`` × the piece's equivalent radius), resampled to at most
  ``max_vertices`` vertices.
* **scribble** (``mode="skeleton"``): on that slice, the medial axis of the largest 2D piece,
  ordered along its principal direction, ``n_points`` evenly spaced samples, each moved by
  up to ``jitter_vox`` voxels where that stays inside the target. ``mode="3d"``: a polyline
  through the structure's per-slice distance-transform maxima along ``axis``, from 10% to 90%
  of its extent. ``mode="boundary"``: the contour of the lasso rule shrunk to half the
  piece's depth (a scribble just inside the boundary), open, ``n_points`` samples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

__all__ = ["ShapePrompt", "PROMPT_KINDS", "largest_slice", "simulate_box2d", "simulate_lasso",
           "simulate_scribble", "simulate_prompt", "shape_clicks", "SliceRule2D", "shape_slice_rule"]

PROMPT_KINDS = ("box2d", "lasso", "scribble")


@dataclass(frozen=True)
class ShapePrompt:
    """One simulated prompt. ``points``: ``(N, 3)`` float voxel indices ``(z, y, x)``."""

    kind: str
    points: np.ndarray
    axis: int | None
    index: int | None
    positive: bool = True

    def to_dict(self) -> dict:
        return {"kind": self.kind, "axis": self.axis, "index": self.index, "positive": self.positive,
                "points_zyx": [[round(float(v), 2) for v in p] for p in self.points]}


def _sp(spacing_zyx) -> np.ndarray:
    return np.ones(3) if spacing_zyx is None else np.asarray(spacing_zyx, float).reshape(3)


def largest_slice(target: np.ndarray, axis: int = 0) -> int | None:
    """Index along ``axis`` of the slice with the most target voxels (None when empty)."""
    areas = target.sum(axis=tuple(a for a in range(3) if a != axis))
    if areas.max() == 0:
        return None
    nz = np.flatnonzero(areas)
    mid = 0.5 * (nz[0] + nz[-1])
    best = np.flatnonzero(areas == areas.max())
    return int(best[np.argmin(np.abs(best - mid))])


def _plane(target, axis, index):
    return np.take(target, index, axis=axis)


def _to_zyx(rc: np.ndarray, axis: int, index: int) -> np.ndarray:
    rc = np.asarray(rc, float).reshape(-1, 2)
    out = np.empty((len(rc), 3))
    others = [a for a in range(3) if a != axis]
    out[:, axis] = index
    out[:, others[0]], out[:, others[1]] = rc[:, 0], rc[:, 1]
    return out


def _largest_piece(plane: np.ndarray) -> np.ndarray:
    lab, n = ndimage.label(plane)
    if n <= 1:
        return plane
    sizes = ndimage.sum(plane, lab, index=np.arange(1, n + 1))
    return lab == (1 + int(np.argmax(sizes)))


def simulate_box2d(target, *, spacing_zyx=None, rng=None, axis: int = 0, jitter: float = 0.1) -> ShapePrompt | None:
    """A 2D box around the target on its largest slice (see module doc); None when empty."""
    rng = rng or np.random.default_rng(0)
    index = largest_slice(target, axis)
    if index is None:
        return None
    plane = _plane(target, axis, index)
    rows, cols = np.nonzero(plane)
    lo = np.array([rows.min(), cols.min()], float)
    hi = np.array([rows.max(), cols.max()], float)
    side = hi - lo + 1
    lo = np.rint(lo + jitter * side * rng.uniform(-1, 1, 2))
    hi = np.rint(hi + jitter * side * rng.uniform(-1, 1, 2))
    lim = np.array(plane.shape, float) - 1
    lo, hi = np.clip(lo, 0, lim), np.clip(hi, 0, lim)
    lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
    return ShapePrompt("box2d", _to_zyx(np.stack([lo, hi]), axis, index), axis, index)


def _contour(piece: np.ndarray) -> np.ndarray:
    from skimage.measure import find_contours

    cs = find_contours(np.pad(piece.astype(np.float32), 1), 0.5)
    c = max(cs, key=len) - 1.0
    return c[:-1] if len(c) > 1 and np.allclose(c[0], c[-1]) else c


def _resample(c: np.ndarray, n: int) -> np.ndarray:
    if len(c) <= n:
        return c
    idx = np.linspace(0, len(c), n, endpoint=False).astype(int)
    return c[idx]


def simulate_lasso(target, *, spacing_zyx=None, rng=None, axis: int = 0, perturb: float = 0.1,
                   max_vertices: int = 64) -> ShapePrompt | None:
    """A lasso from the target's contour on its largest slice, perturbed (see module doc)."""
    rng = rng or np.random.default_rng(0)
    index = largest_slice(target, axis)
    if index is None:
        return None
    piece = _largest_piece(_plane(target, axis, index))
    c = _contour(piece)
    if len(c) < 3:  # one or two voxels: a small square around them
        r, q = np.argwhere(piece).mean(axis=0)
        c = np.array([[r - 0.5, q - 0.5], [r - 0.5, q + 0.5], [r + 0.5, q + 0.5], [r + 0.5, q - 0.5]])
    sp = _sp(spacing_zyx)[[a for a in range(3) if a != axis]]
    if perturb > 0 and len(c) >= 8:
        r_eq_mm = np.sqrt(piece.sum() * sp[0] * sp[1] / np.pi)
        noise = rng.normal(0, 1, (len(c), 2))
        noise = ndimage.gaussian_filter1d(noise, sigma=max(1.0, len(c) / 10), axis=0, mode="wrap")
        noise /= max(float(noise.std()), 1e-9)
        c = c + perturb * r_eq_mm * noise / sp
    lim = np.array(piece.shape, float) - 1
    c = np.clip(_resample(c, max_vertices), 0, lim)
    return ShapePrompt("lasso", _to_zyx(c, axis, index), axis, index)


def _order_along_principal(pts: np.ndarray, sp: np.ndarray) -> np.ndarray:
    mm = pts * sp
    centred = mm - mm.mean(axis=0)
    if len(pts) < 2:
        return pts
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return pts[np.argsort(centred @ vt[0], kind="stable")]


def _jitter_inside(rc: np.ndarray, piece: np.ndarray, rng, jitter_vox: float) -> np.ndarray:
    out = rc.copy()
    if jitter_vox <= 0:
        return out
    for n in range(len(out)):
        cand = np.rint(out[n] + rng.uniform(-jitter_vox, jitter_vox, 2)).astype(int)
        if 0 <= cand[0] < piece.shape[0] and 0 <= cand[1] < piece.shape[1] and piece[cand[0], cand[1]]:
            out[n] = cand
    return out


def simulate_scribble(target, *, spacing_zyx=None, rng=None, axis: int = 0, mode: str = "skeleton",
                      n_points: int = 8, jitter_vox: float = 1.0) -> ShapePrompt | None:
    """A scribble along the target's skeleton / in 3D / near its boundary (see module doc)."""
    rng = rng or np.random.default_rng(0)
    if mode not in ("skeleton", "3d", "boundary"):
        raise ValueError(f"scribble mode must be 'skeleton', '3d' or 'boundary', got {mode!r}")
    sp3 = _sp(spacing_zyx)
    if mode == "3d":
        areas = target.sum(axis=tuple(a for a in range(3) if a != axis))
        nz = np.flatnonzero(areas)
        if len(nz) == 0:
            return None
        lo, hi = nz[0] + 0.1 * (nz[-1] - nz[0]), nz[0] + 0.9 * (nz[-1] - nz[0])
        slices = sorted(set(int(round(v)) for v in np.linspace(lo, hi, n_points)))
        others = [a for a in range(3) if a != axis]
        pts = []
        for s in slices:
            plane = _plane(target, axis, s)
            if not plane.any():
                continue
            edt = ndimage.distance_transform_edt(np.pad(plane, 1), sampling=tuple(sp3[others]))[1:-1, 1:-1]
            r, c = np.unravel_index(int(np.argmax(edt)), edt.shape)
            pts.append(_to_zyx([[r, c]], axis, s)[0])
        return ShapePrompt("scribble", np.asarray(pts), None, None) if pts else None
    index = largest_slice(target, axis)
    if index is None:
        return None
    piece = _largest_piece(_plane(target, axis, index))
    sp = sp3[[a for a in range(3) if a != axis]]
    if mode == "skeleton":
        from skimage.morphology import skeletonize

        skel = np.argwhere(skeletonize(piece)).astype(float)
        if len(skel) == 0:
            skel = np.argwhere(piece).astype(float)
        ordered = _order_along_principal(skel, sp)
    else:
        edt = ndimage.distance_transform_edt(np.pad(piece, 1), sampling=tuple(sp))[1:-1, 1:-1]
        inner = edt >= 0.5 * edt.max()
        ordered = _contour(inner)
        ordered = ordered[: max(2, int(0.75 * len(ordered)))]  # open: three quarters of the way round
    idx = np.unique(np.linspace(0, len(ordered) - 1, min(n_points, len(ordered))).round().astype(int))
    rc = _jitter_inside(ordered[idx], piece, rng, jitter_vox)
    return ShapePrompt("scribble", _to_zyx(rc, axis, index), axis, index)


def simulate_prompt(kind: str, target, *, spacing_zyx=None, rng=None, axis: int = 0, **options) -> ShapePrompt | None:
    """``simulate_box2d`` / ``simulate_lasso`` / ``simulate_scribble`` by ``kind``."""
    fns = {"box2d": simulate_box2d, "lasso": simulate_lasso, "scribble": simulate_scribble}
    if kind not in fns:
        raise ValueError(f"prompt kind must be one of {', '.join(PROMPT_KINDS)}, got {kind!r}")
    return fns[kind](np.asarray(target).astype(bool, copy=False), spacing_zyx=spacing_zyx, rng=rng, axis=axis, **options)


def _greedy_maxima(inside: np.ndarray, sp: np.ndarray, max_clicks: int) -> list[tuple[int, int]]:
    """Distance-transform maxima of a 2D region, each next one at least two first-depths from the
    chosen ones and at least half as deep (the rule of ``ctsam3d.inference.shapes.region_clicks``)."""
    edt = ndimage.distance_transform_edt(np.pad(inside, 1), sampling=tuple(sp))[1:-1, 1:-1]
    rr, cc = np.indices(edt.shape)
    out: list[tuple[int, int]] = []
    first = None
    while len(out) < max_clicks:
        top = edt.max()
        if top <= 0 or (first is not None and top < 0.5 * first):
            break
        r, c = (int(v) for v in np.unravel_index(int(np.argmax(edt)), edt.shape))
        out.append((r, c))
        first = top if first is None else first
        edt = np.where(np.hypot((rr - r) * sp[0], (cc - c) * sp[1]) >= 2.0 * first, edt, 0.0)
    return out


def shape_clicks(prompt: ShapePrompt, shape_zyx, *, spacing_zyx=None, step_vox: float = 2.0,
                 lasso_clicks: int = 3) -> list[tuple[int, int, int]]:
    """The clicks a session renders for ``prompt`` (:mod:`ctsam3d.inference.shape_render`), as
    voxel indices ``(z, y, x)`` of an array of shape ``shape_zyx`` on the model's grid: a 2D
    box's centre; a lasso's inside's distance-transform maxima; a scribble's points every
    ``step_vox`` voxels along it. The slice rule (background around a box or lasso, the
    lasso's inside as previous mask) is not part of this (clicks only)."""
    lim = np.asarray(shape_zyx) - 1
    if prompt.kind == "box2d":
        pts = [prompt.points.mean(axis=0)]
    elif prompt.kind == "lasso":
        others = [a for a in range(3) if a != prompt.axis]
        rc = _greedy_maxima(lasso_inside(prompt, shape_zyx), _sp(spacing_zyx)[others], lasso_clicks)
        pts = list(_to_zyx(rc, prompt.axis, prompt.index))
    else:
        pts = [prompt.points[0]]
        for p, q in zip(prompt.points[:-1], prompt.points[1:]):
            n = int(np.ceil(np.linalg.norm(q - p) / step_vox))
            pts += [p + t * (q - p) for t in np.arange(1, n + 1) / max(n, 1)]
    out = []
    for p in pts:
        c = tuple(int(v) for v in np.clip(np.rint(p), 0, lim))
        if c not in out:
            out.append(c)
    return out


def lasso_inside(prompt: ShapePrompt, shape_zyx) -> np.ndarray:
    """The inside of a lasso on its slice: a 2D bool array over the slice's two other axes (in
    numpy order) of a volume of shape ``shape_zyx``; never empty (a degenerate lasso gives the
    voxel at its vertices' mean)."""
    from skimage.draw import polygon

    others = [a for a in range(3) if a != prompt.axis]
    plane_shape = tuple(int(shape_zyx[a]) for a in others)
    inside = np.zeros(plane_shape, bool)
    inside[polygon(prompt.points[:, others[0]], prompt.points[:, others[1]], shape=plane_shape)] = True
    if not inside.any():
        inside[tuple(np.clip(np.rint(prompt.points[:, others].mean(axis=0)).astype(int), 0, np.array(plane_shape) - 1))] = True
    return inside


@dataclass(frozen=True)
class SliceRule2D:
    """What a 2D box or lasso says about its slice, for training (the session's
    :class:`ctsam3d.inference.shape_render.SliceRule` on the patch grid).

    ``axis``/``index``: the slice; ``allowed``: 2D bool over the slice's other two axes, where
    the object may be on it (outside is background); ``inside``: 2D bool where it *is* object
    (a positive lasso's inside) or None. :meth:`seed` gives the previous-mask channel before the
    first decode, :meth:`apply` writes the rule into a decoded probability volume — as a
    session does after decoding, so the next decode sees it.
    """

    axis: int
    index: int
    allowed: np.ndarray
    inside: np.ndarray | None

    def _view(self, volume):
        sl = [slice(None)] * volume.ndim
        sl[volume.ndim - 3 + self.axis] = self.index
        return tuple(sl)

    def seed(self, shape_zyx) -> np.ndarray | None:
        """``(D, H, W)`` float32 with the inside on the slice, or None (nothing to seed)."""
        if self.inside is None:
            return None
        out = np.zeros(tuple(int(v) for v in shape_zyx), np.float32)
        out[self._view(out)] = self.inside
        return out

    def apply(self, probs):
        """Apply the rule in place to ``probs`` (numpy or torch, last three axes ``(z, y, x)``)."""
        view = self._view(probs)
        plane = probs[view]
        if hasattr(plane, "new_tensor"):  # torch
            allowed = plane.new_tensor(self.allowed.astype(np.float32))
            plane = plane * allowed
            if self.inside is not None:
                plane = plane.maximum(plane.new_tensor(self.inside.astype(np.float32)))
        else:
            plane = plane * self.allowed
            if self.inside is not None:
                plane = np.maximum(plane, self.inside)
        probs[view] = plane
        return probs


def shape_slice_rule(prompt: ShapePrompt, shape_zyx) -> SliceRule2D | None:
    """The slice rule of a positive 2D box (outside the box is background on its slice) or
    lasso (inside object, outside background) on a volume of shape ``shape_zyx``; None for a
    scribble or a negative prompt (the session's negative shapes are left out of training)."""
    if prompt.axis is None or not prompt.positive or prompt.kind not in ("box2d", "lasso"):
        return None
    others = [a for a in range(3) if a != prompt.axis]
    plane_shape = tuple(int(shape_zyx[a]) for a in others)
    if prompt.kind == "lasso":
        inside = lasso_inside(prompt, shape_zyx)
        return SliceRule2D(prompt.axis, int(prompt.index), _near(inside), inside)
    lo = np.clip(np.rint(prompt.points[:, others].min(axis=0)).astype(int), 0, np.array(plane_shape) - 1)
    hi = np.clip(np.rint(prompt.points[:, others].max(axis=0)).astype(int), 0, np.array(plane_shape) - 1)
    box = np.zeros(plane_shape, bool)
    box[lo[0] : hi[0] + 1, lo[1] : hi[1] + 1] = True
    return SliceRule2D(prompt.axis, int(prompt.index), _near(box), None)


def _near(region: np.ndarray) -> np.ndarray:
    """``region`` grown by one voxel (8-neighbourhood): a session zeroes the slice only more than
    one lattice voxel from what the rule allows, so interpolation does not eat into it."""
    return ndimage.binary_dilation(region, structure=np.ones((3, 3), bool))
