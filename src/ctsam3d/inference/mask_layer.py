"""An object's mask on the input grid, changed only where the model's prediction changes.

Each object keeps two things (see :class:`~ctsam3d.inference.objects.ObjectState`):

* ``store``: the model's probabilities on the canonical lattice (what the decoder sees as the
  previous mask, see :mod:`.sparse_volume`);
* ``mask``: the object's mask **on the input image's grid** -- the thing :meth:`Session.result`
  returns. It is a :class:`.sparse_volume.SparseVolume` indexed by input ``(k, j, i)`` (numpy
  order of ``sitk.GetArrayFromImage``) with levels 0 / 255.

The mask starts as the user's own mask (edit mode, :func:`write_user_mask`) or empty. After
each prompt the lattice probabilities before and after the step are both pasted (linear, the
same resampling as :func:`ctsam3d.geometry.paste_patch`) onto the input voxels whose value
can depend on a lattice voxel whose stored level changed, and only the input voxels whose
thresholded value (``p > 0.5``) flipped are flipped in the mask (:func:`apply_change`; for
axis-aligned inputs it interpolates only where the lattice says a flip is possible, see there).
Hence every input voxel the model's change cannot reach keeps its value bit for bit -- in
particular a user's mask comes back voxel-identical where no prompt acted -- and an object
started from clicks alone has exactly the thresholded paste of its probabilities (the flips
of a paste applied to that paste give the new paste; such an object's mask therefore stands
in for the "before" paste, ``mask_is_paste``, and a step costs one resampling).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import SimpleITK as sitk

from ..geometry import paste_patch
from .lattice import Lattice
from .sparse_volume import SparseVolume, diff_box, levels_diff_box

__all__ = ["apply_change", "box_keep", "input_box_of_lattice_box", "mask_image", "paste_store", "write_user_mask"]

#: ``(lo_kji, hi_kji)`` half-open box of input voxels in numpy order.
KjiBox = tuple[np.ndarray, np.ndarray]
ON = 255  # mask level of a voxel in the mask


def input_box_of_lattice_box(lattice: Lattice, lo_zyx, hi_zyx, image: sitk.Image) -> KjiBox | None:
    """Input voxels ``(k, j, i)`` whose linear paste can depend on the lattice box ``[lo, hi)``."""
    bb = lattice.box_to_input_bbox(lo_zyx, hi_zyx, image)
    if bb is None:
        return None
    (i0, i1), (j0, j1), (k0, k1) = bb
    return np.array([k0, j0, i0]), np.array([k1, j1, i1])


def _strided_shape(lo_kji, hi_kji, stride: int = 1) -> tuple[int, int, int]:
    return tuple(-(-int(h - l) // int(stride)) for l, h in zip(lo_kji, hi_kji))


def _sub_reference(image: sitk.Image, lo_kji, hi_kji, stride: int = 1) -> sitk.Image:
    k, j, i = _strided_shape(lo_kji, hi_kji, stride)
    ref = sitk.Image([i, j, k], sitk.sitkUInt8)
    ref.SetOrigin(image.TransformIndexToPhysicalPoint((int(lo_kji[2]), int(lo_kji[1]), int(lo_kji[0]))))
    ref.SetSpacing(tuple(float(v) * stride for v in image.GetSpacing()))
    ref.SetDirection(image.GetDirection())
    return ref


def paste_store(store: SparseVolume, lattice: Lattice, image: sitk.Image, lo_kji, hi_kji, stride: int = 1) -> np.ndarray:
    """The store's probabilities linearly resampled at the input voxels of ``[lo_kji, hi_kji)``
    (every ``stride``-th voxel along each axis from ``lo_kji``: ``image[lo:hi:stride]``).

    Returns float32 ``(K, J, I)``; 0 where the store holds nothing. Memory: the box plus the
    lattice box around it.
    """
    shape = _strided_shape(lo_kji, hi_kji, stride)
    out = np.zeros(shape, np.float32)
    if min(shape) <= 0 or not store.chunks:
        return out
    ref = _sub_reference(image, lo_kji, hi_kji, stride)
    size = np.asarray(ref.GetSize(), float)
    corners = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], float) * size - 0.5
    zyx = lattice.world_to_zyx(np.array([ref.TransformContinuousIndexToPhysicalPoint(tuple(c)) for c in corners]))
    lo = np.floor(zyx.min(axis=0)).astype(int) - 1
    hi = np.ceil(zyx.max(axis=0)).astype(int) + 2
    probs = store.read(lo, hi - lo)
    if not probs.any():
        return out
    region, vals = paste_patch(probs, lattice.grid(lo, tuple(int(v) for v in hi - lo)), ref)
    out[region] = vals
    return out


def box_keep(image: sitk.Image, a_lps, b_lps, tol: float = 1e-3) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``keep(lo_kji, hi_kji) -> bool (K, J, I)``: input voxels whose centre lies in the LPS box
    spanned by corners ``a_lps``, ``b_lps`` (within ``tol`` mm).

    For an input whose axes are LPS axes up to order and sign (axial, sagittal, coronal
    storage, e.g. RAS or PLI) this is exactly the index box between the corners' voxels.
    """
    lo = np.minimum(a_lps, b_lps) - tol
    hi = np.maximum(a_lps, b_lps) + tol
    m = np.asarray(image.GetDirection(), float).reshape(3, 3) * np.asarray(image.GetSpacing(), float)
    origin = np.asarray(image.GetOrigin(), float)

    def keep(lo_kji, hi_kji) -> np.ndarray:
        axes = [np.arange(int(lo_kji[a]), int(hi_kji[a]), dtype=np.float64) for a in range(3)]  # k, j, i
        out = np.ones(tuple(len(x) for x in axes), bool)
        for d in range(3):  # LPS axis
            # value = origin_d + m[d, 0] * i + m[d, 1] * j + m[d, 2] * k, as broadcast terms
            terms = [m[d, 2] * axes[0][:, None, None], m[d, 1] * axes[1][None, :, None], m[d, 0] * axes[2][None, None, :]]
            val = origin[d] + terms[0] + terms[1] + terms[2]
            out &= (val >= lo[d]) & (val <= hi[d])
        return out

    return keep


