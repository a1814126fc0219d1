"""Drop-in conv layers with a fast CPU inference path (same parameters, same function).

PyTorch picks its slow im2col 3D convolution for small inputs (batch·C·D·H ≤ 20480) and for
all transposed convs, which dominates a per-click decode on a laptop CPU. In inference on
CPU (no autograd, float32) these layers call oneDNN directly, which is exact up to float
summation order; everywhere else (training, GPU) they are plain ``nn.Conv3d`` /
``nn.ConvTranspose3d``. State-dict names and shapes are unchanged.

Run inference with ``channels_last_3d`` tensors for the full benefit
(:func:`ctsam3d.modeling.ctsam3d.CTSAM3D.optimize_for_inference`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import winograd

_HAS_MKLDNN = hasattr(torch, "mkldnn_convolution") and torch.backends.mkldnn.is_available()


def _fast_ok(x: torch.Tensor) -> bool:
    return (
        _HAS_MKLDNN
        and torch.backends.mkldnn.enabled
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and not torch.is_grad_enabled()
    )


def conv3d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: int) -> torch.Tensor:
    """Stride-1 3D convolution through oneDNN on CPU inference (wide 3×3×3 ones with Winograd
    along z, :mod:`ctsam3d.modeling.winograd`), ``F.conv3d`` otherwise."""
    if _fast_ok(x):
        if winograd.applies(x, weight, padding):
            return winograd.conv3d_winograd_z(x, weight, bias, padding)
        if x.is_contiguous(memory_format=torch.channels_last_3d):
            weight = weight.contiguous(memory_format=torch.channels_last_3d)
        return torch.mkldnn_convolution(x, weight, bias, [padding] * 3, [1] * 3, [1] * 3, 1)
    return F.conv3d(x, weight, bias, padding=padding)


def conv3d_one_output(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Stride-1, 'same'-padded 3D conv with ONE output channel: ``(B, C, D, H, W) -> (B, 1, D, H, W)``.

    oneDNN is slow for a single output channel (~6 GFLOP/s); here one matmul gives each voxel's
    k³ tap products and k³ shifted adds sum them (~1.6x faster for the reference's 64³ head).
    """
    b, c, d, h, w = x.shape
    k = weight.shape[-1]
    p = k // 2
    taps = (x.permute(0, 2, 3, 4, 1).reshape(-1, c) @ weight[0].reshape(c, k**3)).t()
    out = x.new_zeros((b, d + 2 * p, h + 2 * p, w + 2 * p))
    add_taps(out, taps.reshape(k, k, k, b, d, h, w))
    return (out[:, p : p + d, p : p + h, p : p + w] + bias).unsqueeze(1)


def add_taps(out: torch.Tensor, taps: torch.Tensor, z0: int = 0) -> None:
    """Sum a 'same'-padded conv's per-tap products into ``out``: ``taps`` ``(k, k, k, ..., d, h, w)``
    holds each input voxel's product with tap ``(kz, ky, kx)``; ``out`` ``(..., D + 2p, H + 2p,
    W + 2p)`` (``p = k // 2``) is the output padded by ``p`` on each side, and the taps' first
    z plane is input plane ``z0``. In place."""
    k = taps.shape[0]
    p = k // 2
    d, h, w = taps.shape[-3:]
    for kz in range(k):  # input voxel z contributes to output z + p - kz
        zo = z0 + 2 * p - kz
        for ky in range(k):
            for kx in range(k):
                out[..., zo : zo + d, 2 * p - ky : 2 * p - ky + h, 2 * p - kx : 2 * p - kx + w] += taps[kz, ky, kx]


