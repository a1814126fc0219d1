"""Learning-rate schedule: linear warm-up, then cosine / step decay / constant.

The factor multiplies ``OptimConfig.lr`` and is a pure function of the optimiser step, so
it resumes exactly with the step.
"""

from __future__ import annotations

import math

from .config import OptimConfig

__all__ = ["lr_factor"]


def lr_factor(step: int, total_steps: int, cfg: OptimConfig) -> float:
    """LR multiplier for optimiser step ``step`` (0-based) of ``total_steps``."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "step":
        f = 1.0
        for m in cfg.step_milestones:
            if step >= m * total_steps:
                f *= cfg.step_gamma
        return f
    span = max(1, total_steps - cfg.warmup_steps)
    t = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
