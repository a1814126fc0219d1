"""Prompts beyond clicks on the input grid: 2D box, lasso and scribble (validation + rasters).

Geometry only (no model): each function validates the user's points the way
:func:`.prompts.parse_point` validates a click, and rasterises the shape on the **input
image's own grid**. How a shape then becomes the model's three prompt channels is
:mod:`.shape_render`.

Coordinates. Points are ITK indices ``(i, j, k)`` of the input (``space="index"``, i
fastest; floats are continuous indices), LPS mm (``"world"``) or RAS mm (``"ras"``).
A *slice* is one plane of the input: ``axis`` is the ITK axis it is normal to (0 = i,
1 = j, 2 = k; for an axial CT stored as usual, ``axis=2`` is an axial slice) and ``index``
the slice's integer index along it. A point lies on a slice when its continuous index along
``axis`` rounds to ``index``. 2D rasters of a slice are numpy arrays over the two other axes
in **numpy order** (the order of ``np.take(sitk.GetArrayFromImage(image), index,
axis=2 - axis)``): for ``axis=2`` that is ``[j, i]``, for ``axis=1`` ``[k, i]``, for
``axis=0`` ``[k, j]``.

Every problem raises :class:`~ctsam3d.errors.ClickError` with one line naming the prompt
and the problem (point outside the image, not three finite numbers, points on different
slices, a degenerate lasso, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..errors import ClickError
from ..geometry.orientation import PLANE_NORMALS, array_axis_of_plane
from .prompts import parse_point

__all__ = [
    "AXES", "SliceShape", "parse_axis", "parse_points", "slice_of_points", "box2d_shape", "lasso_shape",
    "densify_polyline", "region_clicks",
]

AXES = ("i", "j", "k")


@dataclass(frozen=True)
class SliceShape:
    """A region on one slice of the input image.

    Attributes:
        axis: ITK axis the slice is normal to (0 = i, 1 = j, 2 = k).
        index: slice index along ``axis``.
        inside: bool 2D raster of the region over the whole slice, numpy order of the two
            other axes (see module doc): the box's or lasso's inside, contour included.
        vertices_ijk: the user's points as continuous ITK indices ``(N, 3)``.
    """

    axis: int
    index: int
    inside: np.ndarray
    vertices_ijk: np.ndarray

    @property
    def plane_axes(self) -> tuple[int, int]:
        """ITK axes of the raster's rows and columns (numpy order: the slower axis first)."""
        a, b = [x for x in (2, 1, 0) if x != self.axis]
        return a, b

    def uv_to_ijk(self, uv) -> np.ndarray:
        """Raster positions ``(N, 2)`` (row, column) -> continuous ITK indices ``(N, 3)`` on the slice."""
        uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
        out = np.empty((len(uv), 3), np.float64)
        a, b = self.plane_axes
        out[:, self.axis] = self.index
        out[:, a], out[:, b] = uv[:, 0], uv[:, 1]
        return out


def parse_axis(axis, what: str, image: sitk.Image | None = None) -> int | None:
    """``None``, 0/1/2, ``"i"``/``"j"``/``"k"`` or, with ``image``, an anatomical plane
    (``"axial"``, ``"coronal"``, ``"sagittal"``: the ITK axis closest to the plane's normal, from
    the image's direction) -> ITK axis (or None); else ClickError."""
    if axis is None:
        return None
    if isinstance(axis, str) and axis.lower() in AXES:
        return AXES.index(axis.lower())
    if image is not None and isinstance(axis, str) and axis.lower() in PLANE_NORMALS:
        return 2 - array_axis_of_plane(image.GetDirection(), axis.lower())  # numpy (z, y, x) -> ITK (i, j, k)
    if isinstance(axis, (int, np.integer)) and not isinstance(axis, bool) and int(axis) in (0, 1, 2):
        return int(axis)
    planes = ", 'axial', 'coronal', 'sagittal'" if image is not None else ""
    raise ClickError(f"{what}: axis must be 0, 1, 2 or 'i', 'j', 'k' (ITK axis the slice is normal to){planes}, "
                     f"got {axis!r}")


