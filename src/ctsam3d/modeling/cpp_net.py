"""Cross-patch prompt (CPP) net and heatmap peak extraction.

The CPP net is the reference's residual 3D U-Net (MONAI's ``UNet`` layout: instance norm,
PReLU), built by :mod:`.residual_unet` without importing MONAI. Input
``(B, 3, D, H, W)`` = [image of patch U, U's binary mask, image of neighbouring patch V] (with
C image channels: ``(B, 2C + 1, D, H, W)``, U's C channels, mask, V's C channels), all on
their own patch grids of the same size; output ``(B, 1, D, H, W)``: a raw heatmap in V of
where the structure continues (trained with MSE against a Gaussian, so ~1 at a good click).

:func:`heatmap_peaks` turns a heatmap into click positions (patch voxel indices of V).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from ..errors import InputError
from .residual_unet import ResidualUNet


def build_cpp_net(channels: tuple[int, ...], strides: tuple[int, ...], num_res_units: int, in_channels: int = 3) -> ResidualUNet:
    """The network of MONAI ``UNet(spatial_dims=3, in=in_channels, out=1, ..., norm=INSTANCE)``
    (same parameter names); ``in_channels`` = 2 · image channels + 1 (image U, mask U, image V)."""
    return ResidualUNet(in_channels, 1, tuple(channels), tuple(strides), num_res_units)


def heatmap_peaks(heatmap, threshold: float = 0.5, max_peaks: int = 3) -> list[tuple[int, int, int]]:
    """Local maxima of a heatmap, strongest first.

    Args:
        heatmap: ``(D, H, W)`` array or tensor (z, y, x) on the patch grid of V.
        threshold: keep peaks with value > threshold.
        max_peaks: at most this many peaks.
    Returns:
        list of patch voxel indices ``(z, y, x)``. A voxel is a peak when it equals the maximum
        of its 3×3×3 neighbourhood; on plateaus only one voxel per touching group is kept.
    """
    h = torch.as_tensor(np.asarray(heatmap) if not isinstance(heatmap, torch.Tensor) else heatmap)
    if h.ndim != 3:
        raise InputError(f"heatmap must be 3D (D, H, W), got shape {tuple(h.shape)}")
    if max_peaks <= 0:
        return []
    h = h.detach().float().cpu()
    hmax = F.max_pool3d(h[None, None], 3, stride=1, padding=1)[0, 0]
    cand = torch.nonzero((h == hmax) & (h > threshold))
    if cand.numel() == 0:
        return []
    vals = h[cand[:, 0], cand[:, 1], cand[:, 2]]
    order = torch.argsort(vals, descending=True, stable=True)
    peaks: list[tuple[int, int, int]] = []
    for idx in order.tolist():
        p = tuple(int(v) for v in cand[idx])
        if any(max(abs(a - b) for a, b in zip(p, q)) <= 1 for q in peaks):
            continue  # same plateau as a stronger/earlier peak
        peaks.append(p)
        if len(peaks) >= max_peaks:
            break
    return peaks
