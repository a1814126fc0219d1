"""Bounding the memory a volume needs, from its header, before any voxel is decoded.

A few MB of compressed zeros can declare a volume of billions of voxels (a 2.7 MB ``.nii.gz``
of 1000 x 1000 x 1400 zeros decodes to 2.8 GB of int16). :func:`check_memory` estimates, from
the header alone, the peak memory that reading and working on the volume takes and refuses
the volume with one line when that exceeds the limit.

Estimate (bytes, added to what the process already holds), with ``b`` the stored bytes per
voxel (``16-bit signed integer`` -> 2) and ``n`` the voxel count::

    n * max(READ_COPIES * b,  b + PIPELINE_BYTES_PER_VOXEL)

* ``READ_COPIES``: 2 for NIfTI (ITK's NIfTI reader decodes into the NIfTI library's buffer,
  then copies into the image: measured 1.96 b per voxel), 1 for NRRD, MetaImage and DICOM
  series (measured 0.99 b).
* ``PIPELINE_BYTES_PER_VOXEL``: what the commands keep on the input grid besides the image
  (``segment``: the uint8 mask, its copy cast for writing, the writer's buffer; ``info``
  counts labels slab by slab and needs less).

Limit: ``max_memory=`` (Python), else ``$CTSAM3D_MAX_MEMORY`` (bytes, or with a unit: ``6G``,
``512M``, ``2.5GiB``; ``0`` or ``off`` switches the check off), else
:data:`MEMORY_FRACTION` of the memory available now (Linux ``MemAvailable``, or the room
left under the process's cgroup memory limit when that is smaller). Where the available
memory cannot be determined, only the voxel limit applies.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

#: Environment variable overriding the memory limit (bytes, or a size such as ``6G``; ``off``).
MAX_MEMORY_ENV = "CTSAM3D_MAX_MEMORY"
#: Fraction of the currently available memory that one volume may take by default.
MEMORY_FRACTION = 0.8
#: Peak copies of the stored voxels while a file of this kind is decoded (see module doc).
READ_COPIES = {"nifti": 2.0, "other": 1.0}
#: Bytes per voxel the pipeline keeps on the input grid besides the image itself.
PIPELINE_BYTES_PER_VOXEL = 3.0

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str, what: str = MAX_MEMORY_ENV) -> int | None:
    """``"6G"`` / ``"512MiB"`` / ``"1e9"`` -> bytes; ``"0"`` / ``"off"`` / ``"none"`` -> None (no limit).

    Raises:
        InputError: not a size.
    """
    t = str(text).strip().lower()
    if t in ("0", "off", "none", "no", "false"):
        return None
    m = re.fullmatch(r"([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([kmgt]?)(?:i?b)?", t)
    if not m:
        raise InputError(f"{what}={text!r} is not a memory size (e.g. 8G, 512M, or bytes; 'off' for no limit)")
    value = float(m.group(1)) * _UNITS[m.group(2)]
    return int(value) if value >= 1 else None


def _read_int(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as f:
            text = f.read().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def _cgroup_room() -> int | None:
    """Bytes left under this process's cgroup memory limit (v2 or v1), or None if unlimited/unknown."""
    try:
        with open("/proc/self/cgroup", encoding="ascii") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    candidates = []
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":  # cgroup v2
            for base in (f"/sys/fs/cgroup{parts[2]}".rstrip("/"), "/sys/fs/cgroup"):
                candidates.append((f"{base}/memory.max", f"{base}/memory.current"))
        elif "memory" in parts[1].split(","):  # cgroup v1
            for base in (f"/sys/fs/cgroup/memory{parts[2]}".rstrip("/"), "/sys/fs/cgroup/memory"):
                candidates.append((f"{base}/memory.limit_in_bytes", f"{base}/memory.usage_in_bytes"))
    for limit_file, usage_file in candidates:
        limit = _read_int(limit_file)
        if limit is None or limit >= 1 << 60:  # "max" or the v1 "unlimited" sentinel
            continue
        usage = _read_int(usage_file) or 0
        return max(limit - usage, 0)
    return None


def available_memory() -> int | None:
    """Bytes this process can still allocate without swapping, or None if unknown."""
    avail = None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        avail = None
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            avail = None
    room = _cgroup_room()
    if room is not None:
        avail = room if avail is None else min(avail, room)
    return avail


@dataclass(frozen=True)
class MemoryLimit:
    """A limit in bytes (None: none) and where it came from, for messages."""

    bytes: int | None
    source: str


def memory_limit(override: int | str | None = None) -> MemoryLimit:
    """The limit: ``override`` (bytes or a size string), else ``$CTSAM3D_MAX_MEMORY``, else
    :data:`MEMORY_FRACTION` of :func:`available_memory`."""
    if override is not None:
        value = parse_size(str(override), "max_memory") if isinstance(override, str) else int(override)
        return MemoryLimit(value if value and value > 0 else None, "max_memory")
    env = os.environ.get(MAX_MEMORY_ENV)
    if env is not None and env.strip():
        return MemoryLimit(parse_size(env), f"set by {MAX_MEMORY_ENV}")
    avail = available_memory()
    if avail is None:
        return MemoryLimit(None, "unknown available memory")
    return MemoryLimit(
        int(avail * MEMORY_FRACTION),
        f"{MEMORY_FRACTION:.0%} of the {_gib(avail)} available now; set {MAX_MEMORY_ENV} to change it",
    )


def pixel_bytes(pixel_type: str) -> int:
    """Bytes per component of a SimpleITK pixel type name (``"16-bit signed integer"`` -> 2); 8 if unknown."""
    m = re.search(r"(\d+)-bit", pixel_type or "")
    return max(int(m.group(1)) // 8, 1) if m else 8


def file_kind(path: str | Path) -> str:
    """``"nifti"`` for .nii / .nii.gz (two copies while decoding), else ``"other"``."""
    name = str(path).lower()
    return "nifti" if name.endswith((".nii", ".nii.gz", ".hdr", ".img", ".img.gz")) else "other"


def estimate_bytes(voxels: int, pixel_type: str, components: int = 1, kind: str = "other") -> int:
    """Peak bytes to read a volume of ``voxels`` and work on it (see the module docstring)."""
    b = pixel_bytes(pixel_type) * max(int(components), 1)
    per_voxel = max(READ_COPIES.get(kind, READ_COPIES["other"]) * b, b + PIPELINE_BYTES_PER_VOXEL)
    return int(voxels * per_voxel)


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def check_memory(voxels: int, pixel_type: str, name: str, *, kind: str = "other", components: int = 1,
                 limit: int | str | None = None) -> int:
    """Refuse (:class:`InputError`, one line) a volume whose estimated peak memory exceeds the limit.

    Returns:
        The estimate in bytes.
    """
    need = estimate_bytes(voxels, pixel_type, components, kind)
    lim = memory_limit(limit)
    if lim.bytes is not None and need > lim.bytes:
        raise InputError(
            f"{name}: reading this volume ({voxels:,} voxels of {pixel_type}) needs about {_gib(need)} of memory, "
            f"over the limit of {_gib(lim.bytes)} ({lim.source})"
        )
    return need
