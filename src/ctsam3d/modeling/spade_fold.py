"""Folding the constant part of SPADE for spatially sparse prompts (exact, inference only).

A SPADE norm computes ``γβ = W_γβ ∗ ReLU(W_s ∗ P + b_s) + b_γβ`` from the prompt ``P`` at its
scale (both convs zero-padded). Wherever ``P`` is zero in a voxel's whole receptive field
(2 voxels for 3×3×3 convs), ``γβ`` equals that of an all-zero prompt, a prompt-independent
field (constant inside, with a border pattern from the zero padding) that is computed once
per size and cached. So for a sparse prompt ``γβ`` is the cached field, recomputed exactly
only where the prompt's receptive fields reach: in one box per connected group (compact
supports: a click), or voxel by voxel, each voxel's gathered taps in one matrix product per
chunk (spread or curved supports: an organ's previous mask), whichever costs less
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

from .derived import cached
from .layers import conv3d

#: take the dense path when the estimated recomputation exceeds this fraction of the dense work
#: (the folded path also spares the dense path's full-grid shared conv; with the boxes of a
#: patch-filling organ estimated at 0.82, folding was 5 % faster than dense in a 9-run A/B)
MAX_RECOMPUTE_FRACTION = 0.9
#: smallest grid edge folded; coarser scales are cheap and take the dense path
MIN_FOLD_EDGE = 8


def _cat(tensors) -> torch.Tensor:
    out = torch.cat(list(tensors))
    return out.contiguous(memory_format=torch.channels_last_3d) if out.dim() == 5 else out


def cached_cat(owner, name: str, tensors) -> torch.Tensor:
    """``torch.cat(tensors)`` (channels-last when 5-D), :func:`cached` on ``owner``."""
    return cached(owner, name, tensors, _cat)


def gamma_beta_weights(norm) -> tuple[torch.Tensor, torch.Tensor]:
    """A SPADE norm's γ and β convs as one conv: weights ``(2C, hidden, k, k, k)``, bias ``(2C,)``."""
    w = cached_cat(norm, "gb_weight", (norm.mlp_gamma.weight, norm.mlp_beta.weight))
    b = cached_cat(norm, "gb_bias", (norm.mlp_gamma.bias, norm.mlp_beta.bias))
    return w, b


