"""Compact convolutional image encoder (the ``ctsam3d-lite`` encoder).

Four stages, each a stride-2 3×3×3 conv (instance norm, LeakyReLU) followed by ``depth``
residual blocks of two 3×3×3 convs; 1×1 "channel mappers" give the skip features handed to
the decoder (same contract as :class:`ctsam3d.modeling.restv2.ResTV2Encoder`).

Input ``(B, 1, D, H, W)`` image in [0, 1]; output four features, fine to coarse, at
1/2, 1/4, 1/8, 1/16 of the patch size with ``skip_channels`` channels.
"""

from __future__ import annotations

import torch
from torch import nn

from .layers import Conv3d


def _norm(ch: int) -> nn.Module:
    return nn.InstanceNorm3d(ch, affine=True)


class ConvNormAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__(
            Conv3d(cin, cout, 3, stride=stride, padding=1, bias=False),
            _norm(cout),
            nn.LeakyReLU(0.01, inplace=True),
        )


class ResBlock(nn.Module):
    """x + norm(conv(act(norm(conv(x))))), then LeakyReLU. Shape-preserving."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(ch, ch)
        self.conv2 = Conv3d(ch, ch, 3, padding=1, bias=False)
        self.norm2 = _norm(ch)
        self.act = nn.LeakyReLU(0.01, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.norm2(self.conv2(self.conv1(x))))


class ConvEncoder(nn.Module):
    """``forward(image (B,1,D,H,W)) -> [f1, f2, f3, f4]`` at 1/2 … 1/16, fine to coarse."""

    def __init__(
        self,
        dims: tuple[int, ...] = (16, 32, 64, 128),
        depths: tuple[int, ...] = (1, 1, 1, 1),
        skip_channels: tuple[int, ...] = (8, 16, 32, 64),
        in_ch: int = 1,
    ) -> None:
        super().__init__()
        stages = []
        cin = in_ch
        for dim, depth in zip(dims, depths):
            stages.append(nn.Sequential(ConvNormAct(cin, dim, stride=2), *[ResBlock(dim) for _ in range(depth)]))
            cin = dim
        self.stages = nn.ModuleList(stages)
        self.channel_mappers = nn.ModuleList(Conv3d(d, s, 1) for d, s in zip(dims, skip_channels))

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        x = image
        for stage, mapper in zip(self.stages, self.channel_mappers):
            x = stage(x)
            feats.append(mapper(x))
        return feats
