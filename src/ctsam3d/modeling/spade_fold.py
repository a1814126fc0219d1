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
of them without changing the function (float rounding only). When the recomputation would
cost most of the dense work, or the grid is small, the ordinary dense path is taken.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from .layers import conv3d

#: take the dense path when the estimated recomputation exceeds this fraction of the dense work
MAX_RECOMPUTE_FRACTION = 0.8
#: smallest grid edge folded; coarser scales are cheap and take the dense path
MIN_FOLD_EDGE = 8


def _gb_weights(norm) -> tuple[torch.Tensor, torch.Tensor]:
    w = torch.cat([norm.mlp_gamma.weight, norm.mlp_beta.weight])
    b = torch.cat([norm.mlp_gamma.bias, norm.mlp_beta.bias])
    return w, b


def _key(norm, size, like: torch.Tensor) -> tuple:
    params = (norm.mlp_shared[0].weight, norm.mlp_shared[0].bias, norm.mlp_gamma.weight,
              norm.mlp_gamma.bias, norm.mlp_beta.weight, norm.mlp_beta.bias)
    return (tuple(size), like.device, like.dtype) + tuple((p.data_ptr(), p._version) for p in params)


def zero_prompt_field(norm, size, like: torch.Tensor) -> torch.Tensor:
    """``(1, 2C, *size)`` γβ of an all-zero prompt (cached on the norm module)."""
    cache = norm.__dict__.setdefault("_zero_field_cache", {})
    key = _key(norm, size, like)
    if key not in cache:
        cache.clear()  # weights changed or a new size: keep one entry
        shared = norm.mlp_shared[0]
        a0 = F.relu(shared.bias).to(like.dtype).view(1, -1, 1, 1, 1).expand(1, -1, *size)
        a0 = a0.contiguous(memory_format=torch.channels_last_3d)
        w, b = _gb_weights(norm)
        cache[key] = conv3d(a0, w, b, norm.mlp_gamma.padding[0])
    return cache[key]


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
    if halo > 0 and bool(support.any()):
        support = F.max_pool3d(support[None, None].float(), 2 * halo + 1, stride=1, padding=halo)[0, 0] > 0
    return support