def parse_points(points, image: sitk.Image, space: str, what: str, min_points: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Validate a list of points; returns ``(index_ijk (N, 3), world_lps (N, 3))`` float64."""
    if isinstance(points, (str, bytes)) or not hasattr(points, "__len__"):
        raise ClickError(f"{what}: expected a list of points (three numbers each), got {type(points).__name__}")
    pts = list(points)
    if len(pts) < min_points:
        raise ClickError(f"{what}: needs at least {min_points} point(s), got {len(pts)}")
    if len(pts) > 100_000:
        raise ClickError(f"{what}: at most 100000 points, got {len(pts)}")
    ijk, lps = [], []
    for n, p in enumerate(pts):
        a, b = parse_point(p, image, space, what=f"{what} point {n + 1}")
        ijk.append(a)
        lps.append(b)
    return np.asarray(ijk), np.asarray(lps)


def slice_of_points(ijk: np.ndarray, image: sitk.Image, axis: int | None, what: str) -> tuple[int, int]:
    """``(axis, index)`` of the one slice all points lie on (see module doc).

    Without ``axis`` the slice's axis is the one ITK axis along which every point rounds to the
    same index; ClickError when none or several qualify (pass ``axis`` then).
    """
    rounded = np.rint(ijk).astype(np.int64)
    same = [a for a in range(3) if np.all(rounded[:, a] == rounded[0, a])]
    if axis is None:
        if not same:
            raise ClickError(f"{what}: the points do not lie on one slice (no ITK axis i, j, k along which "
                             f"they share an index)")
        if len(same) > 1:
            raise ClickError(f"{what}: the points lie on one slice of several axes ({', '.join(AXES[a] for a in same)});"
                             f" pass axis to say which slice is meant")
        axis = same[0]
    elif axis not in same:
        got = sorted(set(int(v) for v in rounded[:, axis]))
        raise ClickError(f"{what}: the points are not on one slice of axis {AXES[axis]} "
                         f"(indices {got[:5]}{'...' if len(got) > 5 else ''})")
    return int(axis), int(rounded[0, axis])


def _slice_shape(image: sitk.Image, axis: int) -> tuple[int, int]:
    size = image.GetSize()  # (i, j, k)
    a, b = [x for x in (2, 1, 0) if x != axis]
    return int(size[a]), int(size[b])


def box2d_shape(corner_a, corner_b, image: sitk.Image, space: str = "index", axis=None) -> SliceShape:
    """A 2D box on one slice from two opposite corners (inside: voxel centres within the
    corners' rectangle, edges included)."""
    what = "2D box"
    ax = parse_axis(axis, what, image)
    ijk, _ = parse_points([corner_a, corner_b], image, space, what, min_points=2)
    axis, index = slice_of_points(ijk, image, ax, what)
    shape = _slice_shape(image, axis)
    probe = SliceShape(axis, index, np.zeros(shape, bool), ijk)
    a, b = probe.plane_axes
    tol = 1e-6
    lo = np.minimum(ijk[0, [a, b]], ijk[1, [a, b]])
    hi = np.maximum(ijk[0, [a, b]], ijk[1, [a, b]])
    r0, c0 = (int(np.ceil(v - tol)) for v in lo)
    r1, c1 = (int(np.floor(v + tol)) + 1 for v in hi)
    r0, c0 = max(r0, 0), max(c0, 0)
    r1, c1 = min(r1, shape[0]), min(c1, shape[1])
    inside = np.zeros(shape, bool)
    if r1 <= r0 or c1 <= c0:
        raise ClickError(f"{what}: the box between {tuple(np.round(ijk[0], 2))} and {tuple(np.round(ijk[1], 2))} "
                         f"holds no voxel centre of slice {AXES[axis]}={index}")
    inside[r0:r1, c0:c1] = True
    return SliceShape(axis, index, inside, ijk)


def lasso_shape(points, image: sitk.Image, space: str = "index", axis=None) -> SliceShape:
    """A closed contour on one slice (the last point joins the first); inside: voxel centres
    inside the polygon plus the voxels its edges pass through."""
    from skimage.draw import line, polygon

    what = "lasso"
    ax = parse_axis(axis, what, image)
    ijk, _ = parse_points(points, image, space, what, min_points=3)
    axis, index = slice_of_points(ijk, image, ax, what)
    shape = _slice_shape(image, axis)
    probe = SliceShape(axis, index, np.zeros(shape, bool), ijk)
    a, b = probe.plane_axes
    rows, cols = ijk[:, a], ijk[:, b]
    area = 0.5 * abs(np.dot(rows, np.roll(cols, 1)) - np.dot(cols, np.roll(rows, 1)))
    if area < 0.5:
        raise ClickError(f"{what}: the contour encloses no area ({len(ijk)} points on one line or one voxel); "
                         f"draw a closed outline around the object")
    inside = np.zeros(shape, bool)
    rr, cc = polygon(rows, cols, shape=shape)
    inside[rr, cc] = True
    ri, ci = np.rint(rows).astype(int), np.rint(cols).astype(int)
    for n in range(len(ri)):
        lr, lc = line(ri[n - 1], ci[n - 1], ri[n], ci[n])
        ok = (lr >= 0) & (lr < shape[0]) & (lc >= 0) & (lc < shape[1])
        inside[lr[ok], lc[ok]] = True
    return SliceShape(axis, index, inside, ijk)


def densify_polyline(lps: np.ndarray, step_mm: float) -> np.ndarray:
    """Points every ``step_mm`` along the polyline through ``lps`` ``(N, 3)`` (vertices kept,
    in order); a single point stays one point."""
    pts = np.asarray(lps, dtype=np.float64).reshape(-1, 3)
    out = [pts[0]]
    for p, q in zip(pts[:-1], pts[1:]):
        n = int(np.ceil(np.linalg.norm(q - p) / step_mm))
        for t in np.arange(1, n + 1) / max(n, 1):
            out.append(p + t * (q - p))
    return np.asarray(out)


def region_clicks(inside: np.ndarray, spacing_rc, max_clicks: int = 3, min_depth_frac: float = 0.5) -> list[tuple[int, int]]:
    """Click positions ``(row, col)`` in a 2D region: its distance-transform maximum (mm; the
    raster border counts as outside), then greedily further maxima at least two of the first
    one's depths away from every chosen click whose depth is at least ``min_depth_frac`` of the
    first's, up to ``max_clicks``. A long, thin region gets several clicks along it; a round
    one gets one. Ties: the voxel nearest the region's centroid, then raster order."""
    if not inside.any():
        return []
    edt = ndimage.distance_transform_edt(np.pad(inside, 1), sampling=tuple(float(s) for s in spacing_rc))[1:-1, 1:-1]
    rr, cc = np.nonzero(inside)
    cen = np.array([rr.mean(), cc.mean()])
    chosen: list[tuple[int, int]] = []
    depth0 = None
    work = edt.copy()
    grid_r, grid_c = np.indices(edt.shape)
    sp = np.asarray(spacing_rc, float)
    while len(chosen) < max_clicks:
        top = work.max()
        if top <= 0 or (depth0 is not None and top < min_depth_frac * depth0):
            break
        cand = np.argwhere(work >= top - 1e-6)
        d = (((cand - cen) * sp) ** 2).sum(axis=1)
        r, c = (int(v) for v in cand[int(np.argmin(d))])
        chosen.append((r, c))
        depth0 = top if depth0 is None else depth0
        far = np.sqrt(((grid_r - r) * sp[0]) ** 2 + ((grid_c - c) * sp[1]) ** 2) >= 2.0 * depth0
        work = np.where(far, work, 0.0)
    return chosen
