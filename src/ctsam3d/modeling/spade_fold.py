"""Folding the constant part of SPADE for spatially sparse prompts (exact, inference only).

A SPADE norm computes ``γβ = W_γβ ∗ ReLU(W_s ∗ P + b_s) + b_γβ`` from the prompt ``P`` at its
scale (both convs zero-padded). Wherever ``P`` is zero in a voxel's whole receptive field
(2 voxels for 3×3×3 convs), ``γβ`` equals that of an all-zero prompt, a prompt-independent
field (constant inside, with a border pattern from the zero padding) that is computed once
per size and cached. So for a sparse prompt — the first click of a patch and every patch that
cross-patch expansion opens, where the previous mask is exactly zero — ``γβ`` is the cached
field plus exact recomputation in boxes around the clicks. This removes most of the
reference decoder's cost (the γ/β convs are ~60 % of its FLOPs) without changing the function;
dense prompts (a non-zero previous mask) take the ordinary path.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from .layers import conv3d

#: take the dense path when the boxes cover more than this fraction of the grid
MAX_BOX_FRACTION = 0.8


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


def sparse_boxes(prompt: torch.Tensor, halo: int) -> list[tuple[slice, slice, slice]] | None:
    """Boxes (z, y, x slices) covering every voxel within ``halo`` of a non-zero prompt voxel,
    one per connected group; ``None`` when they cover too much of the grid for folding to pay."""
    support = (prompt[0] != 0).any(0).cpu().numpy()
    size = support.shape
    if not support.any():
        return []
    grown = ndimage.binary_dilation(support, structure=np.ones((3, 3, 3), bool), iterations=halo)
    labels, _ = ndimage.label(grown, structure=np.ones((3, 3, 3), bool))
    boxes = [b for b in ndimage.find_objects(labels) if b is not None]
    covered = sum(int(np.prod([s.stop - s.start for s in b])) for b in boxes)
    if covered > MAX_BOX_FRACTION * int(np.prod(size)):
        return None
    return boxes


def _exact_in_box(norm, prompt: torch.Tensor, box: tuple[slice, slice, slice]) -> torch.Tensor:
    """Exact γβ ``(1, 2C, *box size)`` inside ``box``, reproducing the zero padding of both convs."""
    size = prompt.shape[2:]
    hg = norm.mlp_gamma.padding[0]
    hs = norm.mlp_shared[0].padding[0]
    lo = [s.start - hg - hs for s in box]
    hi = [s.stop + hg + hs for s in box]
    src = prompt[:, :, max(lo[0], 0):min(hi[0], size[0]), max(lo[1], 0):min(hi[1], size[1]),
                 max(lo[2], 0):min(hi[2], size[2])]
    pads = []
    for d in (2, 1, 0):  # F.pad order: last dim first
        pads += [max(-lo[d], 0), max(hi[d] - size[d], 0)]
    if any(pads):
        src = F.pad(src, pads)
    shared = norm.mlp_shared[0]
    a = F.relu(conv3d(src.contiguous(memory_format=torch.channels_last_3d), shared.weight, shared.bias, 0))
    # a covers box ± hg; outside the grid it must be zero (the γβ conv's zero padding)
    a_lo = [s.start - hg for s in box]
    for d in range(3):
        n_before = max(-a_lo[d], 0)
        n_after = max(a_lo[d] + a.shape[2 + d] - size[d], 0)
        if n_before or n_after:
            if n_before:
                a.narrow(2 + d, 0, n_before).zero_()
            if n_after:
                a.narrow(2 + d, a.shape[2 + d] - n_after, n_after).zero_()
    w, b = _gb_weights(norm)
    return conv3d(a, w, b, 0)


def folded_modulation(norms, prompt: torch.Tensor):
    """For a batch-of-one inference prompt at this scale, per norm
    ``(γ0, β0, [(box, γ, β), ...])``: the cached zero-prompt fields ``(1, C, *size)`` and exact
    values inside the boxes (apply with :func:`apply_folded`); ``None`` when the prompt is dense
    (use the ordinary path)."""
    if prompt.shape[0] != 1 or torch.is_grad_enabled() or prompt.device.type != "cpu":
        return None  # (on a GPU the dense path is fast and avoids a device sync)
    halo = max(n.mlp_gamma.padding[0] + n.mlp_shared[0].padding[0] for n in norms)
    boxes = sparse_boxes(prompt, halo)
    if boxes is None:
        return None
    size = tuple(prompt.shape[2:])
    out = []
    for norm in norms:
        c = norm.mlp_gamma.out_channels
        field = zero_prompt_field(norm, size, prompt)
        exact = []
        for box in boxes:
            gb = _exact_in_box(norm, prompt, box)
            exact.append(((slice(None), slice(None)) + tuple(box), gb[:, :c], gb[:, c:]))
        out.append((field[:, :c], field[:, c:], exact))
    return out


def apply_folded(normalized: torch.Tensor, folded) -> torch.Tensor:
    """``normalized · (1 + γ) + β`` with γ, β from :func:`folded_modulation` (one norm's entry)."""
    g0, b0, exact = folded
    out = normalized * (1 + g0) + b0
    for box, g, b in exact:
        out[box] = normalized[box] * (1 + g) + b
    return out