def apply_change(
    mask: SparseVolume,
    before: SparseVolume,
    after: SparseVolume,
    lattice: Lattice,
    image: sitk.Image,
    *,
    keep: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    mask_is_paste: bool = False,
    slab_voxels: int = 8_000_000,
    threshold=None,
    only_remove: bool = False,
) -> KjiBox | None:
    """Flip the input-grid ``mask`` where the thresholded paste of the lattice probabilities
    flipped between ``before`` and ``after``; returns the box of changed mask voxels (or None).

    Only input voxels that can depend on a lattice voxel whose level changed are considered
    (in slabs of about ``slab_voxels``). ``keep`` (see :func:`box_keep`) limits the flips to
    the voxels it marks. ``mask_is_paste``: ``mask`` is known to equal the thresholded paste
    of ``before``, so it stands in for that paste. ``threshold``: None (0.5) or a per-voxel
    threshold (:class:`.refine.ThresholdMap`: ``lo`` / ``hi`` bound it; ``hu(lo_kji, hi_kji)``
    reads the input's values of a box, ``at(values)`` gives their thresholds), looked up only
    for voxels whose paste lies between ``lo`` and ``hi``.
    ``only_remove``: flip only voxels now in the mask (a negative step never adds one).

    For an input whose axes are lattice axes up to order and sign (axial, sagittal, coronal
    storage; :func:`_apply_change_axis_aligned`) the lattice first tells where the paste can
    flip: an input voxel's interpolation corners lie in the 3 x 3 x 3 neighbourhood of its
    nearest lattice voxel, so where that neighbourhood is on one side of 0.5 before and after,
    on the same side, or holds no changed level, the paste keeps its value. Only the input
    box of the other voxels is interpolated, separably (one lattice axis at a time, numpy),
    with values within rounding of 0.5 taken from the resampler itself. The result is the
    same mask. Other orientations resample the whole reachable box
    (:func:`_apply_change_resampled`).
    """
    axes = _axis_map(lattice, image)
    opts = dict(keep=keep, mask_is_paste=mask_is_paste, slab_voxels=slab_voxels, threshold=threshold,
                only_remove=only_remove)
    if axes is None:
        return _apply_change_resampled(mask, before, after, lattice, image, **opts)
    return _apply_change_axis_aligned(mask, before, after, lattice, image, axes, **opts)


