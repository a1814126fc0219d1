"""3D ResT-v2 image encoder (the reference CT-SAM3D encoder, "restv2_tiny").

ResT-v2 (Zhang & Yang, NeurIPS 2022) made 3D: a conv stem of stride 4 with a pixel-attention
(PA) gate, then four stages of efficient multi-head self-attention blocks. Keys and values
come from a depthwise strided conv ("spatial reduction", ratio ``sr``) of the tokens; the
attention output is added to the values upsampled back to full size (trilinear) and
LayerNorm-ed ("up" branch), then projected. Between stages a stride-2 conv patch embedding
(kernel 3) with a PA gate halves the grid. 1×1 "channel mappers" give the four skip features.

Input ``(B, 1, D, H, W)`` image in [0, 1]; output four features, fine to coarse, at
1/4, 1/8, 1/16, 1/32 of the patch size, channels ``skip_channels`` (128, 128, 128, 256).
Parameter names follow the released checkpoint (``stem.proj.0``, ``stage1.0.attn.sr``...).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Conv3d

LN_EPS = 1e-6


class PixelAttention(nn.Module):
    """x · sigmoid(depthwise 3×3×3 conv(x)) — ResT's position encoding. Shape-preserving."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.pa_conv = Conv3d(dim, dim, kernel_size=3, padding=1, groups=dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.pa_conv(x))


def _to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, D, H, W) -> (B, D·H·W, C)."""
    return x.flatten(2).transpose(1, 2)


def _to_grid(x: torch.Tensor, size: tuple[int, int, int]) -> torch.Tensor:
    """(B, N, C) -> (B, C, D, H, W)."""
    b, _, c = x.shape
    return x.transpose(1, 2).reshape(b, c, *size)


class ConvStem(nn.Module):
    """Two stride-2 3×3×3 convs (1→dim/2→dim, BN, ReLU), a 1×1 conv, PA gate, LayerNorm."""

    def __init__(self, in_ch: int, dim: int) -> None:
        super().__init__()
        half = dim // 2
        self.proj = nn.Sequential(
            Conv3d(in_ch, half, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm3d(half),
            nn.ReLU(inplace=True),
            Conv3d(half, dim, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm3d(dim),
            nn.ReLU(inplace=True),
            Conv3d(dim, dim, 1),
        )
        self.pos = PixelAttention(dim)
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        x = self.pos(self.proj(x))
        size = tuple(x.shape[2:])
        return self.norm(_to_tokens(x)), size


class PatchEmbed(nn.Module):
    """Stride-2 conv (kernel 3, padding 1) + PA gate + LayerNorm: halves the grid."""

    def __init__(self, in_ch: int, dim: int) -> None:
        super().__init__()
        self.proj = Conv3d(in_ch, dim, kernel_size=3, stride=2, padding=1)
        self.pos = PixelAttention(dim)
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        x = self.pos(self.proj(x))
        size = tuple(x.shape[2:])
        return self.norm(_to_tokens(x)), size


class EfficientAttention(nn.Module):
    """Multi-head attention with keys/values from a spatially reduced grid, plus the up branch.

    Tokens ``(B, N, C)`` on a grid ``size`` = (D, H, W) with N = D·H·W.
    """

    def __init__(self, dim: int, heads: int, sr_ratio: int) -> None:
        super().__init__()
        self.heads = heads
        self.sr_ratio = sr_ratio
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        if sr_ratio > 1:
            self.sr = Conv3d(
                dim, dim, kernel_size=sr_ratio + 1, stride=sr_ratio, padding=sr_ratio // 2, groups=dim
            )
            self.sr_norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.up_norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, size: tuple[int, int, int]) -> torch.Tensor:
        b, n, c = x.shape
        hd = c // self.heads
        q = self.q(x).reshape(b, n, self.heads, hd).transpose(1, 2)
        if self.sr_ratio > 1:
            red = self.sr(_to_grid(x, size))
            red_size = tuple(red.shape[2:])
            x = self.sr_norm(_to_tokens(red))
        else:
            red_size = size
        kv = self.kv(x).reshape(b, -1, 2, self.heads, hd).permute(2, 0, 3, 1, 4)
        k, v = kv[0], kv[1]  # (B, heads, N', hd)
        out = F.scaled_dot_product_attention(q, k, v)  # scale hd**-0.5, softmax over keys
        out = out.transpose(1, 2).reshape(b, n, c)
        # up branch: values (channel = head·hd + j) back on the reduced grid, upsampled
        ident = v.transpose(-1, -2).reshape(b, c, *red_size)
        if red_size != tuple(size):
            ident = F.interpolate(ident, size=size, mode="trilinear", align_corners=False)
        return self.proj(out + self.up_norm(_to_tokens(ident)))


class Mlp(nn.Module):
    def __init__(self, dim: int, ratio: int = 4) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, ratio * dim)
        self.fc2 = nn.Linear(ratio * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)); x + mlp(LN(x))."""

    def __init__(self, dim: int, heads: int, sr_ratio: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = EfficientAttention(dim, heads, sr_ratio)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim)

    def forward(self, x: torch.Tensor, size: tuple[int, int, int]) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), size)
        return x + self.mlp(self.norm2(x))


class ResTV2Encoder(nn.Module):
    """3D ResT-v2 encoder. ``forward(image (B,1,D,H,W)) -> [f1, f2, f3, f4]`` fine to coarse."""

    def __init__(
        self,
        dims: tuple[int, ...] = (96, 192, 384, 768),
        depths: tuple[int, ...] = (1, 2, 6, 2),
        heads: tuple[int, ...] = (1, 2, 4, 8),
        sr_ratios: tuple[int, ...] = (8, 4, 2, 1),
        skip_channels: tuple[int, ...] = (128, 128, 128, 256),
        in_ch: int = 1,
    ) -> None:
        super().__init__()
        self.stem = ConvStem(in_ch, dims[0])
        self.patch_2 = PatchEmbed(dims[0], dims[1])
        self.patch_3 = PatchEmbed(dims[1], dims[2])
        self.patch_4 = PatchEmbed(dims[2], dims[3])
        for i in range(4):
            stage = nn.ModuleList(Block(dims[i], heads[i], sr_ratios[i]) for _ in range(depths[i]))
            setattr(self, f"stage{i + 1}", stage)
            setattr(self, f"channel_mapper{i + 1}", Conv3d(dims[i], skip_channels[i], 1))

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        x = image
        embeds = (self.stem, self.patch_2, self.patch_3, self.patch_4)
        for i, embed in enumerate(embeds):
            tokens, size = embed(x)
            for blk in getattr(self, f"stage{i + 1}"):
                tokens = blk(tokens, size)
            x = _to_grid(tokens, size)
            feats.append(getattr(self, f"channel_mapper{i + 1}")(x))
        return feats
