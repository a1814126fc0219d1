"""Intensity-guided boundary refinement: the input-grid mask's threshold follows the CT.

The model predicts on its lattice (3 mm for the lite models); the session pastes those
probabilities linearly onto the input grid (often 1 x 1 x 2 mm) and thresholds them. A
3 mm probability map cannot place a boundary between two input voxels, so thin and small
structures (ribs, vessels, glands) come out blobby. The refinement decides the boundary
voxels with the input voxel's own HU value, as a naive-Bayes correction of the model's
probability:

    logit(p_refined(x)) = logit(p(x)) + w * clip(log h_in(I(x)) - log h_out(I(x)), -c, c)

``h_in`` is the HU histogram of the object's confident inside (pasted probability > 0.9),
``h_out`` that of its confident outside near it (< 0.1, in the object's box), both over the
input voxels of the object's box (subsampled to at most ``max_samples``), in ``bin_hu``
bins smoothed by 1.5 bins. ``x`` is in the mask when ``logit(p_refined) > 0``, i.e. when
``p(x)`` exceeds a threshold that depends on ``I(x)`` only:

    t(I) = 1 / (1 + exp(w * clip(LLR(I), -c, c)))     (between 0.047 and 0.953 for w=1, c=3)

so the mask layer's machinery (:mod:`.mask_layer`) stays a threshold of the paste, with a
per-voxel threshold instead of 0.5, and voxels whose probability is beyond that range keep
the model's decision. Where the two histograms agree (liver next to spleen, one muscle next
to another) ``LLR ~ 0`` and nothing changes; where they differ (bone next to muscle, contrast
vessel next to fat) the boundary moves to the intensity edge.

Chosen on OpenKBP validation only (``docs/training.md`` §9): ``w = 1`` (plain Bayes), ``c =
3``, no smoothing of the HU; the other values tried were within 0.001 Dice of it.

Shapes and units: ``lo_kji`` / ``hi_kji`` are half-open input boxes in numpy order ``(k, j,
i)``; HU values are the input image's values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

__all__ = ["Refinement", "IntensityModel", "ThresholdMap", "fit_intensity_model", "hu_box", "sample_stride"]


@dataclass(frozen=True)
class Refinement:
    """Settings of the refinement (``Session(refine=...)``).

    Attributes:
        enabled: refine at all (False: the mask is ``paste > 0.5``, as before).
        weight: ``w``, weight of the intensity log-likelihood ratio (1: Bayes).
        cap: ``c``, largest change of the logit (the threshold stays in ``[sigmoid(-w c), sigmoid(w c)]``).
        bin_hu: histogram bin width (HU), from ``-1024`` to ``3072``.
        inside / outside: probability above / below which a voxel counts as the object's
            confident inside / outside for the histograms.
        min_voxels: fewer sampled voxels than this on either side: no refinement this step.
        max_samples: most input voxels sampled from the object's box (an even stride).
    """

    enabled: bool = True
    weight: float = 1.0
    cap: float = 3.0
    bin_hu: float = 16.0
    inside: float = 0.9
    outside: float = 0.1
    min_voxels: int = 30
    max_samples: int = 200_000

    def __post_init__(self):
        if not (self.weight >= 0 and self.cap >= 0 and self.bin_hu > 0 and self.max_samples > 0):
            raise ValueError(f"Refinement: weight, cap >= 0 and bin_hu, max_samples > 0, got {self}")
        if not 0.0 <= self.outside < self.inside <= 1.0:
            raise ValueError(f"Refinement: need 0 <= outside < inside <= 1, got {self.outside}, {self.inside}")


_HU_LO, _HU_HI = -1024.0, 3072.0


def _bin_index(values: np.ndarray, bin_hu: float) -> np.ndarray:
    """HU bin of each value (``bin_hu`` wide from ``-1024``; values beyond the range in the end bins)."""
    n = int(np.ceil((_HU_HI - _HU_LO) / bin_hu))
    idx = np.floor((np.asarray(values, np.float32) - np.float32(_HU_LO)) / np.float32(bin_hu)).astype(np.int64)
    return np.clip(idx, 0, n - 1, out=idx)


class IntensityModel:
    """An object's per-HU-bin threshold ``t(I)`` (see the module doc).

    Attributes:
        thresholds: float32 ``(n_bins,)``, the threshold of each HU bin.
        lo / hi: the smallest / largest threshold (the band where a voxel can change).
    """

    def __init__(self, thresholds: np.ndarray, bin_hu: float):
        self.thresholds = np.asarray(thresholds, np.float32)
        self.bin_hu = float(bin_hu)
        self.lo = float(self.thresholds.min())
        self.hi = float(self.thresholds.max())

    def at(self, hu: np.ndarray) -> np.ndarray:
        """Thresholds (float32, same shape) for HU values ``hu``."""
        return self.thresholds[_bin_index(hu, self.bin_hu)]

    def threshold_map(self, image: sitk.Image) -> "ThresholdMap":
        """These thresholds on ``image``'s voxels (what :func:`.mask_layer.apply_change` takes)."""
        return ThresholdMap(self.lo, self.hi, lambda lo, hi: hu_box(image, lo, hi), self.at)


