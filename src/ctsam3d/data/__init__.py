"""ctsam3d.data: dataset adapters, preprocessing cache, patch sampler, augmentation.

Public API::

    cases = open_dataset("../shared/data/openkbp/train", "pairs")   # list[CaseSpec], no image I/O
    preprocess(cases, "cache/openkbp-train", workers=2)            # canonical orientation, int16/uint8
    sampler = PatchSampler(load_cache("cache/openkbp-train"), (64, 64, 64), 3.0, augment=AugmentConfig())
    batch = sampler.sample(np.random.default_rng(0), 8)             # image/target (B,1,D,H,W), CPP pairs

Only :mod:`.adapters` listing and :mod:`.cache` writing touch SimpleITK, and lazily: the
training path (sampler, augmentation, cache loading) needs torch and numpy only.
"""

from .adapters import CaseSpec, open_dataset
from .augment import AugmentConfig
from .cache import CachedCase, load_cache, preprocess, preprocess_case
from .sampler import PatchSampler, SamplerConfig

__all__ = [
    "AugmentConfig",
    "CachedCase",
    "CaseSpec",
    "PatchSampler",
    "SamplerConfig",
    "load_cache",
    "open_dataset",
    "preprocess",
    "preprocess_case",
]
