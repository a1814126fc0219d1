"""Quality head: predicts the Dice of the decoder's own mask (SAM's "IoU head", trained).

Input: the final decoder features ``(B, C, D, H, W)`` (global average pooled) and, when
``mask_stats`` is on, two statistics of the mask logits ``(B, 1, D, H, W)``: the mean
foreground probability and the mean uncertainty p·(1−p). An MLP (ReLU between layers) maps
them to ``outputs`` numbers; channel 0 through a sigmoid is the predicted Dice in [0, 1],
shape ``(B, 1)``. Parameter names follow the released checkpoint (``layers.N``); the released
head was never trained, so its output is meaningless until trained.

``raw=True`` (reference-exact models: the released predictor) returns channel 0 as it is, with
no sigmoid, as the released ``predict`` does; it is then not a Dice in [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class QualityHead(nn.Module):
    def __init__(
        self,
        in_channels: int,
        hidden: int = 256,
        layers: int = 3,
        outputs: int = 2,
        mask_stats: bool = False,
        raw: bool = False,
    ) -> None:
        super().__init__()
        self.mask_stats = mask_stats
        self.raw = raw
        dims = [in_channels + (2 if mask_stats else 0)] + [hidden] * (layers - 1) + [outputs]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, features: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
        return self.from_pooled(features.mean(dim=(2, 3, 4)), mask_logits)

    def from_pooled(self, v: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
        """The same from the features already average pooled, ``(B, C)``."""
        if self.mask_stats:
            p = torch.sigmoid(mask_logits).flatten(1)
            v = torch.cat([v, p.mean(1, keepdim=True), (p * (1 - p)).mean(1, keepdim=True)], dim=1)
        for i, layer in enumerate(self.layers):
            v = layer(v)
            if i < len(self.layers) - 1:
                v = F.relu(v)
        return v[:, :1] if self.raw else torch.sigmoid(v[:, :1])
