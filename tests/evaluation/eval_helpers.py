"""Synthetic CTs with known structures for the evaluation tests."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk


def ball(shape, center, radius, spacing=(1.0, 1.0, 1.0)) -> np.ndarray:
    zz, yy, xx = np.indices(shape)
    d2 = sum(((g - c) * s) ** 2 for g, c, s in zip((zz, yy, xx), center, spacing))
    return d2 <= radius**2


def synthetic_ct(shape=(32, 40, 40), spacing_zyx=(2.0, 1.5, 1.5), seed=0):
    """A CT-like volume: fat background (-100 HU), a 'liver' ball (+60 HU) and a 'bone' ball
    (+700 HU), Gaussian noise 10 HU. Returns (sitk image, {name: bool (z, y, x) mask})."""
    rng = np.random.default_rng(seed)
    liver = ball(shape, (16, 18, 15), 9, spacing_zyx)
    bone = ball(shape, (16, 20, 31), 5, spacing_zyx) & ~liver
    hu = np.full(shape, -100.0, np.float32)
    hu[liver] = 60.0
    hu[bone] = 700.0
    hu += rng.normal(0, 10, shape).astype(np.float32)
    img = sitk.GetImageFromArray(hu)
    img.SetSpacing(tuple(float(s) for s in reversed(spacing_zyx)))
    return img, {"liver": liver, "bone": bone}
