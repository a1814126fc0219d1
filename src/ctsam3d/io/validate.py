"""Validation of volume headers and voxels, before and after reading.

Everything here raises :class:`~ctsam3d.errors.InputError` or
:class:`~ctsam3d.errors.GeometryError` with one line that names the file and the problem.
Header checks run on the header alone (``sitk.ImageFileReader.ReadImageInformation``), so a
huge or malformed volume is refused before any voxel memory is allocated.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import GeometryError, InputError
from .memory import check_memory

#: Default largest volume accepted, in voxels (1.5e9: e.g. 1024 x 1024 x 1400; 3 GB as int16).
DEFAULT_MAX_VOXELS = 1_500_000_000
#: Environment variable that overrides :data:`DEFAULT_MAX_VOXELS`.
MAX_VOXELS_ENV = "CTSAM3D_MAX_VOXELS"

#: Tolerance on ``D^T D = I`` for a direction matrix to count as orthonormal.
DIRECTION_TOL = 1e-3


def max_voxels(override: int | None = None) -> int:
    """The voxel limit: ``override``, else ``$CTSAM3D_MAX_VOXELS``, else the default."""
    if override is not None:
        return int(override)
    env = os.environ.get(MAX_VOXELS_ENV)
    if env:
        try:
            return int(float(env))
        except ValueError:
            raise InputError(f"{MAX_VOXELS_ENV}={env!r} is not a number") from None
    return DEFAULT_MAX_VOXELS


@dataclass(frozen=True)
class Header:
    """Geometry read from a file header (no voxels). ``size``/``spacing`` are ``(i, j, k)``."""

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]
    components: int
    pixel_type: str

    @property
    def dimension(self) -> int:
        return len(self.size)


def _fmt_size(size) -> str:
    return " x ".join(str(int(s)) for s in size)


def check_header(h: Header, name: str, *, limit: int | None = None, max_memory: int | str | None = None,
                 kind: str = "other") -> None:
    """Refuse anything but a single-channel 3D volume of sane size, geometry and memory need.

    Args:
        h: the header.
        name: the file or folder name used in messages.
        limit: voxel limit (see :func:`max_voxels`).
        max_memory: memory limit in bytes (see :func:`ctsam3d.io.memory.memory_limit`).
        kind: ``"nifti"`` or ``"other"``: how many copies decoding makes (:mod:`ctsam3d.io.memory`).
    """
    size = list(h.size)
    if h.dimension == 4 and size[3] == 1:
        size = size[:3]
    if len(size) < 3 or (len(size) == 3 and min(size) == 1):
        extent = sum(1 for s in size if s > 1)
        what = ("a single voxel", "a 1D image (one line of voxels)", "a 2D image (a single slice)")[min(extent, 2)]
        raise InputError(f"{name}: is {what} (size {_fmt_size(h.size)}); a 3D CT volume is needed")
    if h.dimension != 3 and not (h.dimension == 4 and len(size) == 3):
        raise InputError(
            f"{name}: is a {h.dimension}D image (size {_fmt_size(h.size)}); a single 3D volume is needed"
        )
    if h.components != 1:
        raise InputError(
            f"{name}: has {h.components} values per voxel (colour or vector image); a scalar CT volume is needed"
        )
    n = int(np.prod([int(s) for s in size], dtype=np.int64))
    lim = max_voxels(limit)
    if n > lim:
        raise InputError(
            f"{name}: volume of {_fmt_size(size)} = {n:,} voxels exceeds the limit of {lim:,} "
            f"(set {MAX_VOXELS_ENV} to raise it)"
        )
    check_geometry(h.spacing[:3], h.direction, name)
    check_memory(n, h.pixel_type, name, kind=kind, components=h.components, limit=max_memory)


def check_geometry(spacing, direction, name: str) -> None:
    """Spacing must be finite and > 0; the 3x3 direction must be orthonormal."""
    sp = np.asarray(spacing, dtype=np.float64)
    if not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise GeometryError(
            f"{name}: voxel spacing {tuple(float(s) for s in sp)} mm is invalid (must be > 0 on every axis)"
        )
    d = np.asarray(direction, dtype=np.float64)
    if d.size == 16:  # 4D header with a trivial 4th axis
        d = d.reshape(4, 4)[:3, :3]
    d = d.reshape(3, 3)
    if not np.all(np.isfinite(d)) or np.max(np.abs(d.T @ d - np.eye(3))) > DIRECTION_TOL:
        raise GeometryError(
            f"{name}: direction matrix {tuple(round(float(v), 4) for v in d.ravel())} is not orthonormal"
        )


def check_finite(array: np.ndarray, name: str, *, chunk: int = 16) -> None:
    """Refuse NaN or infinite voxels (float arrays only; checked in z-chunks to bound memory)."""
    if not np.issubdtype(array.dtype, np.floating):
        return
    for z in range(0, array.shape[0], chunk):
        block = array[z : z + chunk]
        if not np.isfinite(block).all():
            bad = int(np.count_nonzero(~np.isfinite(array)))
            raise InputError(f"{name}: contains {bad:,} NaN or infinite voxels")


# --------------------------------------------------------------------------- NIfTI integrity
# NIfTI datatype codes of floating-point voxels -> numpy dtype character.
_NIFTI_FLOATS = {16: "f4", 64: "f8"}


@dataclass(frozen=True)
class _NiftiLayout:
    need: int  # bytes the file must hold: vox_offset + voxel data
    vox_offset: int
    float_dtype: np.dtype | None  # voxel dtype when floating point, else None


def _nifti_layout(head: bytes) -> _NiftiLayout | None:
    """Layout of a NIfTI-1/2 file from its header; None if the header is not NIfTI."""
    for endian in ("<", ">"):
        if len(head) >= 348 and struct.unpack(endian + "i", head[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", head[40:56])
            datatype, bitpix = struct.unpack(endian + "2h", head[70:74])
            vox_offset = int(struct.unpack(endian + "f", head[108:112])[0])
        elif len(head) >= 540 and struct.unpack(endian + "i", head[:4])[0] == 540:
            datatype, bitpix = struct.unpack(endian + "2h", head[12:16])
            dims = struct.unpack(endian + "8q", head[16:80])
            vox_offset = int(struct.unpack(endian + "q", head[168:176])[0])
        else:
            continue
        ndim = max(0, min(int(dims[0]), 7))
        shape = [max(int(d), 1) for d in dims[1 : 1 + ndim]]
        need = vox_offset + int(np.prod(shape, dtype=np.int64)) * max(int(bitpix), 8) // 8
        ftype = _NIFTI_FLOATS.get(int(datatype))
        return _NiftiLayout(need, vox_offset, np.dtype(endian + ftype) if ftype else None)
    return None


def _read_head(path: Path, n: int = 540) -> bytes:
    """The first ``n`` bytes of a file, decompressed when it is gzip; b"" if unreadable."""
    try:
        with open(path, "rb") as f:
            magic = f.read(2)
        opener = gzip.open if magic == b"\x1f\x8b" else open
        with opener(path, "rb") as f:
            return f.read(n)
    except (OSError, EOFError, zlib.error):
        return b""


def _nifti_geometry(head: bytes):
    """``(ndim, pixdim[1..3], sform_code, srow 3x4)`` of a NIfTI-1/2 header, or None if not NIfTI."""
    for endian in ("<", ">"):
        if len(head) >= 348 and struct.unpack(endian + "i", head[:4])[0] == 348:
            ndim = struct.unpack(endian + "h", head[40:42])[0]
            pixdim = struct.unpack(endian + "8f", head[76:108])
            sform = struct.unpack(endian + "h", head[254:256])[0]
            srow = np.array(struct.unpack(endian + "12f", head[280:328]), dtype=np.float64).reshape(3, 4)
        elif len(head) >= 540 and struct.unpack(endian + "i", head[:4])[0] == 540:
            ndim = struct.unpack(endian + "q", head[16:24])[0]
            pixdim = struct.unpack(endian + "8d", head[104:168])
            sform = struct.unpack(endian + "i", head[348:352])[0]
            srow = np.array(struct.unpack(endian + "12d", head[400:496]), dtype=np.float64).reshape(3, 4)
        else:
            continue
        return int(ndim), tuple(float(v) for v in pixdim[1:4]), int(sform), srow
    return None


def check_nifti_header(path: Path, name: str) -> None:
    """Refuse a NIfTI whose header codes a zero, negative or NaN voxel spacing.

    ITK's NIfTI reader silently replaces a zero or NaN ``pixdim`` by 1 mm (and rejects a
    zero-length sform column with an unrelated message), so the header is checked here,
    before ITK sees it: ``pixdim[1..3]`` of the spatial axes, and the sform's column lengths
    when the sform is in use (``sform_code > 0``).
    """
    geo = _nifti_geometry(_read_head(path))
    if geo is None:
        return
    ndim, pixdim, sform, srow = geo
    spatial = pixdim[: max(0, min(ndim, 3))]
    if any(not np.isfinite(v) or v <= 0 for v in spatial):
        raise GeometryError(
            f"{name}: voxel spacing {tuple(spatial)} mm in the NIfTI header (pixdim) is invalid "
            "(must be > 0 on every axis)"
        )
    if sform > 0:
        lengths = np.linalg.norm(srow[:, : len(spatial)], axis=0) if np.all(np.isfinite(srow)) else [np.nan]
        if any(not np.isfinite(v) or v <= 0 for v in lengths):
            shown = tuple(round(float(v), 4) for v in lengths)
            raise GeometryError(
                f"{name}: voxel spacing {shown} mm in the NIfTI header (sform) is invalid (must be > 0 on every axis)"
            )


class _FiniteCounter:
    """Counts non-finite values in a byte stream of one float dtype, fed in arbitrary blocks."""

    def __init__(self, dtype: np.dtype, skip: int):
        self.dtype, self.skip, self.rest, self.bad = dtype, skip, b"", 0

    def feed(self, block: bytes) -> None:
        if self.skip:
            cut = min(self.skip, len(block))
            block, self.skip = block[cut:], self.skip - cut
        data = self.rest + block
        n = len(data) // self.dtype.itemsize * self.dtype.itemsize
        if n:
            self.bad += int(np.count_nonzero(~np.isfinite(np.frombuffer(data[:n], dtype=self.dtype))))
        self.rest = data[n:]


def _whole_integer_gzip(path: Path) -> bool:
    """True when a ``.nii.gz`` holds integer voxels (no NaN possible) and its gzip trailer (ISIZE,
    the decompressed length mod 2**32) equals the length its header needs. A file cut short ends
    in compressed data, not in that trailer, so it fails here and gets the full streamed check;
    a whole integer file is then decompressed once, by ITK, instead of twice."""
    try:
        with gzip.open(path, "rb") as f:
            head = f.read(540)
        with open(path, "rb") as f:
            f.seek(-4, os.SEEK_END)
            isize = struct.unpack("<I", f.read(4))[0]
    except (OSError, EOFError, zlib.error, struct.error):
        return False
    layout = _nifti_layout(head)
    return layout is not None and layout.float_dtype is None and isize == layout.need % (1 << 32)


def check_nifti_file(path: Path, name: str) -> None:
    """Refuse a truncated ``.nii`` / ``.nii.gz``, or one with NaN / infinite float voxels.

    ITK's NIfTI reader silently fills a truncated file with zeros and turns NaN into 0, so
    both are checked on the file itself: ``.nii.gz`` is decompressed as a stream (constant
    memory), ``.nii`` is memory-mapped.
    """
    p = str(path).lower()
    if p.endswith(".nii"):
        with open(path, "rb") as f:
            head = f.read(540)
        layout = _nifti_layout(head)
        have = os.path.getsize(path)
        if layout is None:
            return
        if have < layout.need:
            raise InputError(f"{name}: file is truncated ({have:,} of {layout.need:,} bytes)")
        if layout.float_dtype is not None:
            count = (layout.need - layout.vox_offset) // layout.float_dtype.itemsize
            values = np.memmap(path, dtype=layout.float_dtype, mode="r", offset=layout.vox_offset, shape=(count,))
            bad = sum(int(np.count_nonzero(~np.isfinite(values[i : i + (1 << 22)]))) for i in range(0, count, 1 << 22))
            del values
            if bad:
                raise InputError(f"{name}: contains {bad:,} NaN or infinite voxels")
    elif p.endswith(".nii.gz"):
        if _whole_integer_gzip(path):
            return
        total, head, layout, counter = 0, b"", None, None
        try:
            with gzip.open(path, "rb") as f:
                while True:
                    block = f.read(1 << 22)
                    if not block:
                        break
                    if layout is None:
                        head += block[: 540 - len(head)]
                        if len(head) >= 540 or len(block) < (1 << 22):
                            layout = _nifti_layout(head)
                            if layout is not None and layout.float_dtype is not None:
                                counter = _FiniteCounter(layout.float_dtype, layout.vox_offset - total)
                    if counter is not None:
                        counter.feed(block)
                    total += len(block)
        except (EOFError, OSError, zlib.error) as exc:
            raise InputError(f"{name}: compressed file is truncated or corrupt ({exc})") from None
        if layout is None:
            layout = _nifti_layout(head)
        if layout is not None and total < layout.need:
            raise InputError(f"{name}: file is truncated ({total:,} of {layout.need:,} bytes after decompression)")
        if counter is not None and counter.bad:
            raise InputError(f"{name}: contains {counter.bad:,} NaN or infinite voxels")
