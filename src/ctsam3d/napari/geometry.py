"""The napari transform of a SimpleITK image, and back (no napari import).

napari maps a data index ``(k, j, i)`` to world ``affine @ (scale * index + translate)``. With
world = LPS in ``(z, y, x)`` order, ``scale`` = spacing ``(sk, sj, si)``, ``affine`` = the
image's direction with both axes reversed, and ``translate`` = ``affine.T @ origin`` reversed,
this is exactly ``origin + direction @ (spacing * ijk)`` (ITK's index -> LPS) reversed.

The prompt layers (Points, Shapes) carry the same transform, so their data are continuous voxel
indices ``(k, j, i)`` of the CT: :func:`index_to_lps` / :func:`lps_to_index` map them.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..geometry import index_to_lps as _index_to_lps
from ..geometry import lps_to_index as _lps_to_index

__all__ = ["layer_transform", "image_from_layer_data", "world_to_lps", "index_to_lps", "lps_to_index"]


def layer_transform(image: sitk.Image) -> dict:
    """``{"scale", "translate", "affine"}`` keyword arguments for an Image/Labels layer of ``image``."""
    d = np.asarray(image.GetDirection(), float).reshape(3, 3)[::-1, ::-1]
    origin = np.asarray(image.GetOrigin(), float)[::-1]
    affine = np.eye(4)
    affine[:3, :3] = d
    return {"scale": tuple(float(s) for s in image.GetSpacing()[::-1]),
            "translate": tuple(float(v) for v in d.T @ origin), "affine": affine}


def image_from_layer_data(data, scale=(1.0, 1.0, 1.0), translate=(0.0, 0.0, 0.0)) -> sitk.Image:
    """A SimpleITK image from a napari array ``[k, j, i]`` with axis-aligned scale / translate
    (a layer not opened by the ctsam3d reader): identity direction, spacing and origin reversed."""
    img = sitk.GetImageFromArray(np.asarray(data))
    img.SetSpacing(tuple(float(s) for s in np.asarray(scale)[-3:][::-1]))
    img.SetOrigin(tuple(float(v) for v in np.asarray(translate)[-3:][::-1]))
    return img


def world_to_lps(points) -> np.ndarray:
    """napari world points ``(N, 3)`` ``(z, y, x)`` -> LPS mm ``(N, 3)``."""
    return np.asarray(points, float).reshape(-1, 3)[:, ::-1].copy()


def index_to_lps(image: sitk.Image, index_kji) -> np.ndarray:
    """Continuous voxel indices ``(N, 3)`` ``(k, j, i)`` of ``image`` -> LPS mm ``(N, 3)``
    (:func:`ctsam3d.geometry.index_to_lps` in napari's axis order)."""
    return _index_to_lps(image, np.asarray(index_kji, float).reshape(-1, 3)[:, ::-1])


def lps_to_index(image: sitk.Image, lps) -> np.ndarray:
    """LPS mm ``(N, 3)`` -> continuous voxel indices ``(N, 3)`` ``(k, j, i)`` of ``image``
    (:func:`ctsam3d.geometry.lps_to_index` in napari's axis order)."""
    return _lps_to_index(image, np.asarray(lps, float).reshape(-1, 3))[:, ::-1].copy()
