"""HU windowing and scaling for the model input."""

from __future__ import annotations

import numpy as np

#: The reference preset's soft-tissue window in HU (clip, then scale to [0, 1]).
DEFAULT_WINDOW: tuple[float, float] = (-125.0, 225.0)


def normalize_hu(hu: np.ndarray, window: tuple[float, float] = DEFAULT_WINDOW) -> np.ndarray:
    """Clip HU values to ``window = (low, high)`` and scale linearly to [0, 1].

    Args:
        hu: array of any shape in Hounsfield units (e.g. a ``(D, H, W)`` patch).
        window: ``(low, high)`` HU; ``low`` maps to 0, ``high`` to 1.

    Returns:
        float32 array of the same shape with values in [0, 1].
    """
    low, high = float(window[0]), float(window[1])
    if not high > low:
        raise ValueError(f"HU window {window!r}: high must be greater than low")
    out = (np.asarray(hu, dtype=np.float32) - np.float32(low)) / np.float32(high - low)
    return np.clip(out, 0.0, 1.0, out=out)


def normalize_windows(hu: np.ndarray, windows) -> np.ndarray:
    """The model input of a HU patch with one channel per window: ``(C, *hu.shape)`` float32 in
    [0, 1], channel ``c`` = :func:`normalize_hu` through ``windows[c]`` (``ModelConfig.windows()``;
    one window gives ``(1, *hu.shape)``)."""
    hu = np.asarray(hu, dtype=np.float32)
    return np.stack([normalize_hu(hu, w) for w in windows])