def gamma_beta_weights_plus_one(norm) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`gamma_beta_weights` with 1 added to the γ biases: the conv gives ``(1 + γ, β)``,
    so that the modulation is one fused multiply-add. Cached."""

    def make(biases):
        return torch.cat([biases[0] + 1, biases[1]])

    w, _ = gamma_beta_weights(norm)
    return w, cached(norm, "gb_bias_plus_one", (norm.mlp_gamma.bias, norm.mlp_beta.bias), make)


def gamma_beta_pointwise(norm) -> torch.Tensor:
    """A SPADE norm's γβ conv as a 1×1×1 conv over gathered taps: weight ``(2C, k³ · hidden, 1,
    1, 1)`` (channels-last), input channels ordered (kz, ky, kx, hidden), so that one voxel's
    taps in that order give its γβ. Cached."""

    def make(weights):
        w = torch.cat(list(weights))
        w = w.permute(0, 2, 3, 4, 1).reshape(w.shape[0], -1, 1, 1, 1)
        return w.contiguous(memory_format=torch.channels_last_3d)

    return cached(norm, "gb_pointwise", (norm.mlp_gamma.weight, norm.mlp_beta.weight), make)


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


class FoldedModulation(NamedTuple):
    """One SPADE norm's modulation for a sparse prompt: the cached zero-prompt field and the
    exact γβ where the prompt reaches (``kind``/``items`` from :func:`plan_recompute`;
    ``values`` one ``(1, 2C, *box)`` per box, or ``(N, 2C)`` for the voxels). Never
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
        out = out.contiguous(memory_format=torch.channels_last_3d)
        at, v = self.items.index, self.values
        rows = _rows(normalized.contiguous(memory_format=torch.channels_last_3d)).index_select(0, at)
        _rows(out).index_copy_(0, at, torch.addcmul(v[:, c:], rows, 1 + v[:, :c]))
        return out

    def dense(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Full-size ``(γ, β)`` (for checks; the decoder uses :meth:`apply`): β is the
        modulation of zeros, 1 + γ + β that of ones."""
        zeros = torch.zeros_like(self.scale, memory_format=torch.channels_last_3d)
        beta = self.apply(zeros)
        return self.apply(zeros + 1) - beta - 1, beta


def grown_support(prompt: torch.Tensor, halo: int) -> torch.Tensor:
    """``(D, H, W)`` bool: voxels within ``halo`` (chessboard distance) of a non-zero voxel of
    the batch-of-one ``prompt`` ``(1, C, D, H, W)``: where γβ may differ from the zero field."""
    support = (prompt[0] != 0).any(0)
    if halo > 0 and bool(support.any()):  # (scipy's max filter is separable: ~8x faster here)
        grown = ndimage.maximum_filter(support.cpu().numpy(), size=2 * halo + 1, mode="constant", cval=0)
        support = torch.from_numpy(grown).to(support.device)
    return support


def _boxes_of(grown: torch.Tensor) -> list[tuple[slice, slice, slice]]:
    """One box (z, y, x slices) per 26-connected group of ``grown``."""
    labels, _ = ndimage.label(grown.cpu().numpy(), structure=np.ones((3, 3, 3), bool))
    return [b for b in ndimage.find_objects(labels) if b is not None]


def _rows(t: torch.Tensor) -> torch.Tensor:
    """``(D·H·W, C)`` view of the batch-of-one channels-last ``(1, C, D, H, W)`` ``t``, one row
    per voxel (z, y, x order): writing into it writes into ``t``."""
    return t.permute(0, 2, 3, 4, 1).view(-1, t.shape[1])


class Voxels(NamedTuple):
    """The voxel-by-voxel plan: ``coords`` ``(N, 3)`` (z, y, x) of the voxels to recompute, in
    raster order, their flat ``index`` ``(N,)`` into the grid, and ``box`` (z, y, x slices)
    bounding them."""

    box: tuple[slice, slice, slice]
    coords: torch.Tensor
    index: torch.Tensor


def _voxels_of(grown: torch.Tensor) -> Voxels:
    coords = grown.nonzero()
    lo, hi = coords.min(0).values.tolist(), (coords.max(0).values + 1).tolist()
    h, w = grown.shape[1:]
    index = (coords[:, 0] * h + coords[:, 1]) * w + coords[:, 2]
    return Voxels(tuple(slice(a, b) for a, b in zip(lo, hi)), coords, index)


#: measured cost per recomputed voxel of the voxel-by-voxel plan relative to the dense
#: convolution's (128 hidden → 2C, 2 threads, supports of the bundled CT's organs and of a
#: patch-filling organ, ``benchmarks/fold_plans.py``: 2.0-2.2 on 32³ grids, 2.0-2.1 on 16³;
#: the dense convolution runs Winograd F(4, 3) along z, :mod:`ctsam3d.modeling.winograd`,
#: the gathered voxels a plain product)
VOXEL_COST = {32: 2.1, 0: 2.0}
#: narrowest γβ conv (hidden channels · kernel taps per output voxel) recomputed voxel by
#: voxel: for narrow ones the gathering and bookkeeping cost more than the convolution they
#: save (``ctsam3d-lite``, 16 hidden × 1 tap: decode 5 % slower with it; the paper's 128 × 27:
#: faster)
MIN_VOXEL_WIDTH = 512
#: voxels whose taps are gathered and multiplied at once (a 28 MB gather for 128 hidden, 3³)
VOXEL_CHUNK = 2048


def voxel_cost(size) -> float:
    """:data:`VOXEL_COST` for a grid of ``size``: the entry of the largest edge not above its
    smallest edge."""
    return VOXEL_COST[max(e for e in VOXEL_COST if e <= min(size))]


#: fixed cost of one more box (one more convolution call), in output voxels; measured on the
#: 32³ γβ convs (2 threads): 16 boxes of 2 z planes cost more than 8 of 4 planes despite 10 %
#: fewer voxels
BOX_OVERHEAD_VOXELS = 256


def needed_voxels(prompt: torch.Tensor, halo: int, interior: Interior | None = None) -> torch.Tensor:
    """``(D, H, W)`` bool: where γβ must be recomputed, the :func:`grown_support` less the
    constant ``interior``."""
    grown = grown_support(prompt, halo)
    if interior is not None:
        grown = grown.clone()
        grown[interior.box] &= ~interior.mask[0, 0]
    return grown


def boxes_cost(boxes, size) -> float:
    """Estimated work of recomputing ``boxes`` as a fraction of the dense convolution's over a
    grid of ``size`` (each box's voxels plus :data:`BOX_OVERHEAD_VOXELS`)."""
    return sum(int(np.prod([s.stop - s.start for s in b])) + BOX_OVERHEAD_VOXELS for b in boxes) / int(np.prod(size))


def voxels_cost(needed: torch.Tensor) -> float:
    """Estimated work of recomputing the ``needed`` voxels one by one, as a fraction of the
    dense convolution's (:data:`VOXEL_COST` per voxel)."""
    return int(needed.sum()) * voxel_cost(needed.shape) / needed.numel()


def plan_recompute(prompt: torch.Tensor, halo: int, interior: Interior | None = None, width: int = MIN_VOXEL_WIDTH):
    """Where to recompute γβ exactly, the cheaper of: one box per connected group of the grown
    support less the ``interior`` (compact supports, e.g. one click), or each voxel of it
    (spread or curved supports, e.g. a mandible's previous mask, an organ's surface) when the
    γβ conv is at least :data:`MIN_VOXEL_WIDTH` wide (``width``: hidden channels · taps). Returns
    ``(cost, kind, items)``: the estimated work as a fraction of the dense convolution's,
    ``kind`` ``"boxes"`` (``items`` a list of slice triples) or ``"voxels"`` (``items`` a
    :class:`Voxels`)."""
    grown = needed_voxels(prompt, halo, interior)
    if not bool(grown.any()):
        return 0.0, "boxes", []
    boxes = _boxes_of(grown)
    by_boxes = boxes_cost(boxes, grown.shape)
    by_voxel = voxels_cost(grown) if width >= MIN_VOXEL_WIDTH else float("inf")
    if by_boxes <= by_voxel:
        return by_boxes, "boxes", boxes
    return by_voxel, "voxels", _voxels_of(grown)


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
    say: per norm a list with one ``(1, 2C, *box)`` per box, or ``(N, 2C)`` for the voxels
    (see :class:`FoldedModulation`). For boxes all norms' shared convs run in one pass on the
    prompt around each box; for voxels each norm's on the prompt around their bounding box."""
    hs = norms[0].mlp_shared[0].padding[0]  # every SpadeNorm's shared conv: 3×3×3, padding 1
    hg = norms[0].mlp_gamma.padding[0]  # the norms of a block share their γβ kernel
    if kind == "voxels":
        return [_voxel_values(norm, prompt, items, hs, hg) for norm in norms]
    ws, bs = shared_weights(norms)
    split = [n.mlp_shared[0].out_channels for n in norms]
    out = [[] for _ in norms]
    for box in items:
        acts = _box_activation(prompt, box, ws, bs, hs, hg).split(split, 1)
        for i, (norm, a) in enumerate(zip(norms, acts)):
            w, b = gamma_beta_weights(norm)
            out[i].append(conv3d(a.contiguous(memory_format=torch.channels_last_3d), w, b, 0))
    return out


def _voxel_values(norm, prompt: torch.Tensor, voxels: Voxels, hs: int, hg: int) -> torch.Tensor:
    """Exact γβ ``(N, 2C)`` of ``norm`` at each of ``voxels``: the shared conv's activation
    over their bounding box (grown by the γβ conv's reach ``hg``), then per chunk of voxels
    their ``(2 hg + 1)³`` taps gathered into rows, one row per voxel, and convolved by
    :func:`gamma_beta_pointwise` (one matrix product; oneDNN's is ~10 % faster than
    ``torch.addmm`` here)."""
    shared = norm.mlp_shared[0]
    a = _box_activation(prompt, voxels.box, shared.weight, shared.bias, hs, hg)
    a = a.contiguous(memory_format=torch.channels_last_3d)
    hidden, (_, py, px) = a.shape[1], a.shape[2:]
    rows = _rows(a)
    k = torch.arange(2 * hg + 1, device=a.device)
    taps = ((k[:, None, None] * py + k[None, :, None]) * px + k[None, None, :]).reshape(-1)
    rel = voxels.coords - torch.tensor([s.start for s in voxels.box], device=a.device)
    first = (rel[:, 0] * py + rel[:, 1]) * px + rel[:, 2]  # each voxel's tap (0, 0, 0) in ``a``
    weight = gamma_beta_pointwise(norm)
    _, bias = gamma_beta_weights(norm)
    n, (c2, width) = first.numel(), weight.shape[:2]
    out = a.new_empty((n, c2))
    cols = a.new_empty((min(n, VOXEL_CHUNK), width))
    for s in range(0, n, VOXEL_CHUNK):
        e = min(s + VOXEL_CHUNK, n)
        gathered = cols[: e - s]
        torch.index_select(rows, 0, (first[s:e, None] + taps).reshape(-1), out=gathered.view(-1, hidden))
        # rows as a channels-last (1, k, rows, 1, 1) grid: the 1×1×1 conv is their matrix product
        y = conv3d(gathered.view(1, e - s, 1, 1, width).permute(0, 4, 1, 2, 3), weight, bias, 0)
        out[s:e] = y.permute(0, 2, 3, 4, 1).reshape(e - s, c2)
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
    width = min(n.mlp_gamma.in_channels * n.mlp_gamma.kernel_size[0] ** 3 for n in norms)
    cost, kind, items = plan_recompute(prompt, halo, interior, width)
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