@dataclass(frozen=True)
class ThresholdMap:
    """Per-voxel thresholds of an input image, read lazily.

    Attributes:
        lo / hi: the smallest / largest threshold (outside that band the model's probability decides).
        hu: ``hu(lo_kji, hi_kji) -> (K, J, I)``: the input's values on a box.
        at: ``at(values) -> float32``: the thresholds of values.
    """

    lo: float
    hi: float
    hu: object
    at: object

    def __call__(self, lo_kji, hi_kji) -> np.ndarray:
        """The thresholds of every voxel of a box (float32 ``(K, J, I)``)."""
        return self.at(self.hu(lo_kji, hi_kji))


def hu_box(image: sitk.Image, lo_kji, hi_kji, stride: int = 1) -> np.ndarray:
    """The input's values on box ``[lo_kji, hi_kji)`` (every ``stride``-th voxel), ``(K, J, I)``.

    Copied through a SimpleITK slice, never a numpy view of ``image``: a view's ``MakeUnique``
    swaps the buffer of an image that server sessions share while other threads crop patches
    from it (SIGSEGV; see :mod:`ctsam3d.server.images`)."""
    (k0, j0, i0), (k1, j1, i1) = (int(v) for v in lo_kji), (int(v) for v in hi_kji)
    s = int(stride)
    return sitk.GetArrayFromImage(image[i0:i1:s, j0:j1:s, k0:k1:s])


def _histogram(values: np.ndarray, bin_hu: float) -> np.ndarray:
    n = int(np.ceil((_HU_HI - _HU_LO) / bin_hu))
    h = np.bincount(_bin_index(values, bin_hu), minlength=n).astype(np.float64)
    h = ndimage.gaussian_filter1d(h, 1.5, mode="nearest")
    return (h + 0.5) / (h.sum() + 0.5 * n)


def fit_intensity_model(probs: np.ndarray, hu: np.ndarray, settings: Refinement) -> IntensityModel | None:
    """The object's thresholds from sampled input voxels: ``probs`` (pasted probabilities) and
    ``hu`` (their HU), same shape. None when either side has fewer than ``min_voxels``."""
    inside = probs > settings.inside
    outside = probs < settings.outside
    if int(inside.sum()) < settings.min_voxels or int(outside.sum()) < settings.min_voxels:
        return None
    llr = np.log(_histogram(hu[inside], settings.bin_hu)) - np.log(_histogram(hu[outside], settings.bin_hu))
    shift = settings.weight * np.clip(llr, -settings.cap, settings.cap)
    return IntensityModel(1.0 / (1.0 + np.exp(shift)), settings.bin_hu)


def sample_stride(lo_kji, hi_kji, max_samples: int) -> int:
    """Even stride so that a box ``[lo, hi)`` gives at most ``max_samples`` voxels."""
    n = float(np.prod(np.maximum(np.asarray(hi_kji) - np.asarray(lo_kji), 0)))
    s = 1
    while n / s**3 > max_samples:
        s += 1
    return s