def _tiles_of(grown: torch.Tensor, tile: int) -> tuple[torch.Tensor, ...]:
    size = grown.shape
    n = [-(-s // tile) for s in size]
    pads = []
    for d in (2, 1, 0):
        pads += [0, n[d] * tile - size[d]]
    if any(pads):
        grown = F.pad(grown[None].float(), pads)[0] > 0
    t = grown.view(n[0], tile, n[1], tile, n[2], tile).any(5).any(3).any(1)
    return t.nonzero(as_tuple=True)


def active_tiles(prompt: torch.Tensor, halo: int, tile: int) -> tuple[torch.Tensor, ...]:
    """Indices ``(iz, iy, ix)`` of the ``tile``³ tiles holding a voxel of
    :func:`grown_support`. Tiles are counted from the grid origin; the last tile along an axis
    may extend past the grid."""
    return _tiles_of(grown_support(prompt, halo), tile)


def _boxes_of(grown: torch.Tensor) -> list[tuple[slice, slice, slice]]:
    """One box (z, y, x slices) per 26-connected group of ``grown``."""
    labels, _ = ndimage.label(grown.cpu().numpy(), structure=np.ones((3, 3, 3), bool))
    return [b for b in ndimage.find_objects(labels) if b is not None]


def plan_recompute(prompt: torch.Tensor, halo: int):
    """Where to recompute γβ exactly, the cheapest of: one box per connected group of the grown
    support (best for compact supports, e.g. one click), or 8³ / 4³ tiles (best for spread or
    curved ones, e.g. a mandible's previous mask). Returns ``(cost, kind, items)`` with the
    estimated work as a fraction of the dense convolution's, ``kind`` ``"boxes"`` (``items`` a
    list of slice triples) or ``"tiles"`` (``items`` = ``(edge, (iz, iy, ix))``)."""
    grown = grown_support(prompt, halo)
    size = tuple(grown.shape)
    voxels = size[0] * size[1] * size[2]
    if not bool(grown.any()):
        return 0.0, "boxes", []
    boxes = _boxes_of(grown)
    best = (sum(int(np.prod([s.stop - s.start for s in b])) for b in boxes) / voxels, "boxes", boxes)
    for edge in tile_edges(size):
        found = _tiles_of(grown, edge)
        cost = found[0].numel() * edge**3 * (TILE4_COST if edge < 8 else 1.0) / voxels
        if cost < best[0]:
            best = (cost, "tiles", (edge, found))
    return best


def _exact(norm, actv: torch.Tensor, kind: str, items, size) -> torch.Tensor:
    """Exact ``(1, 2C, *size)`` γβ: the zero-prompt field, recomputed where ``kind``/``items``
    (non-empty, from :func:`plan_recompute`) say, from ``actv`` (the shared conv's ReLU output
    on the whole grid)."""
    field = zero_prompt_field(norm, size, actv)
    hg = norm.mlp_gamma.padding[0]
    w, b = _gb_weights(norm)
    if kind == "boxes":
        ap = F.pad(actv, (hg,) * 6) if hg else actv  # zeros outside the grid: the conv's padding
        gb = field.clone(memory_format=torch.channels_last_3d)
        for box in items:
            src = ap[(slice(None), slice(None)) + tuple(slice(s.start, s.stop + 2 * hg) for s in box)]
            gb[(slice(None), slice(None)) + tuple(box)] = conv3d(
                src.contiguous(memory_format=torch.channels_last_3d), w, b, 0)
        return gb
    tile, (iz, iy, ix) = items
    n = [-(-s // tile) for s in size]
    extra = [n[d] * tile - size[d] for d in range(3)]
    # zeros outside the grid: the γβ conv's zero padding (and don't-care voxels past the grid)
    ap = F.pad(actv, (hg, hg + extra[2], hg, hg + extra[1], hg, hg + extra[0]))
    span = tile + 2 * hg
    windows = ap[0].unfold(1, span, tile).unfold(2, span, tile).unfold(3, span, tile)  # (H, nz, ny, nx, s, s, s)
    batch = windows[:, iz, iy, ix].transpose(0, 1).contiguous(memory_format=torch.channels_last_3d)
    values = conv3d(batch, w, b, 0)  # (N, 2C, tile, tile, tile)
    gb = field if not any(extra) else F.pad(field, (0, extra[2], 0, extra[1], 0, extra[0]))
    gb = gb.clone(memory_format=torch.channels_last_3d)
    blocks = gb[0].unflatten(1, (n[0], tile)).unflatten(3, (n[1], tile)).unflatten(5, (n[2], tile))
    blocks.permute(1, 3, 5, 0, 2, 4, 6)[iz, iy, ix] = values  # writes through the view into gb
    return gb[:, :, : size[0], : size[1], : size[2]] if any(extra) else gb


def folded_modulation(norms, prompt: torch.Tensor):
    """For a batch-of-one inference prompt at this scale, per norm ``(γ, β)``, each
    ``(1, C, *size)``, from the cached zero-prompt field and exact values where the prompt
    reaches (:func:`plan_recompute`); ``None`` when the prompt is dense or the grid small (use
    the ordinary path)."""
    if prompt.shape[0] != 1 or torch.is_grad_enabled() or prompt.device.type != "cpu":
        return None  # (on a GPU the dense path is fast and avoids a device sync)
    size = tuple(prompt.shape[2:])
    if min(size) < MIN_FOLD_EDGE:
        return None
    halo = max(n.mlp_gamma.padding[0] + n.mlp_shared[0].padding[0] for n in norms)
    cost, kind, items = plan_recompute(prompt, halo)
    if cost > MAX_RECOMPUTE_FRACTION:
        return None
    out = []
    if not items:  # an all-zero prompt: the cached fields as they are
        for norm in norms:
            field, c = zero_prompt_field(norm, size, prompt), norm.mlp_gamma.out_channels
            out.append((field[:, :c], field[:, c:]))
        return out
    # both norms' shared convs in one pass over the prompt (cheap: 3 input channels; every
    # SpadeNorm's shared conv is 3×3×3 with padding 1)
    shared = [n.mlp_shared[0] for n in norms]
    wts = torch.cat([s.weight for s in shared])
    bias = torch.cat([s.bias for s in shared])
    actv = F.relu(conv3d(prompt, wts, bias, shared[0].padding[0])).split([s.out_channels for s in shared], 1)
    for norm, a in zip(norms, actv):
        c = norm.mlp_gamma.out_channels
        gb = _exact(norm, a, kind, items, size)
        out.append((gb[:, :c], gb[:, c:]))
    return out


def apply_folded(normalized: torch.Tensor, folded) -> torch.Tensor:
    """``normalized · (1 + γ) + β`` with ``(γ, β)`` from :func:`folded_modulation` (one norm's entry)."""
    gamma, beta = folded
    return torch.addcmul(beta, normalized, 1 + gamma)
