"""Training losses.

* mask: ``focal_weight · Focal + dice_weight · Dice`` on the mask logits (MONAI's
  :class:`~monai.losses.FocalLoss` with α, γ and :class:`~monai.losses.DiceLoss` with
  sigmoid, per-sample Dice averaged over the batch) — the reference's 0.2 / 0.8 mix;
* CPP: mean squared error between the CPP net's heatmap and the Gaussian target, over the
  items whose neighbour patch contains the structure, weighted towards the target's blob
  (``1 + pos_weight · target``; plain MSE collapses to an all-zero heatmap);
* quality: mean squared error between the predicted Dice and the actual Dice of the
  thresholded mask (the target is detached).

All inputs are ``(B, 1, D, H, W)`` tensors on the patch grid; losses are computed in float32.
"""

from __future__ import annotations

import torch
from monai.losses import DiceLoss, FocalLoss
from torch import nn

__all__ = ["MaskLoss", "cpp_loss", "quality_loss", "hard_dice"]


class MaskLoss(nn.Module):
    """``w_focal · FocalLoss(α, γ) + w_dice · DiceLoss(sigmoid)`` on logits ``(B, 1, D, H, W)``."""

    def __init__(self, focal_weight=0.2, dice_weight=0.8, alpha=0.8, gamma=2.0) -> None:
        super().__init__()
        self.wf, self.wd = float(focal_weight), float(dice_weight)
        self.focal = FocalLoss(gamma=gamma, alpha=alpha, use_softmax=False)
        self.dice = DiceLoss(sigmoid=True)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = logits.float()
        target = target.float()
        focal = self.focal(logits, target)
        dice = self.dice(logits, target)
        return {"mask": self.wf * focal + self.wd * dice, "focal": focal, "dice": dice}


def hard_dice(pred: torch.Tensor, target: torch.Tensor, empty: float = 1.0) -> torch.Tensor:
    """Per-sample Dice ``(B,)`` of binary ``pred`` vs ``target`` (both ``(B, 1, D, H, W)``, > 0.5
    = in); ``empty`` when both are empty."""
    p = (pred > 0.5).flatten(1).float()
    t = (target > 0.5).flatten(1).float()
    inter = (p * t).sum(1)
    denom = p.sum(1) + t.sum(1)
    return torch.where(denom > 0, 2 * inter / denom.clamp_min(1), torch.full_like(denom, empty))


def cpp_loss(heatmap: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, pos_weight: float = 0.0) -> torch.Tensor:
    """(Weighted) MSE over the valid items of a batch (0 — still connected to the graph — when
    none). Squared errors are weighted ``1 + pos_weight · target`` and normalised per item by
    the weights' sum (``pos_weight=0``: plain MSE)."""
    t = target.float()
    err = (heatmap.float() - t) ** 2
    if pos_weight:
        w = 1.0 + float(pos_weight) * t
        per = (err * w).flatten(1).sum(1) / w.flatten(1).sum(1)
    else:
        per = err.flatten(1).mean(1)
    w = valid.float()
    return (per * w).sum() / w.sum().clamp_min(1.0)


def quality_loss(quality: torch.Tensor, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """MSE between predicted quality ``(B, 1)`` and the actual (detached) Dice of
    ``sigmoid(logits) > 0.5``; returns ``(loss, actual_dice (B,))``."""
    with torch.no_grad():
        actual = hard_dice(torch.sigmoid(logits.float()), target)
    return ((quality.float().view(-1) - actual) ** 2).mean(), actual
