"""Is a volume plausibly CT in Hounsfield units? (issue 19: a CT stored without its rescale, or a
0..1 normalised volume, was segmented silently: mandible Dice 0.13 instead of 0.83.)

Every model sees its input through a HU window (``[-125, 225]`` for all presets): on values that
are not HU the window saturates and the masks mean nothing. :func:`check_hu` applies three rules,
on the whole volume's min/max and on percentiles of an even sample of at most
:data:`SAMPLE_VOXELS` voxels:

1. **normalised**: the 0.5-99.5 percentile span is under :data:`NORMALISED_SPAN` (20): e.g. 0..1
   floats or z-scores. CT in HU spans about 1000 or more (air −1000, water 0, bone > 300).
2. **no negative values**: the minimum is >= 0: stored values without the rescale intercept
   (0..4095, HU = value − 1024 for most scanners), or an MR image. CT in HU has air near −1000
   around and inside the body, and fat near −100.
3. **offset by +1024**: ignoring padding below −1500, fewer than 0.1 % of voxels are below −50
   (no air or fat) while at least 1 % lie in 824..1224 (soft tissue shifted by +1024): stored
   values with negative padding but without the rescale.

What each tool does with an implausible volume (the rule everywhere: the result would be
meaningless, so nothing computes it silently):

* ``Session.set_image`` (Python API): a :class:`NotHUWarning`, and it carries on.
* ``ctsam3d segment``: refuses with one line (exit 2) unless ``--allow-non-hu`` (then warns).
* server (web page and MONAI Label): refuses to open such an image (HTTP 400, one line).
* ``ctsam3d info``: prints "value range" and the reason instead of "HU range".

A tight crop inside one organ (no air, fat or bone) can fail rule 2 although it is HU; convert
nothing then, pass ``--allow-non-hu`` (CLI) or use the API, which only warns.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

#: At most this many voxels (an even stride through the volume) give the percentiles.
SAMPLE_VOXELS = 2_000_000
#: Rule 1: a 0.5-99.5 percentile span below this is not HU.
NORMALISED_SPAN = 20.0


class NotHUWarning(UserWarning):
    """The image's intensities are not plausibly CT Hounsfield units (see :mod:`ctsam3d.io.hu_check`)."""


@dataclass(frozen=True)
class HuCheck:
    """Outcome of :func:`check_hu`.

    Attributes:
        plausible: the values look like CT in HU.
        kind: ``"hu"``, ``"normalised"``, ``"unsigned"`` or ``"offset"`` (rules 1-3).
        low, high: minimum and maximum of the whole volume.
        reason: one sentence (empty when plausible), without the file name.
    """

    plausible: bool
    kind: str
    low: float
    high: float
    reason: str = ""

    def message(self, name: str) -> str:
        """One line naming ``name`` (a file or "image") and the problem."""
        return f"{name}: {self.reason}"

    def to_json(self) -> dict:
        return {"hu_plausible": self.plausible, "kind": self.kind, "reason": self.reason or None}


def _array(image) -> np.ndarray:
    if isinstance(image, sitk.Image):
        return sitk.GetArrayViewFromImage(image)
    return np.asarray(image)


def _sample(arr: np.ndarray) -> np.ndarray:
    flat = arr.reshape(-1) if arr.flags.c_contiguous else arr.ravel()
    step = max(1, flat.size // SAMPLE_VOXELS)
    return np.asarray(flat[::step], dtype=np.float32)


def check_hu(image: sitk.Image | np.ndarray) -> HuCheck:
    """Apply the three rules of the module docstring to a volume (any array shape, any dtype)."""
    arr = _array(image)
    if arr.size == 0:
        return HuCheck(False, "normalised", 0.0, 0.0, "the image has no voxels")
    lo, hi = float(arr.min()), float(arr.max())
    sample = _sample(arr)
    p_lo, p_hi = (float(v) for v in np.percentile(sample, [0.5, 99.5]))
    rng = f"{lo:.6g} .. {hi:.6g}"
    if p_hi - p_lo < NORMALISED_SPAN:
        return HuCheck(False, "normalised", lo, hi,
                       f"intensities {rng} (99 % within {p_lo:.4g} .. {p_hi:.4g}) look normalised (e.g. 0..1 or "
                       f"z-scores), not CT Hounsfield units (air about -1000, water 0, bone above 300)")
    if lo >= 0:
        return HuCheck(False, "unsigned", lo, hi,
                       f"no negative intensities ({rng}): not CT Hounsfield units (air is about -1000 HU); "
                       f"stored values without the rescale (HU = value x slope + intercept, usually - 1024), "
                       f"or not a CT (MR?)")
    body = sample[sample > -1500]
    if body.size:
        dark = float(np.mean(body < -50))
        shifted = float(np.mean((body >= 824) & (body <= 1224)))
        if dark < 0.001 and shifted >= 0.01:
            return HuCheck(False, "offset", lo, hi,
                           f"intensities {rng} look like HU + 1024 (no air or fat below -50, {shifted:.0%} of the "
                           f"voxels at 824..1224 where soft tissue + 1024 lies): stored values without the rescale "
                           f"intercept, not Hounsfield units")
    return HuCheck(True, "hu", lo, hi)


def warn_if_not_hu(image: sitk.Image | np.ndarray, name: str = "image", *, stacklevel: int = 3) -> HuCheck:
    """:func:`check_hu`, with a :class:`NotHUWarning` naming ``name`` when implausible."""
    result = check_hu(image)
    if not result.plausible:
        warnings.warn(result.message(name) + "; the masks will not be meaningful", NotHUWarning, stacklevel=stacklevel)
    return result


def refuse_if_not_hu(image: sitk.Image | np.ndarray, name: str = "image", *, hint: str = "") -> HuCheck:
    """:func:`check_hu`, raising :class:`~ctsam3d.errors.InputError` (one line) when implausible."""
    from ..errors import InputError

    result = check_hu(image)
    if not result.plausible:
        raise InputError(result.message(name) + (f"; {hint}" if hint else ""))
    return result
