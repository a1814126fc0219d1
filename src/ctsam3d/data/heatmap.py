"""Batched depth maxima and Gaussian heatmaps in torch (CPU or GPU, no SciPy).

Used for CPP targets (a Gaussian at the deepest point of ``structure ∩ V``) and for the
batched click simulation on the GPU. Depth is measured by repeated 3×3×3 erosion (the
chessboard distance to the nearest outside voxel; the patch border counts as outside):
on an isotropic patch grid its maximum lies within a voxel or two of the Euclidean
distance-transform maximum, and it runs as a handful of pooling passes for a whole batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["deepest_points", "gaussian_heatmap"]


def _erode(cur: torch.Tensor) -> torch.Tensor:
    """3×3×3 erosion of a float {0,1} ``(B, 1, D, H, W)`` mask; outside the array counts as 0."""
    out = F.pad(1.0 - cur, (1, 1, 1, 1, 1, 1), value=1.0)
    for k in ((3, 1, 1), (1, 3, 1), (1, 1, 3)):  # separable: 9 comparisons instead of 27
        out = F.max_pool3d(out, k, stride=1)
    return 1.0 - out


def _deepest_set(m: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Last non-empty erosion of each item (float mask) and the number of erosions survived."""
    b = m.shape[0]
    last = m.clone()
    depth = torch.zeros(b, dtype=torch.long, device=m.device)
    cur = m
    for _ in range(steps):
        alive = cur.flatten(1).amax(1) > 0
        if not bool(alive.any()):
            break
        depth += alive.long()
        last = torch.where(alive.view(b, 1, 1, 1, 1), cur, last)
        cur = _erode(cur)
    return last, depth


def _closest_to_centroid(last: torch.Tensor) -> torch.Tensor:
    b, _, d, h, w = last.shape
    dev = last.device
    zz, yy, xx = torch.meshgrid(torch.arange(d, device=dev), torch.arange(h, device=dev), torch.arange(w, device=dev), indexing="ij")
    coords = torch.stack([zz, yy, xx]).float().view(1, 3, -1)
    wts = last.view(b, 1, -1)
    cen = (coords * wts).sum(-1) / wts.sum(-1).clamp_min(1.0)  # (B, 3)
    dist = ((coords - cen[:, :, None]) ** 2).sum(1)  # (B, N)
    dist = torch.where(wts[:, 0] > 0, dist, torch.full_like(dist, float("inf")))
    flat = dist.argmin(1)
    return torch.stack([flat // (h * w), (flat // w) % h, flat % w], dim=1)


def deepest_points(mask: torch.Tensor, max_iter: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The deepest voxel of each mask of a batch.

    Args:
        mask: bool/float ``(B, 1, D, H, W)`` (> 0.5 = inside).
        max_iter: erosion passes at most (default: half the largest patch side).

    Returns:
        ``(points, depth)``: long ``(B, 3)`` voxel indices ``(z, y, x)`` and long ``(B,)``
        depth in voxels (0 for an empty mask, whose point is ``(0, 0, 0)``). Among the
        deepest voxels, the one closest to their centroid is chosen (deterministic).
        On CPU each item is cropped to its bounding box first (same result, much faster).
    """
    m = ((mask > 0.5) if mask.dtype != torch.bool else mask).float()
    steps = max_iter if max_iter is not None else (max(m.shape[2:]) + 1) // 2
    if m.device.type != "cpu":
        last, depth = _deepest_set(m, steps)
        pts = _closest_to_centroid(last)
        return torch.where((depth > 0)[:, None], pts, torch.zeros_like(pts)), depth
    pts = torch.zeros(m.shape[0], 3, dtype=torch.long)
    depth = torch.zeros(m.shape[0], dtype=torch.long)
    for i in range(m.shape[0]):
        nz = torch.nonzero(m[i, 0])
        if len(nz) == 0:
            continue
        lo, hi = nz.min(0).values, nz.max(0).values + 1
        crop = m[i : i + 1, :, lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        last, dep = _deepest_set(crop, steps)
        pts[i] = _closest_to_centroid(last)[0] + lo
        depth[i] = dep[0]
    return pts, depth


def gaussian_heatmap(points: torch.Tensor, size_zyx, sigma: float, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Gaussian blobs (peak 1) at ``points``.

    Args:
        points: ``(B, 3)`` voxel indices ``(z, y, x)`` (float or long).
        size_zyx: ``(D, H, W)``.
        sigma: standard deviation in voxels.
        valid: optional bool ``(B,)``; invalid items get an all-zero map.

    Returns:
        float32 ``(B, 1, D, H, W)``.
    """
    d, h, w = (int(v) for v in size_zyx)
    dev = points.device
    p = points.float()
    gz = torch.exp(-((torch.arange(d, device=dev)[None] - p[:, 0:1]) ** 2) / (2 * sigma**2))
    gy = torch.exp(-((torch.arange(h, device=dev)[None] - p[:, 1:2]) ** 2) / (2 * sigma**2))
    gx = torch.exp(-((torch.arange(w, device=dev)[None] - p[:, 2:3]) ** 2) / (2 * sigma**2))
    out = gz[:, :, None, None] * gy[:, None, :, None] * gx[:, None, None, :]
    if valid is not None:
        out = out * valid.float().view(-1, 1, 1, 1)
    return out.unsqueeze(1)
