"""How a 2D box, a lasso or a scribble becomes the model's three prompt channels.

The model keeps its three prompt channels (positive click map, negative click map, previous
mask; :mod:`ctsam3d.modeling.prompts`), so the same weights serve every prompt type. Each
shape is rendered into things a click-trained model already understands, plus hard rules
on the slice the user drew on:

=========== ================================================ =========================================
prompt      clicks (Gaussians in channels 0 / 1)             slice rule (previous-mask channel, result)
=========== ================================================ =========================================
2D box +    one positive click at the box's centre           slice outside the box = background
2D box -    one negative click at the box's centre           box on the slice = background
lasso +     positive clicks at the inside's 2D distance-     inside on the slice = object (written into
            transform maxima (up to 3, see                   the previous-mask channel before decoding
            :func:`.shapes.region_clicks`)                   and kept), slice outside = background
lasso -     negative clicks at the same maxima               inside on the slice = background
scribble ±  a click every ``scribble_step_vox`` lattice      none
            voxels along the polyline (2D or 3D)
=========== ================================================ =========================================

*Slice rule.* The user's slice is a slab on the session's lattice: lattice voxels whose
centre lies within ``max(slice thickness, lattice spacing) / 2`` of the slice plane (so the
slab always holds at least one lattice layer), each taking the value of the input voxel of
the slice nearest to it in plane (background only where it is more than one lattice voxel
from the allowed region, so interpolation does not eat into what the rule allows). Inside that slab the rule is applied to every decoded
patch (expansion included, like a 3D box's clip), written into the stored probabilities
after the step (so the next decode sees it as the previous mask), and applied exactly to the
input-grid mask on the slice itself. The rule binds this step only: later clicks may change
the slice again.

*Learnable later.* Everything above is a function of the three channels the model already
has, so training can simulate the same renderings from ground truth
(:mod:`ctsam3d.clicks.shapes`) and teach the model to read them, with no new weights.

Scribbles and multi-click lassos may span several patches: after the first patch, every
click of the shape not well inside one of the object's patches opens one (positive) or
re-decodes the one holding it (negative), at most ``max_patches`` per shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..geometry import index_to_lps
from ..geometry.coords import direction_matrix
from .lattice import Lattice
from .prompts import Click, make_click
from .shapes import SliceShape, densify_polyline, region_clicks

__all__ = ["ShapeRendering", "SliceRule", "ShapePrompt", "render_box2d", "render_lasso", "render_scribble"]


@dataclass(frozen=True)
class ShapeRendering:
    """Knobs of the rendering (defaults: the zero-shot choices measured in docs/prompts.md).

    Attributes:
        lasso_clicks: most clicks a lasso gets (distance-transform maxima of its inside).
        lasso_seed: write the lasso's inside into the previous-mask channel before decoding.
        scribble_step_vox: spacing of a scribble's clicks along its polyline, in lattice voxels.
        max_patches: most patches one shape decodes (its first patch included).
        box_negatives: a positive 2D box also gets negative clicks just outside the middle of
            each edge (2 lattice voxels out, on the slice, where inside the image).
    """

    box_negatives: bool = False
    lasso_clicks: int = 3
    lasso_seed: bool = True
    scribble_step_vox: float = 2.0
    max_patches: int = 8


DEFAULT_RENDERING = ShapeRendering()


class SliceRule:
    """The hard rule of a shape on its slice, on the lattice and on the input grid.

    Args:
        shape: the slice region (:class:`.shapes.SliceShape`).
        image: the input image; ``lattice``: the session's lattice.
        foreground: bool 2D raster (numpy order of the slice, see :mod:`.shapes`) forced into
            the object, or None.
        background: bool 2D raster forced out of the object, or None.
    """

    def __init__(self, shape: SliceShape, image: sitk.Image, lattice: Lattice, foreground, background):
        self.shape = shape
        self.image = image
        self.lattice = lattice
        self.foreground = foreground
        self.background = background
        spacing = np.asarray(image.GetSpacing(), float)
        m = direction_matrix(image) * spacing[None, :]
        self._inv = np.linalg.inv(m)
        self._origin = np.asarray(image.GetOrigin(), float)
        # half thickness of the slab, in slice-index units
        self._half = max(0.5, 0.5 * lattice.spacing / spacing[shape.axis]) + 1e-6
        # On the lattice the background stops one lattice voxel short of the allowed region, so
        # the linear paste does not pull allowed input voxels near its edge below 0.5; the exact
        # cut on the slice is apply_to_mask's.
        self._lattice_background = None
        if background is not None:
            a, b = shape.plane_axes
            edt = ndimage.distance_transform_edt(background, sampling=(spacing[a], spacing[b]))
            self._lattice_background = background & (edt > lattice.spacing)
        any_rule = np.zeros(shape.inside.shape, bool)
        for r in (foreground, background):
            if r is not None:
                any_rule |= r
        self._rule_any = any_rule
        self.box = self._lattice_box(any_rule)

    def _lattice_box(self, region: np.ndarray):
        """Half-open lattice box ``(lo, hi)`` ``(z, y, x)`` holding the slab part of ``region``."""
        if not region.any():
            return None
        rows, cols = np.nonzero(region)
        sh = self.shape
        corners = []
        for r in (rows.min() - 0.5, rows.max() + 0.5):
            for c in (cols.min() - 0.5, cols.max() + 0.5):
                for d in (-self._half, self._half):
                    p = sh.uv_to_ijk([[r, c]])[0]
                    p[sh.axis] += d
                    corners.append(p)
        zyx = self.lattice.world_to_zyx(index_to_lps(self.image, np.asarray(corners)))
        return np.floor(zyx.min(axis=0)).astype(int), np.ceil(zyx.max(axis=0)).astype(int) + 1

    def rasters(self, start, size) -> tuple[np.ndarray | None, np.ndarray | None]:
        """``(foreground, background)`` bool ``(D, H, W)`` over the lattice box at ``start`` (or None)."""
        if self.box is None:
            return None, None
        s, n = np.asarray(start), np.asarray(size)
        if np.any(self.box[1] <= s) or np.any(self.box[0] >= s + n):
            return None, None
        zz, yy, xx = np.meshgrid(*[np.arange(int(a), int(a + b)) for a, b in zip(s, n)], indexing="ij")
        lps = self.lattice.zyx_to_world(np.stack([zz, yy, xx], axis=-1))
        ijk = (lps - self._origin) @ self._inv.T
        sh = self.shape
        in_slab = np.abs(ijk[..., sh.axis] - sh.index) <= self._half
        a, b = sh.plane_axes
        r = np.rint(ijk[..., a]).astype(np.int64)
        c = np.rint(ijk[..., b]).astype(np.int64)
        rows, cols = sh.inside.shape
        ok = in_slab & (r >= 0) & (r < rows) & (c >= 0) & (c < cols)
        rc, cc = np.where(ok, r, 0), np.where(ok, c, 0)
        fg = None if self.foreground is None else ok & self.foreground[rc, cc]
        bg = None if self._lattice_background is None else ok & self._lattice_background[rc, cc]
        return fg, bg

    def clip(self, start, probs: np.ndarray) -> np.ndarray:
        """A decoded patch (lattice ``start``) with the rule applied (forced 1 / 0 in the slab)."""
        fg, bg = self.rasters(start, probs.shape)
        if fg is None and bg is None:
            return probs
        out = probs.copy()
        if bg is not None:
            out[bg] = 0.0
        if fg is not None:
            out[fg] = 1.0
        return out

    def seed(self, store) -> None:
        """Write the forced foreground into the lattice store (previous-mask channel), by maximum."""
        if self.foreground is None or self.box is None:
            return
        lo, hi = self.box
        fg, _ = self.rasters(lo, hi - lo)
        if fg is not None and fg.any():
            store.write(lo, fg.astype(np.float32), mode="max")

    def enforce(self, store) -> None:
        """Apply the rule to the lattice store over the slab (only where the store holds values
        or the rule forces foreground: the background never creates chunks)."""
        if self.box is None:
            return
        lo, hi = self.box
        sb = store.bounds()
        if self.foreground is None:
            if sb is None:
                return
            lo, hi = np.maximum(lo, sb[0]), np.minimum(hi, sb[1])
            if np.any(hi <= lo):
                return
        levels = store.read_levels(lo, hi - lo)
        fg, bg = self.rasters(lo, hi - lo)
        new = levels.copy()
        if bg is not None:
            new[bg] = 0
        if fg is not None:
            new[fg] = 255
        if not np.array_equal(new, levels):
            store.write_levels(lo, new)

    def apply_to_mask(self, mask) -> None:
        """Apply the rule exactly to the input-grid mask (levels 0/255, ``(k, j, i)``) on the slice."""
        rows, cols = np.nonzero(self._rule_any)
        if len(rows) == 0:
            return
        sh = self.shape
        r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
        lo = [0, 0, 0]
        size = [0, 0, 0]
        npax = 2 - sh.axis
        a, b = sh.plane_axes
        lo[npax], size[npax] = sh.index, 1
        lo[2 - a], size[2 - a] = int(r0), int(r1 - r0)
        lo[2 - b], size[2 - b] = int(c0), int(c1 - c0)
        cur = np.take(mask.read_mask(lo, size), 0, axis=npax)
        new = cur.copy()
        if self.background is not None:
            new &= ~self.background[r0:r1, c0:c1]
        if self.foreground is not None:
            new |= self.foreground[r0:r1, c0:c1]
        if not np.array_equal(new, cur):
            mask.write_levels(lo, np.expand_dims(new.astype(np.uint8) * 255, npax))


@dataclass
class ShapePrompt:
    """A shape rendered for the session: its clicks (first = the anchor that picks the first
    patch), its slice rule (or None) and how to treat the previous-mask channel."""

    action: str
    positive: bool
    clicks: list[Click]
    rule: SliceRule | None = None
    seed: bool = False
    rendering: ShapeRendering = field(default_factory=ShapeRendering)


def _clicks_at(shape: SliceShape, uvs, positive, image, lattice, source) -> list[Click]:
    ijk = shape.uv_to_ijk(uvs)
    return [make_click(tuple(p), positive, image, lattice, "index", source=source) for p in ijk]


def _slice_spacing(shape: SliceShape, image: sitk.Image) -> tuple[float, float]:
    sp = image.GetSpacing()
    a, b = shape.plane_axes
    return float(sp[a]), float(sp[b])


def render_box2d(shape: SliceShape, positive: bool, image, lattice, rendering: ShapeRendering = DEFAULT_RENDERING) -> ShapePrompt:
    """2D box: a click at the box's centre; slice outside it (positive) or inside it (negative)
    is background."""
    centre = shape.vertices_ijk.mean(axis=0)
    clicks = [make_click(tuple(centre), positive, image, lattice, "index", source="box2d")]
    if positive and rendering.box_negatives:
        a, b = shape.plane_axes
        rows, cols = np.nonzero(shape.inside)
        sp = image.GetSpacing()
        out_r, out_c = 2 * lattice.spacing / sp[a], 2 * lattice.spacing / sp[b]
        mid_r, mid_c = 0.5 * (rows.min() + rows.max()), 0.5 * (cols.min() + cols.max())
        size = image.GetSize()
        for r, c in ((rows.min() - out_r, mid_c), (rows.max() + out_r, mid_c), (mid_r, cols.min() - out_c), (mid_r, cols.max() + out_c)):
            if 0 <= r <= size[a] - 1 and 0 <= c <= size[b] - 1:
                clicks.append(_clicks_at(shape, [(r, c)], False, image, lattice, "box2d")[0])
    fg, bg = (None, ~shape.inside) if positive else (None, shape.inside)
    return ShapePrompt("box2d", positive, clicks, SliceRule(shape, image, lattice, fg, bg), False, rendering)


def render_lasso(shape: SliceShape, positive: bool, image, lattice, rendering: ShapeRendering = DEFAULT_RENDERING) -> ShapePrompt:
    """Lasso: clicks at the inside's distance-transform maxima; inside = object (positive) or
    background (negative) on the slice, outside = background (positive)."""
    uvs = region_clicks(shape.inside, _slice_spacing(shape, image), max_clicks=max(1, rendering.lasso_clicks))
    clicks = _clicks_at(shape, uvs, positive, image, lattice, "lasso")
    fg, bg = (shape.inside, ~shape.inside) if positive else (None, shape.inside)
    rule = SliceRule(shape, image, lattice, fg, bg)
    return ShapePrompt("lasso", positive, clicks, rule, bool(positive and rendering.lasso_seed), rendering)


def render_scribble(lps: np.ndarray, positive: bool, image, lattice, rendering: ShapeRendering = DEFAULT_RENDERING) -> ShapePrompt:
    """Scribble: clicks every ``scribble_step_vox`` lattice voxels along the polyline (one per
    lattice voxel at most)."""
    pts = densify_polyline(lps, rendering.scribble_step_vox * lattice.spacing)
    clicks, seen = [], set()
    for p in pts:
        c = make_click(tuple(p), positive, image, lattice, "world", source="scribble")
        if c.zyx not in seen:
            seen.add(c.zyx)
            clicks.append(c)
    return ShapePrompt("scribble", positive, clicks, None, False, rendering)
