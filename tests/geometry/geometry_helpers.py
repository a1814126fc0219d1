"""Synthetic images in any orientation for geometry tests."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ctsam3d.geometry import direction_from_code


def rotation(axis, degrees: float) -> np.ndarray:
    """3x3 rotation matrix about ``axis`` (Rodrigues)."""
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.linalg.norm(a)
    t = np.deg2rad(degrees)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k


def make_image(array_zyx: np.ndarray, spacing, direction, origin=(0.0, 0.0, 0.0)) -> sitk.Image:
    """Image from a ``[k, j, i]`` array with the given geometry (direction: code or 3x3)."""
    img = sitk.GetImageFromArray(array_zyx)
    img.SetSpacing(tuple(float(s) for s in spacing))
    if isinstance(direction, str):
        direction = direction_from_code(direction)
    img.SetDirection(tuple(float(v) for v in np.asarray(direction, dtype=np.float64).ravel()))
    img.SetOrigin(tuple(float(v) for v in origin))
    return img


def blob_labels(shape_zyx, n_labels: int = 3, seed: int = 0) -> np.ndarray:
    """uint8 label map of a few overlapping ellipsoids (ids 1..n) and some single voxels."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.arange(s) for s in shape_zyx], indexing="ij")
    out = np.zeros(shape_zyx, dtype=np.uint8)
    for lab in range(1, n_labels + 1):
        c = [rng.uniform(0.25 * s, 0.75 * s) for s in shape_zyx]
        r = [rng.uniform(0.12 * s, 0.3 * s) for s in shape_zyx]
        inside = ((z - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((x - c[2]) / r[2]) ** 2 <= 1
        out[inside] = lab
    # isolated voxels, including on the border: the hardest case for a round trip
    for _ in range(6):
        idx = tuple(int(rng.integers(0, s)) for s in shape_zyx)
        out[idx] = n_labels + 1
    out[0, 0, 0] = out[-1, -1, -1] = n_labels + 2
    return out
