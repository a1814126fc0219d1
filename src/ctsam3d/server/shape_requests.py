"""The web page's shape prompts (2D box, lasso, scribble) -> validated points for the session.

The page sends one stroke drawn on one 2D view: its points as NiiVue world millimetres in
**RAS** (``ras: [[x, y, z], ...]``), or as continuous ITK indices ``(i, j, k)`` of the input
image (``ijk``; voxel ``n`` spans ``n - 0.5 .. n + 0.5``), and the slice they lie on as the
view they were drawn on (``view``: ``axial`` / ``coronal`` / ``sagittal``, mapped to the ITK
axis of the input whose direction is closest to the view's normal, S / A / R) or directly
as that ITK axis (``axis``: 0 / 1 / 2 or ``"i"`` / ``"j"`` / ``"k"``).

What is checked (each problem is a :class:`~ctsam3d.errors.ClickError` naming the shape and
the problem; the server answers it with HTTP 422 and ``{"detail": one line}``):

* the kind (``box2d``, ``lasso``, ``scribble``) and exactly one of ``ras`` / ``ijk``;
* the number of points: a box exactly 2 corners, a lasso 3 to :data:`MAX_POINTS`, a
  scribble 1 to :data:`MAX_POINTS` (the page thins a stroke to about one point per screen
  pixel of travel before sending);
* every point three finite numbers inside the image;
* one slice: along the slice's axis every point must lie within half a voxel (plus
  :data:`SLICE_TOLERANCE`) of one slice index, the one nearest their mean (half-way ties
  go to the lower index, the voxel a coarse display block shows); the points are then put
  exactly on that slice. Without ``view`` / ``axis`` the axis is inferred when only one fits;
* a box must hold a voxel centre of the slice; a lasso must enclose an area and must not
  cross itself (:func:`first_crossing`).

A scribble without ``view`` / ``axis`` is a 3D polyline and is not put on a slice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..errors import ClickError
from ..geometry.orientation import PLANE_NORMALS
from ..inference.shapes import AXES, box2d_shape, lasso_shape, parse_axis, parse_points, slice_of_points

__all__ = ["KINDS", "MAX_POINTS", "VIEWS", "ShapeInput", "view_axis", "parse_shape", "first_crossing"]

MAX_POINTS = 1000
SLICE_TOLERANCE = 1e-3  # voxels, beyond half a voxel (float error of mm -> index)
KINDS = {"box2d": (2, 2), "lasso": (3, MAX_POINTS), "scribble": (1, MAX_POINTS)}
NAMES = {"box2d": "2D box", "lasso": "lasso", "scribble": "scribble"}
# the page's 2D views: anatomical planes (their normals: ctsam3d.geometry.PLANE_NORMALS)
VIEWS = tuple(PLANE_NORMALS)


@dataclass(frozen=True)
class ShapeInput:
    """A validated shape: ``points_ijk`` continuous ITK indices ``(N, 3)`` of the input, on
    slice ``index`` of ITK ``axis`` (both None for a 3D scribble)."""

    kind: str
    points_ijk: tuple[tuple[float, float, float], ...]
    axis: int | None
    index: int | None
    positive: bool


def view_axis(image: sitk.Image, view: str) -> int:
    """The ITK axis (0 = i, 1 = j, 2 = k) of ``image`` closest to ``view``'s normal: the same
    assignment as the Session API's plane names (:func:`ctsam3d.inference.shapes.parse_axis`), so
    the three views of an oblique image always get three different axes."""
    if not isinstance(view, str) or view.lower() not in VIEWS:
        raise ClickError(f"view {str(view)[:40]!r}: expected one of {', '.join(VIEWS)}")
    return parse_axis(view.lower(), f"view {view}", image)


def first_crossing(uv: np.ndarray) -> tuple[int, int] | None:
    """The first pair of edges ``(a, b)`` (edge n joins point n to n + 1, the last one closes the
    polygon) that cross each other properly, or None for a simple polygon. Edges sharing a
    point are not compared; touching and collinear overlaps do not count."""
    p = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
    n = len(p)
    if n < 4:
        return None
    a, b = p, np.roll(p, -1, axis=0)

    def orient(p0, p1, q):  # sign of the cross product (p1 - p0) x (q - p0), broadcast
        return np.sign((p1[..., 0] - p0[..., 0]) * (q[..., 1] - p0[..., 1])
                       - (p1[..., 1] - p0[..., 1]) * (q[..., 0] - p0[..., 0]))

    idx = np.arange(n)
    for start in range(0, n, 128):  # rows in blocks: at most 128 x 1000 pairs at a time
        rows = idx[start:start + 128]
        A, B = a[rows, None, :], b[rows, None, :]
        C, D = a[None, :, :], b[None, :, :]
        cross = (orient(A, B, C) * orient(A, B, D) < 0) & (orient(C, D, A) * orient(C, D, B) < 0)
        j = idx[None, :]
        i = rows[:, None]
        cross &= (j > i + 1) & ~((i == 0) & (j == n - 1))  # each pair once, neighbours skipped
        hit = np.argwhere(cross)
        if len(hit):
            return int(rows[hit[0, 0]]), int(hit[0, 1])
    return None


def _dedupe(ijk: np.ndarray) -> np.ndarray:
    """Drop points equal to the one before (a pointer that did not move)."""
    keep = np.ones(len(ijk), bool)
    keep[1:] = np.any(np.abs(np.diff(ijk, axis=0)) > 1e-9, axis=1)
    return ijk[keep]


def parse_shape(image: sitk.Image, kind, *, ras=None, ijk=None, view=None, axis=None, positive=True) -> ShapeInput:
    """Validate one shape of the page (see module doc) and put it on its slice.

    Raises:
        ClickError: any problem, in one line naming the shape.
    """
    if kind not in KINDS:
        raise ClickError(f"shape kind {str(kind)[:40]!r}: expected one of {', '.join(KINDS)}")
    what = NAMES[kind]
    if (ras is None) == (ijk is None):
        raise ClickError(f"{what}: give exactly one of 'ras' (world RAS mm) or 'ijk' (voxel indices) for its points")
    points, space = (ras, "ras") if ras is not None else (ijk, "index")
    if isinstance(points, (str, bytes, dict)) or not hasattr(points, "__len__"):
        raise ClickError(f"{what}: '{'ras' if space == 'ras' else 'ijk'}' must be a list of points (three numbers each)")
    lo, hi = KINDS[kind]
    if not lo <= len(points) <= hi:
        need = f"exactly {lo}" if lo == hi else f"{lo} to {hi}"
        raise ClickError(f"{what}: needs {need} points, got {len(points)}"
                         + ("; draw a shorter stroke or send fewer points" if len(points) > hi else ""))
    if view is not None and axis is not None:
        raise ClickError(f"{what}: give 'view' or 'axis' for the slice, not both")
    if not isinstance(positive, bool):
        raise ClickError(f"{what}: positive must be true or false, got {positive!r}")
    ax = view_axis(image, view) if view is not None else parse_axis(axis, what)
    pts, _ = parse_points(points, image, space, what, min_points=lo)
    if kind == "lasso":
        pts = _dedupe(pts)
        if len(pts) > 3 and np.allclose(pts[0], pts[-1]):
            pts = pts[:-1]  # closed by repeating the first point
    index = None
    if ax is None and kind != "scribble":
        ax, _ = slice_of_points(pts, image, None, what)
    if ax is not None:
        depth = pts[:, ax]
        index = int(np.ceil(depth.mean() - 0.5 - 1e-6))  # nearest slice; a half-way tie goes down
        index = min(max(index, 0), int(image.GetSize()[ax]) - 1)
        off = np.abs(depth - index)
        if off.max() > 0.5 + SLICE_TOLERANCE:
            got = sorted({int(np.floor(v + 0.5)) for v in depth})
            raise ClickError(f"{what}: the points are not on one slice of axis {AXES[ax]}"
                             f"{'' if view is None else f' ({view} view)'}: their {AXES[ax]} indices span "
                             f"{got[0]}..{got[-1]}")
        pts = pts.copy()
        pts[:, ax] = index
    if kind == "box2d":
        box2d_shape(pts[0], pts[1], image, "index", ax)  # raises when it holds no voxel centre
    elif kind == "lasso":
        if len(pts) < 3:
            raise ClickError(f"{what}: needs at least 3 distinct points, got {len(pts)}")
        plane = [x for x in (2, 1, 0) if x != ax]
        hit = first_crossing(pts[:, plane])
        if hit is not None:
            raise ClickError(f"{what}: the contour crosses itself (edge {hit[0] + 1} crosses edge {hit[1] + 1} of "
                             f"{len(pts)}); draw one closed outline that does not cross itself")
        lasso_shape(pts, image, "index", ax)  # raises when it encloses no area
    return ShapeInput(kind, tuple(tuple(float(v) for v in p) for p in pts), ax, index, positive)