class Conv3d(nn.Conv3d):
    """``nn.Conv3d`` that uses oneDNN for every CPU float32 inference call (as :func:`conv3d`
    when stride-1, cubic padding and ungrouped)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plain = self.stride == (1, 1, 1) and self.dilation == (1, 1, 1) and self.groups == 1
        if _fast_ok(x) and plain and self.padding_mode == "zeros" and self.padding in ((0,) * 3, (1,) * 3):
            return conv3d(x, self.weight, self.bias, self.padding[0])
        if _fast_ok(x) and self.padding_mode == "zeros" and isinstance(self.padding, tuple):
            w = self.weight
            if x.is_contiguous(memory_format=torch.channels_last_3d):
                w = w.contiguous(memory_format=torch.channels_last_3d)
            return torch.mkldnn_convolution(
                x, w, self.bias, list(self.padding), list(self.stride), list(self.dilation), self.groups
            )
        return super().forward(x)


class ConvTranspose2x(nn.ConvTranspose3d):
    """``ConvTranspose3d(kernel 2, stride 2)``; on CPU inference computed as one matmul
    (the 2×2×2 output blocks do not overlap) followed by a block rearrangement."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(cin, cout, kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or torch.is_grad_enabled():
            return super().forward(x)
        b, cin, d, h, w = x.shape
        cout = self.out_channels
        xt = x.permute(0, 2, 3, 4, 1).reshape(-1, cin)  # free for channels_last_3d input
        wt = self.weight.reshape(cin, cout * 8)  # (cin, cout, kz, ky, kx)
        y = torch.mm(xt, wt).view(b, d, h, w, cout, 2, 2, 2)
        y = y.permute(0, 1, 5, 2, 6, 3, 7, 4).reshape(b, 2 * d, 2 * h, 2 * w, cout)
        if self.bias is not None:
            y = y + self.bias
        return y.permute(0, 4, 1, 2, 3)  # (B, cout, 2D, 2H, 2W), channels_last_3d layout


#: voxels per block of :func:`standard_layout`'s transposing copy (a 128-channel block is 0.5 MB,
#: in cache): 3.7 ms instead of 14 ms for ``contiguous()`` on a 128 × 32³ tensor (2 threads)
TRANSPOSE_BLOCK = 1024


def standard_layout(x: torch.Tensor) -> torch.Tensor:
    """``x`` ``(B, C, D, H, W)`` channels-last → the same values in the standard contiguous
    layout, copied in blocks of :data:`TRANSPOSE_BLOCK` voxels that stay in cache (PyTorch's
    ``contiguous()`` transposes the whole tensor at once, cache-unfriendly). Bit-identical."""
    b, c = x.shape[:2]
    n = x[0, 0].numel()
    out = x.new_empty(x.shape)
    for item in range(b):
        rows = x[item].permute(1, 2, 3, 0).reshape(n, c)  # a view: channels-last
        cols = out[item].view(c, n)
        for s in range(0, n, TRANSPOSE_BLOCK):
            cols[:, s : s + TRANSPOSE_BLOCK].copy_(rows[s : s + TRANSPOSE_BLOCK].t())
    return out


def instance_norm(x: torch.Tensor, eps: float = 1e-5, *, exact: bool = False) -> torch.Tensor:
    """Affine-free instance norm of ``(B, C, D, H, W)``.

    ``exact=True`` (reference-exact models) reproduces PyTorch's own kernel on a standard
    contiguous tensor bit for bit, the reference's float32 rounding: the released decoder
    amplifies rounding differences here ~1000× (two correct float32 variance formulas give
    masks 2e-4 apart). For channels-last CPU inference the statistics come from that kernel
    (:func:`torch.batch_norm_update_stats` on a standard-layout copy, :func:`standard_layout`) and are applied in the
    channels-last layout as the kernel applies them (``x · invstd + (−mean · invstd)``, one
    fused multiply-add; ``invstd`` from the variance in double), which spares the normalised
    tensor's round trip through the standard layout. Otherwise CPU inference on channels-last
    tensors uses a two-pass mean/variance that keeps the layout and is ~5-10× faster.
    """
    channels_last = x.is_contiguous(memory_format=torch.channels_last_3d) and not x.is_contiguous()
    inference_cpu = not torch.is_grad_enabled() and x.device.type == "cpu"
    if not exact and channels_last and inference_cpu:
        xc = x - x.mean(dim=(2, 3, 4), keepdim=True)
        var = (xc * xc).mean(dim=(2, 3, 4), keepdim=True)
        return xc * torch.rsqrt(var + eps)
    if channels_last and inference_cpu and x.dtype == torch.float32:
        b, c = x.shape[:2]
        mean, var = torch.batch_norm_update_stats(standard_layout(x).view(1, b * c, -1), None, None, 1.0)
        invstd = (1.0 / torch.sqrt(var.double() + eps)).float()
        shape = (b, c, 1, 1, 1)
        return torch.addcmul((-mean * invstd).view(shape), x, invstd.view(shape))
    out = F.instance_norm(x.contiguous(), eps=eps)
    if channels_last:
        out = out.contiguous(memory_format=torch.channels_last_3d)  # keep the fast layout downstream
    return out
