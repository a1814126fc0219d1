"""Residual 3D U-Net of the cross-patch prompt (CPP) net, in plain PyTorch.

The reference CT-SAM3D builds its CPP net with MONAI's ``UNet`` (residual units, instance
norm without affine parameters, PReLU, transposed-conv upsampling, skip connections by
channel concatenation). This module builds the same network without importing MONAI, whose
import pulls in its whole library (transforms, data, plotting, DICOM) and took seconds of
every ``ctsam3d segment`` run. Module and parameter names are MONAI's, so released weights,
saved checkpoints and state dicts load unchanged (a test checks names, shapes and outputs
against MONAI's network).

Shapes: input ``(B, C_in, D, H, W)``, output ``(B, C_out, D, H, W)``; ``D, H, W`` divisible by
the product of the strides.

Structure (``channels = (c0, c1, ..., cn)``, ``strides = (s0, ..., s_{n-1})``)::

    model = Sequential(down(C_in -> c0, s0), Skip(level 1), up(2·c0 or c0 + c1 -> C_out, s0))
    level k = Sequential(down(c_{k-1} -> c_k, s_k), Skip(level k+1), up(.. -> c_{k-1}, s_k))
    bottom  = down(c_{n-1} -> c_n, stride 1)

``down`` is a residual unit of ``num_res_units`` convolutions (3³, the first strided; each
followed by instance norm, dropout 0 and PReLU) plus a residual path (strided 3³ conv or 1³
conv when channels change, identity otherwise). ``up`` is a transposed 3³ conv (output
padding stride − 1) with norm and PReLU, then a one-convolution residual unit; at the top
its last convolution has no norm or activation. ``Skip`` returns ``cat([x, block(x)], 1)``.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

__all__ = ["ResidualUNet"]


class _NormDropAct(nn.Module):
    """MONAI's "ADN" block in its N, D, A order: instance norm, dropout, PReLU."""

    def __init__(self, channels: int, dropout: float = 0.0):
        super().__init__()
        self.N = nn.InstanceNorm3d(channels)
        self.D = nn.Dropout(dropout)
        self.A = nn.PReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.A(self.D(self.N(x)))


class _ConvUnit(nn.Module):
    """A 3³ convolution (or transposed convolution) followed by norm/dropout/act unless ``conv_only``."""

    def __init__(self, cin: int, cout: int, stride: int, *, transposed: bool = False, conv_only: bool = False):
        super().__init__()
        if transposed:
            self.conv = nn.ConvTranspose3d(cin, cout, 3, stride, padding=1, output_padding=stride - 1)
        else:
            self.conv = nn.Conv3d(cin, cout, 3, stride, padding=1)
        if not conv_only:
            self.adn = _NormDropAct(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return self.adn(x) if hasattr(self, "adn") else x


class _ResidualUnit(nn.Module):
    """``subunits`` conv units (the first strided) plus a residual path; output = conv(x) + residual(x)."""

    def __init__(self, cin: int, cout: int, stride: int, subunits: int, *, last_conv_only: bool = False):
        super().__init__()
        units, c, s = OrderedDict(), cin, stride
        n = max(1, subunits)
        for k in range(n):
            units[f"unit{k}"] = _ConvUnit(c, cout, s, conv_only=last_conv_only and k == n - 1)
            c, s = cout, 1
        self.conv = nn.Sequential(units)
        if stride != 1:
            self.residual = nn.Conv3d(cin, cout, 3, stride, padding=1)
        elif cin != cout:
            self.residual = nn.Conv3d(cin, cout, 1, 1, padding=0)
        else:
            self.residual = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = self.residual(x)
        return self.conv(x) + res


class _Skip(nn.Module):
    """``cat([x, submodule(x)], dim=1)``."""

    def __init__(self, submodule: nn.Module):
        super().__init__()
        self.submodule = submodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.submodule(x)], dim=1)


class ResidualUNet(nn.Module):
    """Residual 3D U-Net (see the module docstring); ``forward(x (B, C_in, D, H, W)) -> (B, C_out, D, H, W)``.

    Args:
        in_channels, out_channels: channels of input and output.
        channels: feature channels per level, top first (at least 2).
        strides: down-sampling stride per level (``len(channels) - 1`` of them).
        num_res_units: convolutions per residual unit in the down path (0: plain conv units).
    """

    def __init__(self, in_channels: int, out_channels: int, channels, strides, num_res_units: int = 2):
        super().__init__()
        channels, strides = tuple(int(c) for c in channels), tuple(int(s) for s in strides)
        if len(channels) < 2 or len(strides) != len(channels) - 1:
            raise ValueError(f"channels {channels} / strides {strides}: need >= 2 channels and one stride fewer")
        self.num_res_units = int(num_res_units)
        self.model = self._block(in_channels, out_channels, channels, strides, True)

    def _down(self, cin: int, cout: int, stride: int) -> nn.Module:
        if self.num_res_units > 0:
            return _ResidualUnit(cin, cout, stride, self.num_res_units)
        return _ConvUnit(cin, cout, stride)

    def _up(self, cin: int, cout: int, stride: int, top: bool) -> nn.Module:
        conv = _ConvUnit(cin, cout, stride, transposed=True, conv_only=top and self.num_res_units == 0)
        if self.num_res_units == 0:
            return conv
        return nn.Sequential(conv, _ResidualUnit(cout, cout, 1, 1, last_conv_only=top))

    def _block(self, cin: int, cout: int, channels, strides, top: bool) -> nn.Module:
        c = channels[0]
        if len(channels) > 2:
            inner, up_in = self._block(c, c, channels[1:], strides[1:], False), 2 * c
        else:
            inner, up_in = self._down(c, channels[1], 1), c + channels[1]
        return nn.Sequential(self._down(cin, c, strides[0]), _Skip(inner), self._up(up_in, cout, strides[0], top))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
