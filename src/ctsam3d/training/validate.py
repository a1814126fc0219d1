"""Periodic validation: Dice after 1, 3, 5 ... simulated clicks on fixed held-out patches.

The validation set is drawn once (fixed seed, no augmentation, no CPP) from the validation
cache with the same balanced (structure, case) draws as training, so every structure is
represented. Clicks follow the exact protocol of :mod:`ctsam3d.clicks` (first click at the
EDT maximum, then at the EDT maximum of the largest error region). Scores are patch-level
hard Dice (threshold 0.5), per structure and averaged over structures.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..data.sampler import PatchSampler, SamplerConfig
from .clicks import add_next_clicks, first_clicks
from .losses import hard_dice

__all__ = ["ValidationSet", "validation_dice"]


def validation_dice(model: nn.Module, image: torch.Tensor, target: torch.Tensor, max_clicks: int, autocast: bool = False) -> np.ndarray:
    """Hard Dice after 1..max_clicks simulated clicks (exact protocol).

    Args:
        model: the network (not DDP-wrapped), in eval mode.
        image, target: ``(B, 1, D, H, W)`` on the model's device.
    Returns:
        ``(B, max_clicks)`` array: column k-1 = Dice after k clicks.
    """
    rng = np.random.default_rng(0)  # "center" first clicks draw nothing
    dev_type = image.device.type
    out = np.zeros((image.shape[0], max_clicks))
    with torch.no_grad():
        with torch.autocast(dev_type, dtype=torch.bfloat16, enabled=autocast):
            feats = model.encode(image)
        clicks = first_clicks(target, rng, 0.0, "numpy")
        prev = None
        for k in range(max_clicks):
            with torch.autocast(dev_type, dtype=torch.bfloat16, enabled=autocast):
                prompt = model.render_prompt(clicks.pos, clicks.neg, prev)
                logits, _ = model.decode(feats, prompt)
            prev = torch.sigmoid(logits.float())
            out[:, k] = hard_dice(prev, target).cpu().numpy()
            if k + 1 < max_clicks:
                add_next_clicks(clicks, target, prev, "numpy")
    return out


class ValidationSet:
    """Fixed validation patches (kept on CPU) and their scoring.

    Args:
        cases: cached validation cases.
        patch_size, spacing_mm, hu_window: from the ModelConfig.
        patches: number of patches.
        seed: draw seed.
    """

    def __init__(self, cases, patch_size, spacing_mm, hu_window, patches: int = 64, seed: int = 1234) -> None:
        sampler = PatchSampler(cases, patch_size, spacing_mm, hu_window, augment=None, config=SamplerConfig(cpp=False))
        rng = np.random.default_rng(seed)
        batch = sampler.sample(rng, patches)
        self.image, self.target = batch["image"], batch["target"]
        self.structures = batch["structures"]

    def evaluate(self, model: nn.Module, clicks=(1, 3, 5), batch_size: int = 8, device="cpu", autocast=False) -> dict:
        """Scores ``{"dice@k": mean over structures, "dice@k/<structure>": ...}``."""
        was_training = model.training
        model.eval()
        kmax = max(clicks)
        rows = []
        for i in range(0, len(self.image), batch_size):
            img = self.image[i : i + batch_size].to(device)
            tgt = self.target[i : i + batch_size].to(device)
            rows.append(validation_dice(model, img, tgt, kmax, autocast))
        model.train(was_training)
        scores = np.concatenate(rows)
        out: dict[str, float] = {}
        names = sorted(set(self.structures))
        for k in clicks:
            per = {n: float(np.mean([s[k - 1] for s, m in zip(scores, self.structures) if m == n])) for n in names}
            out[f"dice@{k}"] = float(np.mean(list(per.values())))
            for n, v in per.items():
                out[f"dice@{k}/{n}"] = v
        return out
