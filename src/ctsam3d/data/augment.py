"""Augmentation parameters: spatial (folded into the patch affine) and intensity.

Spatial augmentation follows the reference training config: with probability ``p``,
translation ±20 mm, isotropic scale 0.9–1.1 and a rotation of up to ±10° about a random
axis. There are **no flips**: left and right structures have different names, so a
mirrored patch would teach the wrong label. Intensity augmentation (on HU, before the
window): contrast × [0.9, 1.1], shift ±20 HU and Gaussian noise of up to 15 HU. With
``p_contrast`` > 0 a patch may first be made to look contrast-enhanced (:mod:`.contrast`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .affine import rotation_matrix

__all__ = ["AugmentConfig", "SpatialAug", "draw_spatial", "apply_intensity"]


@dataclass
class AugmentConfig:
    """Augmentation settings (all ranges symmetric around "no change")."""

    p_spatial: float = 0.6
    translate_mm: float = 20.0
    scale_range: tuple[float, float] = (0.9, 1.1)
    rotate_deg: float = 10.0
    p_intensity: float = 0.6
    contrast_range: tuple[float, float] = (0.9, 1.1)
    shift_hu: float = 20.0
    noise_hu: float = 15.0
    p_contrast: float = 0.0  # contrast-phase augmentation (data/contrast.py); 0: off, random stream unchanged
    contrast_gradient: float = 0.0  # its largest relative bolus gradient across a patch (data/contrast.py); 0: none

    def __post_init__(self):
        if not 0.0 <= float(self.contrast_gradient) <= 1.0:
            raise ValueError(f"augment.contrast_gradient: between 0 and 1, got {self.contrast_gradient!r}")


@dataclass
class SpatialAug:
    """One draw of the spatial augmentation: LPS translation (mm), 3×3 rotation, scale."""

    translation: np.ndarray
    rotation: np.ndarray
    scale: float


IDENTITY = SpatialAug(np.zeros(3), np.eye(3), 1.0)


def draw_spatial(cfg: AugmentConfig | None, rng: np.random.Generator) -> SpatialAug:
    """Draw a spatial augmentation (identity with probability ``1 - p_spatial``)."""
    if cfg is None or rng.random() >= cfg.p_spatial:
        return IDENTITY
    t = rng.uniform(-cfg.translate_mm, cfg.translate_mm, 3)
    axis = rng.normal(size=3)
    while np.linalg.norm(axis) < 1e-6:
        axis = rng.normal(size=3)
    angle = np.deg2rad(rng.uniform(-cfg.rotate_deg, cfg.rotate_deg))
    scale = float(rng.uniform(*cfg.scale_range))
    return SpatialAug(t, rotation_matrix(axis, angle), scale)


def apply_intensity(hu: torch.Tensor, cfg: AugmentConfig | None, rng: np.random.Generator) -> torch.Tensor:
    """Intensity augmentation of a HU patch ``(..., D, H, W)`` (any device); returns HU.

    Air (-1024 HU) stays far below the soft-tissue window, so padding still maps to 0.
    """
    if cfg is None or rng.random() >= cfg.p_intensity:
        return hu
    a = float(rng.uniform(*cfg.contrast_range))
    b = float(rng.uniform(-cfg.shift_hu, cfg.shift_hu))
    sigma = float(rng.uniform(0.0, cfg.noise_hu))
    gen = torch.Generator(device=hu.device)
    gen.manual_seed(int(rng.integers(2**62)))
    noise = torch.randn(hu.shape, generator=gen, device=hu.device, dtype=hu.dtype)
    return hu * a + b + sigma * noise
