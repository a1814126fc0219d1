"""Folding the constant part of SPADE for spatially sparse prompts (exact, inference only).

A SPADE norm computes ``γβ = W_γβ ∗ ReLU(W_s ∗ P + b_s) + b_γβ`` from the prompt ``P`` at its
scale (both convs zero-padded). Wherever ``P`` is zero in a voxel's whole receptive field
(2 voxels for 3×3×3 convs), ``γβ`` equals that of an all-zero prompt, a prompt-independent
field (constant inside, with a border pattern from the zero padding) that is computed once
per size and cached. So for a sparse prompt ``γβ`` is the cached field, recomputed exactly
only where the prompt's receptive fields reach: in one box per connected group, or in cubic
tiles of 8 or 4 voxels batched into one convolution, whichever costs less
(:func:`plan_recompute`). Sparse prompts are the common case: the first click of a patch and
every patch cross-patch expansion opens (zero previous mask), and later clicks too, because
the session stores probabilities below 1/256 as exact zeros
(:func:`ctsam3d.inference.sparse_volume.quantize`), so the previous mask is zero away from
the object. The γ/β convolutions are ~60 % of the reference decoder's FLOPs; this removes most
of them without changing the function (float rounding only).

The same holds inside an object: where the previous mask sits at its top level ``m`` (the
session stores confident probabilities as one level) with no click in a voxel's receptive
field, the prompt there is the constant ``(0, 0, m)`` and ``γβ`` equals that of a prompt equal
to it over the whole grid, cached too (:func:`constant_interior`,
:func:`constant_prompt_modulation`). So a later click deep inside a large organ recomputes γβ
only around the organ's surface and the clicks. When the recomputation would cost most of
the dense work, or the grid is small, the ordinary dense path is taken.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from .layers import conv3d

#: take the dense path when the estimated recomputation exceeds this fraction of the dense work
MAX_RECOMPUTE_FRACTION = 0.8
#: smallest grid edge folded; coarser scales are cheap and take the dense path
MIN_FOLD_EDGE = 8


def cached_cat(owner, name: str, tensors) -> torch.Tensor:
    """``torch.cat(tensors)`` (channels-last when 5-D), cached on ``owner`` until one of the
    tensors changes (by storage or in place), so inference does not re-concatenate weights
    on every call."""
    cache = owner.__dict__.setdefault("_cat_cache", {})
    key = tuple((t.data_ptr(), t._version, tuple(t.shape)) for t in tensors)
    hit = cache.get(name)
    if hit is None or hit[0] != key:
        out = torch.cat(list(tensors))
        if out.dim() == 5:
            out = out.contiguous(memory_format=torch.channels_last_3d)
        cache[name] = hit = (key, out)
    return hit[1]


def gamma_beta_weights(norm) -> tuple[torch.Tensor, torch.Tensor]:
    """A SPADE norm's γ and β convs as one conv: weights ``(2C, hidden, k, k, k)``, bias ``(2C,)``."""
    w = cached_cat(norm, "gb_weight", (norm.mlp_gamma.weight, norm.mlp_beta.weight))
    b = cached_cat(norm, "gb_bias", (norm.mlp_gamma.bias, norm.mlp_beta.bias))
    return w, b


def shared_weights(norms) -> tuple[torch.Tensor, torch.Tensor]:
    """The shared prompt convs of ``norms`` as one conv (cached on the first norm)."""
    convs = [n.mlp_shared[0] for n in norms]
    tag = f"shared{len(convs)}"
    return (cached_cat(norms[0], tag + "_weight", [c.weight for c in convs]),
            cached_cat(norms[0], tag + "_bias", [c.bias for c in convs]))


def _key(norm, size, like: torch.Tensor) -> tuple:
    params = (norm.mlp_shared[0].weight, norm.mlp_shared[0].bias, norm.mlp_gamma.weight,
              norm.mlp_gamma.bias, norm.mlp_beta.weight, norm.mlp_beta.bias)
    return (tuple(size), like.device, like.dtype) + tuple((p.data_ptr(), p._version) for p in params)


