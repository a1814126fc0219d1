"""Click maps and their resizing to every decoder scale (no weights).

A prompt is a ``(B, 3, D, H, W)`` float tensor on the patch grid, channels:

0. positive click map, 1. negative click map, 2. previous-mask probability (zeros before the
first click).

Clicks are **patch voxel indices (z, y, x)**. Each becomes a 3D Gaussian (σ = ``sigma``
voxels, truncated to a cube of ``radius`` voxels either side, values below float32 eps·max set
to 0) centred exactly on the clicked voxel, value 1 there.

Two behaviours (``reference`` flag, from ``ModelConfig.reference_exact``):

* default (models we train): overlapping Gaussians are combined with the maximum (a click never
  overwrites another); coarse scales receive click maps by **max pooling** (a click's peak lands
  on the coarse voxel containing the click at every scale) and the previous mask by average
  pooling.
* reference-exact (released CT-SAM3D): each Gaussian is written over the map (later clicks win),
  each channel is then min–max normalised, and every scale receives the prompt by trilinear
  resizing (``align_corners=False``) — a σ = 2 click can vanish at 4³ and 2³. A click up to
  ``radius`` voxels outside the patch draws the part of its Gaussian inside (rescaled to peak
  1 by the min–max step when it is alone), as the released prompt encoder does.

Clicks outside the patch (reference-exact: farther than ``radius`` voxels) are dropped in both
modes and reported (returned and logged); the released code draws nothing for a click
``radius + 1`` voxels out and raises beyond that.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..errors import ClickError

log = logging.getLogger(__name__)

Click = tuple[int, int, int]


def gaussian_kernel(sigma: float = 2.0, radius: int = 8, device=None) -> torch.Tensor:
    """``(2r+1, 2r+1, 2r+1)`` float32 Gaussian, 1 at the centre; tiny values set to 0."""
    ax = torch.arange(-radius, radius + 1, dtype=torch.float32, device=device)
    d2 = ax.view(-1, 1, 1) ** 2 + ax.view(1, -1, 1) ** 2 + ax.view(1, 1, -1) ** 2
    h = torch.exp(-d2 / (2 * sigma * sigma))
    h[h < torch.finfo(h.dtype).eps * h.max()] = 0
    return h


def _as_click(c, what: str) -> Click:
    try:
        vals = [float(v) for v in c]
    except TypeError:
        raise ClickError(f"{what}: a click must be (z, y, x), got {c!r}") from None
    if len(vals) != 3 or not all(math.isfinite(v) for v in vals):
        raise ClickError(f"{what}: a click must be 3 finite numbers (z, y, x), got {c!r}")
    return tuple(int(round(v)) for v in vals)  # type: ignore[return-value]


def render_click_maps(
    pos_zyx: Sequence[Sequence[Sequence[float]]],
    neg_zyx: Sequence[Sequence[Sequence[float]]],
    size: tuple[int, int, int],
    *,
    sigma: float = 2.0,
    radius: int = 8,
    reference: bool = False,
    device=None,
) -> tuple[torch.Tensor, list[tuple[int, str, Click]]]:
    """Render click maps.

    Args:
        pos_zyx, neg_zyx: per batch item, a list of clicks (z, y, x) in patch voxels
            (rounded to the nearest voxel). Both lists have length B.
        size: patch size (D, H, W).
    Returns:
        ``(maps (B, 2, D, H, W) float32, dropped)`` where ``dropped`` lists
        ``(batch index, "pos"|"neg", (z, y, x))`` of clicks outside the patch.
    Raises:
        ClickError: malformed clicks or batch lengths that differ.
    """
    if len(pos_zyx) != len(neg_zyx):
        raise ClickError(
            f"pos_zyx and neg_zyx must have one list per batch item, got {len(pos_zyx)} and {len(neg_zyx)}"
        )
    b = len(pos_zyx)
    d, h, w = (int(s) for s in size)
    maps = torch.zeros((b, 2, d, h, w), dtype=torch.float32, device=device)
    kern = gaussian_kernel(sigma, radius, device=device)
    r = radius
    dropped: list[tuple[int, str, Click]] = []
    for i in range(b):
        for ch, (name, clicks) in enumerate((("pos", pos_zyx[i]), ("neg", neg_zyx[i]))):
            for raw in clicks:
                z, y, x = _as_click(raw, f"{name}_zyx[{i}]")
                reach = r if reference else 0  # the reference draws the in-patch part of a click <= r outside
                if not (-reach <= z < d + reach and -reach <= y < h + reach and -reach <= x < w + reach):
                    dropped.append((i, name, (z, y, x)))
                    continue
                z0, z1 = max(z - r, 0), min(z + r + 1, d)
                y0, y1 = max(y - r, 0), min(y + r + 1, h)
                x0, x1 = max(x - r, 0), min(x + r + 1, w)
                patch = kern[z0 - z + r : z1 - z + r, y0 - y + r : y1 - y + r, x0 - x + r : x1 - x + r]
                dst = maps[i, ch, z0:z1, y0:y1, x0:x1]
                if reference:
                    dst.copy_(patch)
                else:
                    torch.maximum(dst, patch, out=dst)
    if reference:
        for i in range(b):
            for ch in range(2):
                m = maps[i, ch]
                if m.sum() != 0:
                    lo, hi = m.min(), m.max()
                    maps[i, ch] = (m - lo) / (hi - lo)
    if dropped:
        log.warning("dropped %d click(s) outside the %s patch: %s", len(dropped), (d, h, w), dropped)
    return maps, dropped


def build_prompt(click_maps: torch.Tensor, prev_mask: torch.Tensor | None) -> torch.Tensor:
    """Concatenate ``(B, 2, D, H, W)`` click maps and ``(B, 1, D, H, W)`` previous-mask
    probabilities (zeros when ``None``) into the ``(B, 3, D, H, W)`` prompt."""
    b, _, *size = click_maps.shape
    if prev_mask is None:
        prev_mask = click_maps.new_zeros((b, 1, *size))
    else:
        prev_mask = torch.as_tensor(prev_mask, dtype=click_maps.dtype, device=click_maps.device)
        if tuple(prev_mask.shape) != (b, 1, *size):
            raise ClickError(
                f"prev_mask must have shape {(b, 1, *size)} (B, 1, D, H, W), got {tuple(prev_mask.shape)}"
            )
    return torch.cat([click_maps, prev_mask], dim=1)


def resize_prompt(prompt: torch.Tensor, size: Sequence[int], *, reference: bool = False) -> torch.Tensor:
    """Resize a ``(B, 3, D, H, W)`` prompt to a decoder scale ``size`` (≤ the patch size).

    Default: click channels by adaptive max pooling (peaks survive), previous mask by adaptive
    average pooling. Reference: trilinear interpolation (``align_corners=False``).
    """
    size = tuple(int(s) for s in size)
    if tuple(prompt.shape[2:]) == size:
        return prompt
    if reference:
        return F.interpolate(prompt, size=size, mode="trilinear", align_corners=False)
    clicks = F.adaptive_max_pool3d(prompt[:, :2], size)
    prev = F.adaptive_avg_pool3d(prompt[:, 2:], size)
    return torch.cat([clicks, prev], dim=1)


class PromptPyramid:
    """The prompt resized to each decoder scale, computed once per scale per decode.

    Default mode pools each scale from the closest finer scale already computed when sizes
    divide evenly (max of maxima / mean of equal-block means: identical to pooling from the
    full patch, but cheaper); reference mode always interpolates from the full-size prompt.
    """

    def __init__(self, prompt: torch.Tensor, *, reference: bool = False) -> None:
        self.reference = reference
        self._cache: dict[tuple[int, ...], torch.Tensor] = {tuple(prompt.shape[2:]): prompt}

    def at(self, size: Sequence[int]) -> torch.Tensor:
        """The prompt at ``size`` (z, y, x) voxels, ``(B, 3, *size)``."""
        size = tuple(int(s) for s in size)
        if size in self._cache:
            return self._cache[size]
        full = next(iter(self._cache.values()))
        if self.reference:
            out = resize_prompt(full, size, reference=True)
        else:
            # halve step by step from the smallest cached finer scale while sizes divide evenly
            finer = [k for k in self._cache if all(a % b == 0 and a >= b for a, b in zip(k, size))]
            cur = min(finer, key=lambda k: k[0] * k[1] * k[2]) if finer else tuple(full.shape[2:])
            out = self._cache[cur] if finer else full
            while cur != size:
                nxt = tuple(c // 2 if (c // 2) % s == 0 and c // 2 >= s else s for c, s in zip(cur, size))
                out = resize_prompt(out, nxt)
                self._cache[nxt] = out
                cur = nxt
        self._cache[size] = out
        return out
