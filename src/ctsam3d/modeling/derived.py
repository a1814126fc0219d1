"""Weights derived from parameters for inference (concatenations, transforms), cached.

Inference rebuilds no derived weight per call: :func:`cached` keeps ``make(tensors)`` on an
owner (a module, or a weight tensor itself) until one of the source tensors changes.
"""

from __future__ import annotations

import torch


def _stamp(t: torch.Tensor) -> tuple:
    # inference tensors (e.g. weights derived under torch.inference_mode) have no version
    # counter: keyed by storage and shape only
    return (t.data_ptr(), None if t.is_inference() else t._version, tuple(t.shape))


def cached(owner, name: str, tensors, make):
    """``make(tensors)``, cached on ``owner`` under ``name`` until one of ``tensors`` changes
    (by storage or in place)."""
    cache = owner.__dict__.setdefault("_derived_cache", {})
    key = tuple(_stamp(t) for t in tensors)
    hit = cache.get(name)
    if hit is None or hit[0] != key:
        cache[name] = hit = (key, make(tensors))
    return hit[1]