def constant_prompt_modulation(norm, size, value: tuple[float, ...], like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(1 + γ, β)``, each ``(1, C, *size)``, of a prompt equal to ``value`` (one number per
    prompt channel) over the whole grid, zero-padded as always (cached on the norm module: the
    all-zero prompt's field and one other value's)."""
    cache = norm.__dict__.setdefault("_constant_cache", {})
    slot = "zero" if not any(value) else "other"
    key = (tuple(value),) + _key(norm, size, like)
    if cache.get(slot, (None,))[0] != key:  # weights, size or value changed
        shared = norm.mlp_shared[0]
        p = torch.tensor(value, dtype=like.dtype, device=like.device).view(1, -1, 1, 1, 1).expand(1, -1, *size)
        a = F.relu(conv3d(p.contiguous(memory_format=torch.channels_last_3d), shared.weight, shared.bias, shared.padding[0]))
        w, b = gamma_beta_weights(norm)
        gb = conv3d(a, w, b, norm.mlp_gamma.padding[0])
        c = norm.mlp_gamma.out_channels
        cache[slot] = (key, (1 + gb[:, :c], gb[:, c:]))
    return cache[slot][1]


def zero_prompt_modulation(norm, size, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(1 + γ, β)`` of an all-zero prompt, each ``(1, C, *size)`` (cached)."""
    return constant_prompt_modulation(norm, size, (0.0,) * norm.mlp_shared[0].in_channels, like)


#: fold a constant interior only when it covers at least this fraction of the grid
MIN_INTERIOR_FRACTION = 0.02


class Interior(NamedTuple):
    """Voxels whose receptive field sees the constant prompt ``value``: ``box`` (z, y, x
    slices) bounding them and ``mask`` ``(1, 1, *box)`` bool within it."""

    value: tuple[float, ...]
    box: tuple[slice, slice, slice]
    mask: torch.Tensor


def constant_interior(prompt: torch.Tensor, halo: int) -> Interior | None:
    """Where the batch-of-one ``prompt`` ``(1, C, D, H, W)`` equals ``(0, …, 0, m)`` (clicks
    absent, previous mask — the last channel — at its maximum ``m > 0``) within ``halo``
    voxels (chessboard distance, inside the grid: the field of that constant prompt,
    :func:`constant_prompt_modulation`, holds the zero padding's border pattern). ``None``
    when that covers less than :data:`MIN_INTERIOR_FRACTION` of the grid."""
    prev = prompt[0, -1]
    m = float(prev.max())
    if m <= 0.0:
        return None
    same = (prev == m) & (prompt[0, :-1] == 0).all(0)
    voxels = same.numel()
    if int(same.sum()) < MIN_INTERIOR_FRACTION * voxels:
        return None
    inside = ndimage.minimum_filter(same.cpu().numpy(), size=2 * halo + 1, mode="constant", cval=1)
    if int(inside.sum()) < MIN_INTERIOR_FRACTION * voxels:
        return None
    box = ndimage.find_objects(inside.astype(np.int8))[0]
    mask = torch.from_numpy(np.ascontiguousarray(inside[box])).to(prompt.device)[None, None]
    return Interior((0.0,) * (prompt.shape[1] - 1) + (m,), tuple(box), mask)


def _blocks(t: torch.Tensor, tile: int) -> torch.Tensor:
    """``(nz, ny, nx, C, tile, tile, tile)`` view of the batch-of-one ``(1, C, D, H, W)`` ``t``
    (every edge a multiple of ``tile``); assigning to an indexed view writes into ``t``."""
    n = [s // tile for s in t.shape[2:]]
    return t[0].unflatten(1, (n[0], tile)).unflatten(3, (n[1], tile)).unflatten(5, (n[2], tile)).permute(1, 3, 5, 0, 2, 4, 6)


class FoldedModulation(NamedTuple):
    """One SPADE norm's modulation for a sparse prompt: the cached zero-prompt field and the
    exact γβ where the prompt reaches (``kind``/``items`` from :func:`plan_recompute`;
    ``values`` one ``(1, 2C, *box)`` per box, or ``(N, 2C, t, t, t)`` for the tiles). Never
    materialises a full-size γ or β on the fast path (:meth:`apply`)."""

    scale: torch.Tensor  # (1, C, *size): 1 + γ of the all-zero prompt
    shift: torch.Tensor  # (1, C, *size): β of the all-zero prompt
    kind: str
    items: object
    values: object
    #: a constant-prompt interior: (:class:`Interior`, 1 + γ, β of that constant, full size)
    inside: tuple | None = None

    def apply(self, normalized: torch.Tensor) -> torch.Tensor:
        """``normalized · (1 + γ) + β`` for ``normalized`` ``(1, C, *size)``."""
        out = torch.addcmul(self.shift, normalized, self.scale)
        c = normalized.shape[1]
        if self.inside is not None:
            where, scale, shift = self.inside
            idx = (slice(None), slice(None)) + where.box
            out[idx] = torch.where(where.mask, torch.addcmul(shift[idx], normalized[idx], scale[idx]), out[idx])
        if self.kind == "boxes":
            for box, v in zip(self.items, self.values):
                idx = (slice(None), slice(None)) + tuple(box)
                out[idx] = torch.addcmul(v[:, c:], normalized[idx], 1 + v[:, :c])
            return out
        tile, (iz, iy, ix) = self.items
        out, normalized = _pad_to_tiles(out, tile), _pad_to_tiles(normalized, tile)
        v = self.values
        _blocks(out, tile)[iz, iy, ix] = torch.addcmul(v[:, c:], _blocks(normalized, tile)[iz, iy, ix], 1 + v[:, :c])
        return _crop(out, self.scale.shape[2:])

    def dense(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Full-size ``(γ, β)`` (for checks; the decoder uses :meth:`apply`)."""
        gamma, beta = self.scale - 1, self.shift.clone()
        c = gamma.shape[1]
        if self.inside is not None:
            where, scale, shift = self.inside
            idx = (slice(None), slice(None)) + where.box
            gamma[idx] = torch.where(where.mask, scale[idx] - 1, gamma[idx])
            beta[idx] = torch.where(where.mask, shift[idx], beta[idx])
        if self.kind == "boxes":
            for box, v in zip(self.items, self.values):
                idx = (slice(None), slice(None)) + tuple(box)
                gamma[idx], beta[idx] = v[:, :c], v[:, c:]
            return gamma, beta
        tile, (iz, iy, ix) = self.items
        gamma, beta = _pad_to_tiles(gamma, tile), _pad_to_tiles(beta, tile)
        _blocks(gamma, tile)[iz, iy, ix] = self.values[:, :c]
        _blocks(beta, tile)[iz, iy, ix] = self.values[:, c:]
        size = self.scale.shape[2:]
        return _crop(gamma, size), _crop(beta, size)


def _tile_extra(size, tile: int) -> list[int]:
    """Voxels past the grid's far end, per axis, of the last ``tile`` along it."""
    return [-(-s // tile) * tile - s for s in size]


def _pad_to_tiles(t: torch.Tensor, tile: int) -> torch.Tensor:
    """``t`` zero-padded at the far end of each spatial axis to a multiple of ``tile`` (itself
    when already one)."""
    extra = _tile_extra(t.shape[2:], tile)
    return F.pad(t, [v for e in reversed(extra) for v in (0, e)]) if any(extra) else t


def _crop(t: torch.Tensor, size) -> torch.Tensor:
    return t if tuple(t.shape[2:]) == tuple(size) else t[:, :, : size[0], : size[1], : size[2]]


#: measured cost per output voxel of a batch of 4³ tiles relative to 8³ tiles or the dense
#: convolution (128→256 channels, 32³ grid, 2 threads: 347 vs 253 ms for full coverage)
TILE4_COST = 1.4


def tile_edges(size) -> tuple[int, ...]:
    """Candidate tile edges for a grid: 8 and 4 voxels from 32³ up, 4 below."""
    return (8, 4) if min(size) >= 32 else (4,)


def grown_support(prompt: torch.Tensor, halo: int) -> torch.Tensor:
    """``(D, H, W)`` bool: voxels within ``halo`` (chessboard distance) of a non-zero voxel of
    the batch-of-one ``prompt`` ``(1, C, D, H, W)``: where γβ may differ from the zero field."""
    support = (prompt[0] != 0).any(0)
    if halo > 0 and bool(support.any()):  # (scipy's max filter is separable: ~8x faster here)
        grown = ndimage.maximum_filter(support.cpu().numpy(), size=2 * halo + 1, mode="constant", cval=0)
        support = torch.from_numpy(grown).to(support.device)
    return support


def _tiles_of(grown: torch.Tensor, tile: int) -> tuple[torch.Tensor, ...]:
    grown = _pad_to_tiles(grown[None, None].float(), tile)[0, 0] > 0
    n = [s // tile for s in grown.shape]
    t = grown.view(n[0], tile, n[1], tile, n[2], tile).any(5).any(3).any(1)
    return t.nonzero(as_tuple=True)


def active_tiles(prompt: torch.Tensor, halo: int, tile: int) -> tuple[torch.Tensor, ...]:
    """Indices ``(iz, iy, ix)`` of the ``tile``³ tiles holding a voxel of
    :func:`grown_support`. Tiles are counted from the grid origin; the last tile along an axis
    may extend past the grid."""
    return _tiles_of(grown_support(prompt, halo), tile)


def _boxes_of(grown: torch.Tensor, slab: int | None = None) -> list[tuple[slice, slice, slice]]:
    """One box (z, y, x slices) per 26-connected group of ``grown``; with ``slab``, per group
    within each slab of ``slab`` z planes (tighter boxes for supports that run along z)."""
    g = grown.cpu().numpy()
    step = slab or g.shape[0]
    boxes = []
    for z0 in range(0, g.shape[0], step):
        labels, _ = ndimage.label(g[z0 : z0 + step], structure=np.ones((3, 3, 3), bool))
        for b in ndimage.find_objects(labels):
            if b is not None:
                boxes.append((slice(b[0].start + z0, b[0].stop + z0), b[1], b[2]))
    return boxes


#: fixed cost of one more box (one more convolution call), in output voxels; measured on the
#: 32³ γβ convs (2 threads): 16 slab boxes of 2 planes cost more than 8 of 4 planes despite
#: 10 % fewer voxels
BOX_OVERHEAD_VOXELS = 256
#: slab heights (z planes) tried for per-slab boxes
SLABS = (4, 8)


def plan_recompute(prompt: torch.Tensor, halo: int, interior: Interior | None = None):
    """Where to recompute γβ exactly, the cheapest of: one box per connected group of the grown
    support less the ``interior`` (best for compact supports, e.g. one click), the same per
    slab of z planes (supports along z: spinal cord, oesophagus), or 8³ / 4³ tiles (spread or
    curved supports, e.g. a mandible's previous mask, or an organ's surface). Returns
    ``(cost, kind, items)`` with the estimated work as a fraction of the dense convolution's,
    ``kind`` ``"boxes"`` (``items`` a list of slice triples) or ``"tiles"`` (``items`` =
    ``(edge, (iz, iy, ix))``)."""
    grown = grown_support(prompt, halo)
    if interior is not None:
        grown = grown.clone()
        idx = interior.box
        grown[idx] &= ~interior.mask[0, 0]
    size = tuple(grown.shape)
    voxels = size[0] * size[1] * size[2]
    if not bool(grown.any()):
        return 0.0, "boxes", []
    best = None
    for slab in (None,) + tuple(t for t in SLABS if t < size[0]):
        boxes = _boxes_of(grown, slab)
        cost = sum(int(np.prod([s.stop - s.start for s in b])) + BOX_OVERHEAD_VOXELS for b in boxes) / voxels
        if best is None or cost < best[0]:
            best = (cost, "boxes", boxes)
    for edge in tile_edges(size):
        found = _tiles_of(grown, edge)
        cost = found[0].numel() * edge**3 * (TILE4_COST if edge < 8 else 1.0) / voxels
        if cost < best[0]:
            best = (cost, "tiles", (edge, found))
    return best


def _box_activation(prompt: torch.Tensor, box, w: torch.Tensor, b: torch.Tensor, hs: int, hg: int) -> torch.Tensor:
    """The shared convs' ReLU output (``w``, ``b``, padding ``hs``) over ``box`` grown by ``hg``
    on each side, zero outside the grid (the γβ conv's zero padding), computed from the prompt
    around the box only: ``(1, hidden, *(box + 2 hg))``."""
    size = prompt.shape[2:]
    lo = [s.start - hg - hs for s in box]
    hi = [s.stop + hg + hs for s in box]
    src = prompt[(slice(None), slice(None)) + tuple(slice(max(a, 0), min(e, n)) for a, e, n in zip(lo, hi, size))]
    pad = []
    for a, e, n in reversed(list(zip(lo, hi, size))):
        pad += [max(-a, 0), max(e - n, 0)]
    if any(pad):
        src = F.pad(src, pad)  # the shared conv's zero padding
    a = F.relu(conv3d(src.contiguous(memory_format=torch.channels_last_3d), w, b, 0))
    for d, s in enumerate(box):  # planes outside the grid: zeros, not ReLU(bias)
        before, after = max(hg - s.start, 0), max(s.stop + hg - size[d], 0)
        if before:
            a.narrow(2 + d, 0, before).zero_()
        if after:
            a.narrow(2 + d, a.shape[2 + d] - after, after).zero_()
    return a


def _recompute(norms, prompt: torch.Tensor, kind: str, items) -> list:
    """Exact γβ of each norm where ``kind``/``items`` (non-empty, from :func:`plan_recompute`)
    say: per norm a list with one ``(1, 2C, *box)`` per box, or ``(N, 2C, t, t, t)`` for the
    tiles (see :class:`FoldedModulation`). All norms' shared convs run in one pass: on the
    prompt around each box, or (tiles) on the whole grid."""
    ws, bs = shared_weights(norms)
    hs = norms[0].mlp_shared[0].padding[0]  # every SpadeNorm's shared conv: 3×3×3, padding 1
    hg = norms[0].mlp_gamma.padding[0]  # the norms of a block share their γβ kernel
    split = [n.mlp_shared[0].out_channels for n in norms]
    if kind == "boxes":
        out = [[] for _ in norms]
        for box in items:
            acts = _box_activation(prompt, box, ws, bs, hs, hg).split(split, 1)
            for i, (norm, a) in enumerate(zip(norms, acts)):
                w, b = gamma_beta_weights(norm)
                out[i].append(conv3d(a.contiguous(memory_format=torch.channels_last_3d), w, b, 0))
        return out
    tile, (iz, iy, ix) = items
    extra = _tile_extra(prompt.shape[2:], tile)
    acts = F.relu(conv3d(prompt, ws, bs, hs)).split(split, 1)
    out = []
    for norm, a in zip(norms, acts):
        w, b = gamma_beta_weights(norm)
        # zeros outside the grid: the γβ conv's zero padding (and don't-care voxels past the grid)
        ap = F.pad(a, (hg, hg + extra[2], hg, hg + extra[1], hg, hg + extra[0]))
        span = tile + 2 * hg
        windows = ap[0].unfold(1, span, tile).unfold(2, span, tile).unfold(3, span, tile)  # (H, nz, ny, nx, s, s, s)
        batch = windows[:, iz, iy, ix].transpose(0, 1).contiguous(memory_format=torch.channels_last_3d)
        out.append(conv3d(batch, w, b, 0))  # (N, 2C, tile, tile, tile)
    return out


def folded_modulation(norms, prompt: torch.Tensor):
    """For a batch-of-one inference prompt at this scale, per norm a
    :class:`FoldedModulation`: the cached zero-prompt field and exact values where the prompt
    reaches (:func:`plan_recompute`); ``None`` when the prompt is dense or the grid small (use
    the ordinary path)."""
    if prompt.shape[0] != 1 or torch.is_grad_enabled() or prompt.device.type != "cpu":
        return None  # (on a GPU the dense path is fast and avoids a device sync)
    size = tuple(prompt.shape[2:])
    if min(size) < MIN_FOLD_EDGE:
        return None
    halo = max(n.mlp_gamma.padding[0] + n.mlp_shared[0].padding[0] for n in norms)
    interior = constant_interior(prompt, halo)
    cost, kind, items = plan_recompute(prompt, halo, interior)
    if cost > MAX_RECOMPUTE_FRACTION:
        return None
    fields = [zero_prompt_modulation(n, size, prompt) for n in norms]
    inside = [None] * len(norms)
    if interior is not None:
        inside = [(interior,) + constant_prompt_modulation(n, size, interior.value, prompt) for n in norms]
    values = _recompute(norms, prompt, kind, items) if items else [[] for _ in norms]
    return [
        FoldedModulation(scale, shift, kind, items, v, ins)
        for (scale, shift), v, ins in zip(fields, values, inside)
    ]


def apply_folded(normalized: torch.Tensor, folded: FoldedModulation) -> torch.Tensor:
    """``normalized · (1 + γ) + β`` with one norm's entry of :func:`folded_modulation`."""
    return folded.apply(normalized)