def _axis_map(lattice: Lattice, image: sitk.Image, tol: float = 1e-9):
    """For each input axis ``c`` (i, j, k): ``(a, t, m)``, the lattice coordinate along lattice
    axis ``a`` (z, y, x order) being ``t + m * index_c``; None unless each input axis runs along
    one lattice axis (direction cosines below ``tol`` count as 0: their effect on a coordinate
    stays far below the interpolation's tie band)."""
    d = np.asarray(image.GetDirection(), float).reshape(3, 3)
    lin = d * np.asarray(image.GetSpacing(), float)[None, :] / lattice.spacing  # LPS row d, input column c
    off = (np.asarray(image.GetOrigin(), float) - np.asarray(lattice.origin_lps, float)) / lattice.spacing
    big = np.abs(d) > tol
    if not (np.all(big.sum(axis=0) == 1) and np.all(big.sum(axis=1) == 1)):
        return None
    out = []
    for c in range(3):
        row = int(np.flatnonzero(big[:, c])[0])  # LPS axis x/y/z -> lattice axis 2 - row
        out.append((2 - row, float(off[row]), float(lin[row, c])))
    return out


def _probabilities(levels: np.ndarray) -> np.ndarray:
    """Stored levels -> probabilities exactly as :meth:`SparseVolume.read` gives them (float32)."""
    return np.where(levels > 0, (levels.astype(np.float32) + 0.5) / 256.0, np.float32(0.0))


def _band(threshold) -> tuple[float, float]:
    """``(lo, hi)``: a paste value at most ``lo`` is out for every voxel, above ``hi`` in."""
    if threshold is None:
        return 0.5, 0.5
    return float(threshold.lo) - 1e-5, float(threshold.hi) + 1e-5  # levels sit 1/256 apart: 0.5 is never this close


def _apply_change_axis_aligned(mask, before, after, lattice, image, axes, *, keep, mask_is_paste, slab_voxels,
                               threshold=None, only_remove=False):
    """:func:`apply_change` for an axis-aligned input (``axes`` from :func:`_axis_map`)."""
    from scipy import ndimage

    box = levels_diff_box(before.chunks, after.chunks, after.chunk)
    if box is None:
        return None
    per_axis = axes
    l_lo = np.asarray(box[0]) - 2
    l_shape = np.asarray(box[1]) + 2 - l_lo
    lev_b = before.read_levels(l_lo, l_shape)
    lev_a = after.read_levels(l_lo, l_shape)
    # A lattice voxel n stands for the input voxels whose nearest lattice voxel it is: their
    # interpolation corners lie in n's 3x3x3 neighbourhood (floor of the coordinate, +1, for
    # any rounding of a coordinate near an integer).
    reach = ndimage.maximum_filter((lev_b != lev_a).view(np.uint8), size=3, mode="constant", cval=0).view(bool)
    t_lo, t_hi = _band(threshold)
    p_a, p_b = _probabilities(lev_a), _probabilities(lev_b)
    # a paste lies between its corners' values: all corners above the band's top -> in for
    # any threshold, all at or below its bottom -> out (for 0.5: level >= 128 / <= 127)
    on_a, on_b = p_a > t_hi, p_b > t_hi
    not_off = (p_a > t_lo) | (p_b > t_lo)
    both_on = ndimage.minimum_filter((on_a & on_b).view(np.uint8), size=3, mode="nearest").view(bool)
    both_off = ~ndimage.maximum_filter(not_off.view(np.uint8), size=3, mode="nearest").view(bool)
    acting = reach & ~both_on & ~both_off  # the paste may flip here
    if not acting.any():
        return None
    a_lo, a_hi = _box_of(acting)
    # per input axis (i, j, k): the index range whose nearest lattice voxel can act
    size = image.GetSize()
    rng = []
    for c, (ax, t, m) in enumerate(per_axis):
        n = np.rint(t + m * np.arange(size[c], dtype=np.float64)).astype(np.int64) - l_lo[ax]
        ok = np.flatnonzero((n >= a_lo[ax]) & (n < a_hi[ax]))
        if ok.size == 0:
            return None
        rng.append((int(ok[0]), int(ok[-1]) + 1))
    lo = np.array([rng[2][0], rng[1][0], rng[0][0]])  # (k, j, i)
    hi = np.array([rng[2][1], rng[1][1], rng[0][1]])
    return _flip_slabs(
        mask, lo, hi, slab_voxels, keep=keep, mask_is_paste=mask_is_paste, only_remove=only_remove,
        now=lambda s_lo, s_hi: _thresholded(p_a, after, l_lo, per_axis, s_lo, s_hi, lattice, image, threshold),
        was=lambda s_lo, s_hi: _thresholded(p_b, before, l_lo, per_axis, s_lo, s_hi, lattice, image, threshold),
    )


