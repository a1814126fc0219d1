"""The web page's display volume: the session's CT, optionally at a coarser grid (``/api/.../view.nii.gz``).

A viewer without GPU acceleration (software WebGL: a VM, a remote desktop) needs seconds per
million voxels to prepare a volume's textures; a 512 x 512 x 300 CT took most of a minute to
open. The page therefore asks for a display volume of at most ``max_voxels`` voxels: the CT
averaged over blocks of ``f_i x f_j x f_k`` voxels (integer factors, raised first on the axis
whose displayed spacing is finest), on the same physical extent: spacing ``s * f``, origin at
the centre of the first block, same direction. Clicks still arrive as world millimetres and
are mapped onto the full-resolution CT (:mod:`.routes_web`); segmentation, masks and exports
stay at full resolution. The factors are in the response header ``X-Display-Factors``
(``f_i,f_j,f_k``).

Display volumes are cached per image and size (at most :data:`CACHE_ENTRIES`, least recently
used dropped).
"""

from __future__ import annotations

import math
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, Response

router = APIRouter(prefix="/api")

#: Display volumes kept in memory (compressed NIfTI bytes).
CACHE_ENTRIES = 4
#: ``max_voxels`` at or above this means "full resolution" (the session's own view file).
FULL = 2**31 - 1


def display_factors(size_ijk, spacing_ijk, max_voxels: int) -> tuple[int, int, int]:
    """Integer block factors ``(f_i, f_j, f_k)`` so that ``prod(ceil(size / f)) <= max_voxels``.

    Each step raises the factor of the axis with the finest displayed spacing ``s * f`` (ties:
    the first such axis), so the display grid stays as isotropic as the CT allows.
    """
    f = [1, 1, 1]
    size = [int(n) for n in size_ijk]

    def voxels():
        return math.prod(math.ceil(n / k) for n, k in zip(size, f))

    while voxels() > max_voxels:
        candidates = [a for a in range(3) if f[a] < size[a]]
        if not candidates:
            break
        a = min(candidates, key=lambda ax: (spacing_ijk[ax] * f[ax], ax))
        f[a] += 1
    return tuple(f)


def downsample(image: sitk.Image, factors: tuple[int, int, int]) -> sitk.Image:
    """Block mean of ``image`` over ``factors`` (i, j, k) voxels; the last blocks may be partial.

    The result keeps the pixel type (rounded), has spacing ``s * f`` and its voxel ``(0, 0, 0)``
    at the centre of the first block.
    """
    if tuple(factors) == (1, 1, 1):
        return image
    arr = sitk.GetArrayViewFromImage(image)  # [k, j, i]
    f = (factors[2], factors[1], factors[0])  # z, y, x
    n_out = [math.ceil(n / k) for n, k in zip(arr.shape, f)]
    out = np.empty(n_out, dtype=np.float32)
    chunk = max(1, 16 // f[0])  # output slices per pass: bounded temporary memory
    acc = np.int64 if np.issubdtype(arr.dtype, np.integer) else np.float64
    for k0 in range(0, n_out[0], chunk):
        k1 = min(n_out[0], k0 + chunk)
        block = arr[k0 * f[0]:k1 * f[0]]
        pad = [(0, (k1 - k0) * f[0] - block.shape[0]), (0, n_out[1] * f[1] - arr.shape[1]), (0, n_out[2] * f[2] - arr.shape[2])]
        if any(p[1] for p in pad):  # partial last blocks: repeat the edge voxels
            block = np.pad(block, pad, mode="edge")
        sums = block.reshape(k1 - k0, f[0], n_out[1], f[1], n_out[2], f[2]).sum(axis=(1, 3, 5), dtype=acc)
        out[k0:k1] = sums / float(f[0] * f[1] * f[2])
    dtype = arr.dtype
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    small = sitk.GetImageFromArray(out.astype(dtype, copy=False))
    spacing = np.asarray(image.GetSpacing()) * np.asarray(factors)
    small.SetSpacing(tuple(float(s) for s in spacing))
    small.SetDirection(image.GetDirection())
    first_centre = [(f - 1) / 2.0 for f in factors]
    small.SetOrigin(image.TransformContinuousIndexToPhysicalPoint(first_centre))
    return small


class DisplayCache:
    """LRU of ``(image key, factors) -> compressed NIfTI bytes``; one computation per key at a time."""

    def __init__(self, entries: int = CACHE_ENTRIES):
        self.entries = entries
        self._data: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict = {}

    def get(self, key, make):
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._data:
                    return self._data[key]
            value = make()
            with self._lock:
                self._data[key] = value
                while len(self._data) > self.entries:
                    self._data.popitem(last=False)
                self._key_locks.pop(key, None)
            return value


def _cache(request: Request) -> DisplayCache:
    app = request.app
    cache = getattr(app.state, "display_cache", None)
    if cache is None:
        cache = app.state.display_cache = DisplayCache()
    return cache


def _nifti_bytes(image: sitk.Image) -> bytes:
    with tempfile.TemporaryDirectory(prefix="ctsam3d-view-") as tmp:
        path = Path(tmp) / "view.nii.gz"
        sitk.WriteImage(image, str(path), True, 1)
        return path.read_bytes()


@router.get("/sessions/{session_id}/view.nii.gz")
def display_volume(request: Request, session_id: str,
                   max_voxels: int = Query(FULL, ge=1_000_000, le=FULL, description="largest display volume, voxels")):
    """The CT for display, block-averaged to at most ``max_voxels`` voxels (see the module docstring)."""
    ws = request.app.state.ctx.store.get(session_id)
    image = ws.image
    factors = display_factors(image.GetSize(), image.GetSpacing(), max_voxels)
    headers = {"X-Display-Factors": ",".join(map(str, factors)), "Cache-Control": "no-store"}
    if factors == (1, 1, 1):
        return FileResponse(ws.view_path, media_type="application/gzip", headers=headers)
    key = (ws.meta.get("image_key") or session_id, factors)
    data = _cache(request).get(key, lambda: _nifti_bytes(downsample(image, factors)))
    return Response(data, media_type="application/gzip", headers=headers)
