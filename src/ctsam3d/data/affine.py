"""Patch affines: patch voxel index -> LPS mm -> cached-volume voxel index.

A patch is a ``(D, H, W)`` grid of ``spacing`` mm voxels, centred on ``center_lps``,
optionally rotated and scaled (augmentation). All matrices here are 4×4 float64 acting on
column vectors in **(x, y, z) order** — patch index ``(w, h, d)``, LPS ``(x, y, z)``,
volume index ``(i, j, k)`` — because that is the order of ``torch.nn.functional.affine_grid``;
numpy arrays and tensors stay indexed ``[z, y, x]``.

``theta_for_grid`` turns the composed map into the 3×4 ``theta`` of ``affine_grid`` with
``align_corners=True`` (normalised -1 / +1 = centre of the first / last voxel).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "patch_to_world",
    "world_to_index",
    "rotation_matrix",
    "theta_for_grid",
    "patch_corners_index",
]


def rotation_matrix(axis, angle_rad: float) -> np.ndarray:
    """3×3 rotation about ``axis`` (LPS, any length) by ``angle_rad`` (Rodrigues)."""
    a = np.asarray(axis, float)
    a = a / np.linalg.norm(a)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle_rad) * k + (1 - np.cos(angle_rad)) * (k @ k)


def patch_to_world(center_lps, spacing_mm: float, size_zyx, rotation=None, scale: float = 1.0) -> np.ndarray:
    """4×4 map from patch index ``(w, h, d, 1)`` to LPS mm ``(x, y, z, 1)``.

    ``p = center + R @ (scale * spacing * (idx - (n - 1) / 2))`` with ``n = (W, H, D)``.
    """
    n_xyz = np.asarray(size_zyx, float)[::-1]
    r = np.eye(3) if rotation is None else np.asarray(rotation, float)
    m = np.eye(4)
    m[:3, :3] = r * (scale * float(spacing_mm))
    m[:3, 3] = np.asarray(center_lps, float) - m[:3, :3] @ ((n_xyz - 1) / 2)
    return m


def world_to_index(origin_lps, spacing_zyx) -> np.ndarray:
    """4×4 map from LPS mm ``(x, y, z, 1)`` to voxel index ``(i, j, k, 1)`` of an
    identity-direction volume with ``origin_lps`` (voxel [0,0,0]) and ``spacing_zyx``."""
    s_xyz = np.asarray(spacing_zyx, float)[::-1]
    m = np.eye(4)
    m[:3, :3] = np.diag(1.0 / s_xyz)
    m[:3, 3] = -np.asarray(origin_lps, float) / s_xyz
    return m


def _normalize(size_zyx) -> np.ndarray:
    """4×4 map index (x, y, z) -> normalised [-1, 1] (align_corners=True)."""
    n = np.asarray(size_zyx, float)[::-1]
    m = np.eye(4)
    m[:3, :3] = np.diag(2.0 / np.maximum(n - 1, 1))
    m[:3, 3] = -1.0
    return m


def theta_for_grid(patch_to_index: np.ndarray, patch_size_zyx, volume_size_zyx) -> np.ndarray:
    """3×4 ``theta`` for ``affine_grid(theta, (1, 1, D, H, W), align_corners=True)``.

    Args:
        patch_to_index: 4×4 map patch index (w, h, d) -> volume index (i, j, k).
        patch_size_zyx: ``(D, H, W)`` of the output patch.
        volume_size_zyx: shape ``[z, y, x]`` of the sampled (possibly cropped) volume.
    """
    m = _normalize(volume_size_zyx) @ patch_to_index @ np.linalg.inv(_normalize(patch_size_zyx))
    return m[:3, :]


def patch_corners_index(patch_to_index: np.ndarray, patch_size_zyx) -> np.ndarray:
    """The 8 corner voxels of the patch as volume indices, ``(8, 3)`` in ``(i, j, k)`` order."""
    d, h, w = (int(v) - 1 for v in patch_size_zyx)
    c = np.array([[x, y, z, 1.0] for x in (0, w) for y in (0, h) for z in (0, d)])
    return (patch_to_index @ c.T).T[:, :3]