def _flip_slabs(mask, lo, hi, slab_voxels, *, keep, mask_is_paste, now, was, only_remove=False):
    """Flip the input voxels of box ``[lo, hi)`` (``(k, j, i)``) whose thresholded value changed,
    slab by slab along k: ``now(s_lo, s_hi)`` / ``was(s_lo, s_hi)`` give a slab's thresholded
    paste after / before the step (``was`` is the stored mask itself when ``mask_is_paste``);
    ``keep`` restricts the flips; ``only_remove``: only voxels now in the mask may flip.
    Returns the box of changed voxels or None."""
    plane = int((hi[1] - lo[1]) * (hi[2] - lo[2]))
    step = max(1, slab_voxels // max(1, plane))
    c_lo = np.full(3, np.iinfo(np.int64).max)
    c_hi = np.full(3, np.iinfo(np.int64).min)
    for k0 in range(int(lo[0]), int(hi[0]), step):
        s_lo = np.array([k0, lo[1], lo[2]])
        s_hi = np.array([min(k0 + step, int(hi[0])), hi[1], hi[2]])
        now_s = now(s_lo, s_hi)
        was_s = mask.read_mask(s_lo, s_hi - s_lo) if mask_is_paste else was(s_lo, s_hi)
        flip = was_s != now_s
        if only_remove and flip.any():  # was_s may be a fresh paste: the mask itself decides
            flip &= was_s if mask_is_paste else mask.read_mask(s_lo, s_hi - s_lo)
        if keep is not None and flip.any():
            flip &= keep(s_lo, s_hi)
        if not flip.any():
            continue
        f_lo, f_hi = _box_of(flip)
        region = tuple(slice(int(a), int(b)) for a, b in zip(f_lo, f_hi))
        start = s_lo + f_lo
        cur = was_s[region] if mask_is_paste else mask.read_mask(start, f_hi - f_lo)
        new = np.where(flip[region], now_s[region], cur)
        changed = mask.write_levels(start, new.astype(np.uint8) * ON)
        if changed is not None:
            c_lo, c_hi = np.minimum(c_lo, changed[0]), np.maximum(c_hi, changed[1])
    if c_lo[0] > c_hi[0]:
        return None
    return c_lo, c_hi


def _above(vals: np.ndarray, thr, s_lo, exact=None, tie_band: float = 2e-6) -> np.ndarray:
    """``vals > threshold`` for the input box starting at ``s_lo`` (``thr``: a
    :class:`.refine.ThresholdMap`), reading HU values only for the sub-box of voxels whose
    value lies within the threshold's band. ``exact(lo, hi)``: the resampler's own paste of a
    box, used for values within ``tie_band`` of their threshold (rounding could decide)."""
    top, bottom = np.float32(thr.hi + 1e-5), np.float32(thr.lo - 1e-5)
    out = vals > top
    band = (vals > bottom) & ~out
    if not band.any():
        return out
    b_lo, b_hi = _box_of(band)
    idx = np.nonzero(band)  # (k, j, i) of the band's voxels in vals
    hu = thr.hu(np.asarray(s_lo) + b_lo, np.asarray(s_lo) + b_hi)
    v = vals[idx]
    t = thr.at(hu[tuple(c - o for c, o in zip(idx, b_lo))])
    res = v > t
    tie = np.abs(v - t) < tie_band if exact is not None else None
    if tie is not None and tie.any():  # the resampler's own paste decides near-ties
        pts = np.stack(idx, axis=1)[tie]
        t_lo, t_hi = pts.min(axis=0), pts.max(axis=0) + 1
        probs = exact(np.asarray(s_lo) + t_lo, np.asarray(s_lo) + t_hi)
        res[tie] = probs[tuple((pts - t_lo).T)] > t[tie]
    out[idx] = res
    return out


def _thresholded(p, store, l_lo, per_axis, s_lo, s_hi, lattice, image, thr=None, tie_band: float = 2e-6) -> np.ndarray:
    """``paste_store(store, ..., s_lo, s_hi) > thr`` (``thr``: None for 0.5, or a
    :class:`.refine.ThresholdMap`, see :func:`_above`) for an axis-aligned input, from ``p`` (the
    store's float32 probabilities on the lattice box starting at ``l_lo``, which must hold
    every interpolation corner): a separable trilinear interpolation, one lattice axis at a
    time, in float32. Values within ``tie_band`` of 0.5, where rounding (float32 here, the
    resampler's own order of operations) could decide, are taken from the resampler itself."""
    vals = p
    for c, (ax, t, m) in sorted(enumerate(per_axis), key=lambda e: abs(e[1][2])):  # order measured: finest input axis first
        idx = np.arange(int(s_lo[2 - c]), int(s_hi[2 - c]), dtype=np.float64)
        coord = t + m * idx - l_lo[ax]
        f = np.floor(coord)
        w = coord - f
        f = np.clip(f.astype(np.int64), 0, vals.shape[ax] - 2)
        shape = [1, 1, 1]
        shape[ax] = -1
        w = w.reshape(shape).astype(vals.dtype)
        step = np.diff(vals, axis=ax, append=np.zeros_like(np.take(vals, [0], axis=ax)))  # v[n + 1] - v[n]
        out = np.take(vals, f, axis=ax)
        step = np.take(step, f, axis=ax)
        step *= w
        out += step  # v[f] + w (v[f + 1] - v[f])
        vals = out
    # axes are lattice axes; put them in (k, j, i) order
    vals = np.transpose(vals, [per_axis[2][0], per_axis[1][0], per_axis[0][0]])
    if thr is not None:
        return _above(vals, thr, s_lo, exact=lambda lo, hi: paste_store(store, lattice, image, lo, hi),
                      tie_band=tie_band)
    out = vals > 0.5
    vals -= 0.5
    tie = np.abs(vals) < tie_band
    if tie.any():
        t_lo, t_hi = _box_of(tie)
        probs = paste_store(store, lattice, image, s_lo + t_lo, s_lo + t_hi)
        region = tuple(slice(int(a), int(b)) for a, b in zip(t_lo, t_hi))
        out[region] = np.where(tie[region], probs > 0.5, out[region])
    return out


def _apply_change_resampled(mask, before, after, lattice, image, *, keep, mask_is_paste, slab_voxels,
                            threshold=None, only_remove=False):
    """:func:`apply_change` by resampling the whole input box a changed level can reach."""
    box = levels_diff_box(before.chunks, after.chunks, after.chunk)
    if box is None:
        return None
    ib = input_box_of_lattice_box(lattice, box[0], box[1], image)
    if ib is None:
        return None
    lo, hi = ib
    def above(store, s_lo, s_hi):
        vals = paste_store(store, lattice, image, s_lo, s_hi)
        return vals > 0.5 if threshold is None else _above(vals, threshold, s_lo)

    return _flip_slabs(
        mask, lo, hi, slab_voxels, keep=keep, mask_is_paste=mask_is_paste, only_remove=only_remove,
        now=lambda s_lo, s_hi: above(after, s_lo, s_hi),
        was=lambda s_lo, s_hi: above(before, s_lo, s_hi),
    )


def _box_of(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = np.zeros(3, np.int64), np.zeros(3, np.int64)
    for a in range(3):
        nz = np.flatnonzero(m.any(axis=tuple(b for b in range(3) if b != a)))
        lo[a], hi[a] = nz[0], nz[-1] + 1
    return lo, hi


def write_user_mask(mask: sitk.Image, layer: SparseVolume, slab_voxels: int = 16_000_000) -> None:
    """Write ``mask != 0`` (an image on the input grid) into ``layer``, over its bounding box only."""
    binary = sitk.Cast(mask != 0, sitk.sitkUInt8)
    stats = sitk.LabelShapeStatisticsImageFilter()
    stats.Execute(binary)
    if not stats.HasLabel(1):
        return
    i, j, k, si, sj, sk = stats.GetBoundingBox(1)
    view = sitk.GetArrayViewFromImage(binary)
    step = max(1, slab_voxels // max(1, si * sj))
    for k0 in range(k, k + sk, step):
        k1 = min(k0 + step, k + sk)
        layer.write_levels((k0, j, i), view[k0:k1, j : j + sj, i : i + si] * np.uint8(ON))


def mask_image(image: sitk.Image, layers: list[tuple[int, SparseVolume]], resolve=None, *, slab_voxels: int = 16_000_000) -> sitk.Image:
    """Label image on ``image``'s grid from input-grid mask layers ``[(value, layer), ...]``.

    Where several layers hold a voxel, ``resolve(lo_kji, hi_kji, values, masks) -> labels``
    decides (default: the later layer). uint8, uint16 when a value exceeds 255.
    """
    big = max((v for v, _ in layers), default=0) > 255
    ptype, dtype = (sitk.sitkUInt16, np.uint16) if big else (sitk.sitkUInt8, np.uint8)
    out = sitk.Image(image.GetSize(), ptype)
    out.CopyInformation(image)
    bounds = [(v, layer, layer.bounds(mask_only=True)) for v, layer in layers]
    bounds = [b for b in bounds if b[2] is not None]
    if not bounds:
        return out
    size_kji = np.asarray(image.GetSize()[::-1])
    lo = np.maximum(np.min([b[2][0] for b in bounds], axis=0), 0)
    hi = np.minimum(np.max([b[2][1] for b in bounds], axis=0), size_kji)
    if np.any(hi <= lo):
        return out
    step = max(1, slab_voxels // max(1, int((hi[1] - lo[1]) * (hi[2] - lo[2]))))
    for k0 in range(int(lo[0]), int(hi[0]), step):
        s_lo = np.array([k0, lo[1], lo[2]])
        s_hi = np.array([min(k0 + step, int(hi[0])), hi[1], hi[2]])
        masks = [(v, layer.read_mask(s_lo, s_hi - s_lo)) for v, layer, _ in bounds]
        labels = np.zeros(tuple(int(v) for v in s_hi - s_lo), dtype)
        count = np.zeros(labels.shape, np.uint8)
        for v, m in masks:
            labels[m] = v
            count += m
        if resolve is not None and np.any(count > 1):
            labels = np.where(count > 1, resolve(s_lo, s_hi, masks), labels).astype(dtype)
        if labels.any():
            out[int(lo[2]) : int(hi[2]), int(lo[1]) : int(hi[1]), int(s_lo[0]) : int(s_hi[0])] = sitk.GetImageFromArray(labels)
    return out


def changed_input_bbox(before: dict, after: dict, chunk: int):
    """``((i0, i1), (j0, j1), (k0, k1))`` of mask voxels that differ between two chunk tables, or None."""
    box = diff_box(before, after, chunk)
    if box is None:
        return None
    (k0, j0, i0), (k1, j1, i1) = box
    return ((int(i0), int(i1)), (int(j0), int(j1)), (int(k0), int(k1)))
