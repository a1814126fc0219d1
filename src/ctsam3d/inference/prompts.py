"""Validating user prompts (clicks, boxes) and placing them on the session's lattice.

A click arrives as an ITK index ``(i, j, k)`` of the input image (i fastest; what 3D Slicer
and MONAI Label send), as LPS millimetres (``space="world"``) or as RAS millimetres
(``space="ras"``, what NiiVue reports). All three end up as the same :class:`Click`, so a
voxel click and a world click at that voxel's centre give identical results.

Accepted: three finite numbers (int or float; a float index is a continuous index, voxel
``n`` spans ``n - 0.5 .. n + 0.5``) inside the image. Anything else raises
:class:`~ctsam3d.errors.ClickError` with one line naming the click and the problem.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from ..errors import ClickError
from ..geometry import index_to_lps, lps_to_index, ras_to_lps
from .lattice import Lattice

__all__ = ["Click", "SPACES", "parse_point", "make_click"]

SPACES = ("index", "world", "ras")


@dataclass(frozen=True)
class Click:
    """One click of an object.

    Attributes:
        zyx: lattice voxel ``(z, y, x)`` (integer) the click falls on.
        world_lps: LPS mm of the click as given.
        index_ijk: continuous ITK index ``(i, j, k)`` of the input image.
        positive: True for a foreground click, False for background.
        source: ``"user"``, ``"box"`` (centre of a box) or ``"cpp"`` (cross-patch prompt).
        patch: lattice start ``(z, y, x)`` of the patch an automatic (expansion) click was
            made for: it prompts that patch only, never another patch that happens to hold
            it (None: a user/box click, which prompts every patch holding it).
    """

    zyx: tuple[int, int, int]
    world_lps: tuple[float, float, float]
    index_ijk: tuple[float, float, float]
    positive: bool
    source: str = "user"
    patch: tuple[int, int, int] | None = None


def _three_numbers(point, what: str) -> tuple[float, float, float]:
    if isinstance(point, (str, bytes)) or not hasattr(point, "__len__"):
        raise ClickError(f"{what} {point!r}: expected three numbers")
    values = list(np.asarray(point, dtype=object).reshape(-1)) if isinstance(point, np.ndarray) else list(point)
    if len(values) != 3:
        raise ClickError(f"{what} {tuple(values)!r}: expected three numbers, got {len(values)}")
    out = []
    for v in values:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (numbers.Real, np.number)):
            raise ClickError(f"{what} {tuple(values)!r}: {v!r} is not a number")
        f = float(v)
        if not math.isfinite(f):
            raise ClickError(f"{what} {tuple(values)!r}: coordinates must be finite (got {v!r})")
        out.append(f)
    return tuple(out)  # type: ignore[return-value]


def parse_point(point, image: sitk.Image, space: str = "index", what: str = "click") -> tuple[np.ndarray, np.ndarray]:
    """Validate a point and return ``(index_ijk, world_lps)`` (float64, continuous index).

    Args:
        point: three numbers: ITK index ``(i, j, k)`` (``space="index"``), LPS mm
            (``"world"``) or RAS mm (``"ras"``).
        image: the input image the point refers to.

    Raises:
        ClickError: not three finite numbers, unknown ``space``, or outside the image.
    """
    if space not in SPACES:
        raise ClickError(f"{what}: space must be one of {', '.join(SPACES)}, got {space!r}")
    p = np.asarray(_three_numbers(point, what), dtype=np.float64)
    if space == "index":
        ijk = p
        lps = index_to_lps(image, ijk)
    else:
        lps = p if space == "world" else ras_to_lps(p)
        ijk = lps_to_index(image, lps)
    size = np.asarray(image.GetSize(), dtype=np.float64)
    tol = 1e-6
    outside = (ijk < -0.5 - tol) | (ijk > size - 0.5 + tol)
    if outside.any():
        axis = "ijk"[int(np.flatnonzero(outside)[0])]
        given = tuple(float(v) for v in p)
        where = "" if space == "index" else f" (index {tuple(round(float(v), 2) for v in ijk)})"
        raise ClickError(
            f"{what} {given} ({space}) is outside the image{where}: index {axis} must be within "
            f"0..{int(size['ijk'.index(axis)]) - 1} (image size {tuple(int(s) for s in size)})"
        )
    return ijk, lps


def make_click(point, positive, image: sitk.Image, lattice: Lattice, space: str = "index", source: str = "user") -> Click:
    """Validate ``point`` and place it on ``lattice`` (see :func:`parse_point`)."""
    if not isinstance(positive, (bool, np.bool_)) and positive not in (0, 1):
        raise ClickError(f"click {point!r}: positive must be True or False, got {positive!r}")
    ijk, lps = parse_point(point, image, space)
    zyx = np.rint(lattice.world_to_zyx(lps)).astype(int)
    return Click(
        tuple(int(v) for v in zyx),  # type: ignore[arg-type]
        tuple(float(v) for v in lps),  # type: ignore[arg-type]
        tuple(float(v) for v in ijk),  # type: ignore[arg-type]
        bool(positive),
        source,
    )
