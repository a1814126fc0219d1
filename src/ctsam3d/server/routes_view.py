"""The web page's display volume: the session's CT, optionally at a coarser grid (``/api/.../view``).

A viewer without GPU acceleration (software WebGL: a VM, a remote desktop) needs seconds per
million voxels to prepare a volume's textures; a 512 x 512 x 300 CT took most of a minute to
open. The page therefore asks for a display volume of at most ``max_voxels`` voxels: the CT
averaged over blocks of ``f_i x f_j x f_k`` voxels (integer factors, raised first on the axis
whose displayed spacing is finest), on the same physical extent: spacing ``s * f``, origin at
the centre of the first block, same direction. Clicks still arrive as world millimetres and
are mapped onto the full-resolution CT (:mod:`.routes_web`); segmentation, masks and exports
stay at full resolution. The factors are in the response header ``X-Display-Factors``
(``f_i,f_j,f_k``). The body is a NIfTI-1 file: the session's gzip-compressed view at full
resolution, uncompressed when coarser (a 256 x 256 x 150 int16 volume is 20 MB: no time spent
compressing on the server and decompressing in the page).

Display volumes are cached per image and size (at most :data:`CACHE_ENTRIES`, least recently
used dropped).
"""

from __future__ import annotations

import math
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

import SimpleITK as sitk
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from .images import view_response

router = APIRouter(prefix="/api")

#: Display volumes kept in memory (NIfTI bytes): at most this many, and this many bytes in all.
CACHE_ENTRIES = 4
CACHE_BYTES = 160 * 2**20
#: ``max_voxels`` default: full resolution (the session's own view file).
FULL = 2**31 - 1
#: A coarse display volume has at most this many voxels; a larger ``max_voxels`` gets full
#: resolution (so no request makes the server build and keep a near-full-size copy).
MAX_COARSE_VOXELS = 32_000_000


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
    """Block mean of ``image`` over ``factors`` (i, j, k) voxels (ITK's BinShrink, rounded to the
    pixel type); partial last blocks are completed by repeating the edge voxels.

    The result keeps the pixel type, has ``ceil(size / f)`` voxels of spacing ``s * f`` and its
    voxel ``(0, 0, 0)`` at the centre of the first block.
    """
    if tuple(factors) == (1, 1, 1):
        return image
    pad = [(-n) % f for n, f in zip(image.GetSize(), factors)]
    if any(pad):
        image = sitk.ZeroFluxNeumannPad(image, [0, 0, 0], pad)
    return sitk.BinShrink(image, [int(f) for f in factors])


class DisplayCache:
    """LRU of ``(image key, factors) -> NIfTI bytes`` bounded in entries and bytes; one computation
    per key at a time (concurrent requests for the same volume wait for it)."""

    def __init__(self, entries: int = CACHE_ENTRIES, max_bytes: int = CACHE_BYTES):
        self.entries, self.max_bytes = entries, max_bytes
        self._data: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict = {}

    def get(self, key, make):
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        try:
            with key_lock:
                with self._lock:
                    if key in self._data:
                        return self._data[key]
                value = make()
                if len(value) <= self.max_bytes // 2:
                    with self._lock:
                        self._data[key] = value
                        while len(self._data) > self.entries or sum(map(len, self._data.values())) > self.max_bytes:
                            self._data.popitem(last=False)
                return value
        finally:
            with self._lock:
                self._key_locks.pop(key, None)


def _cache(request: Request) -> DisplayCache:
    app = request.app
    cache = getattr(app.state, "display_cache", None)
    if cache is None:
        cache = app.state.display_cache = DisplayCache()
    return cache


def _nifti_bytes(image: sitk.Image) -> bytes:
    with tempfile.TemporaryDirectory(prefix="ctsam3d-view-") as tmp:
        path = Path(tmp) / "view.nii"
        sitk.WriteImage(image, str(path), False)
        return path.read_bytes()


@router.get("/sessions/{session_id}/view")
def display_volume(request: Request, session_id: str,
                   max_voxels: int = Query(FULL, ge=1_000_000, le=FULL, description="largest display volume, voxels")):
    """The CT for display, block-averaged to at most ``max_voxels`` voxels (see the module docstring)."""
    ws = request.app.state.ctx.store.get(session_id)
    image = ws.image
    factors = (1, 1, 1)
    if max_voxels <= MAX_COARSE_VOXELS:
        factors = display_factors(image.GetSize(), image.GetSpacing(), max_voxels)
    headers = {"X-Display-Factors": ",".join(map(str, factors)), "Cache-Control": "no-store"}
    if factors == (1, 1, 1):
        return view_response(ws.view_path, headers=headers)
    key = (ws.meta.get("image_key") or session_id, factors)

    def make() -> bytes:
        with request.app.state.ctx.models.gate:  # pixels of a shared image: see server/images.py
            small = downsample(image, factors)
        return _nifti_bytes(small)

    data = _cache(request).get(key, make)
    return Response(data, media_type="application/octet-stream", headers=headers)  # plain NIfTI-1
