"""The decoder's last ×2 upsampling and its one-channel mask head, streamed in z slabs (CPU
inference only; same function, float rounding only).

The reference's tail is ``ConvTranspose3d(k=2, s=2) → channel LayerNorm → GELU`` to the full
patch (64³ × 64 channels, 64 MB in float32) followed by a 3×3×3 conv of which one output
channel is used. Done layer by layer, every step allocates and writes a fresh 64 MB tensor
(page faults included), which costs more than its arithmetic. Here each slab of a few input
z planes goes through upsampling, LayerNorm, GELU and the head's tap products while it is in
cache; the taps are accumulated into the padded full-size logits by shifted adds, so the wide
full-size tensor never exists. The pooled features the quality head needs are summed on the
way.

Shapes: ``x`` ``(B, Cin, D, H, W)`` (decoder features at half the patch resolution) →
logits ``(B, 1, 2D, 2H, 2W)`` and pooled features ``(B, Cout)`` (the mean of the upsampled
features over the patch).
"""

from __future__ import annotations

import torch

from .layers import add_taps

#: input voxels per slab (4 z planes of a 32² grid): measured fastest on a 2-core CPU, and
#: small enough that a slab's 64-channel upsampled block (4 MB) stays in cache
SLAB_VOXELS = 4096


def upsample_head(x: torch.Tensor, upscale, head) -> tuple[torch.Tensor, torch.Tensor]:
    """``upscale``: the :class:`~ctsam3d.modeling.psap_decoder.Upscale` CNA (ConvTranspose2x →
    ChannelLayerNorm → GELU); ``head``: the mask head conv (odd kernel, 'same' padding), of
    which output channel 0 is computed. Returns ``(logits (B, 1, 2D, 2H, 2W), pooled (B, Cout))``."""
    b, cin, d, h, w = x.shape
    cout = upscale.cna[0].out_channels
    k = head.kernel_size[0]
    p = k // 2
    wh = head.weight[0].reshape(cout, k**3)  # (cout, k³): one column per tap
    slab = max(1, SLAB_VOXELS // (h * w))
    logits, pooled = [], []
    for item in range(b):
        out = x.new_zeros((2 * d + 2 * p, 2 * h + 2 * p, 2 * w + 2 * p))
        total = x.new_zeros(cout)
        xl = x[item].permute(1, 2, 3, 0)  # (d, h, w, cin): a view for channels-last input
        for z0 in range(0, d, slab):
            zs = min(d, z0 + slab) - z0
            y = upscale.rows(xl[z0 : z0 + zs].reshape(-1, cin))  # rows (z, y, x, a, b, c)
            total += y.sum(0)
            # rows × taps (a tall product, faster than taps × rows), then tap-major planes
            taps = torch.mm(y, wh).view(zs, h, w, 2, 2, 2, k**3)
            add_taps(out, taps.permute(6, 0, 3, 1, 4, 2, 5).reshape(k, k, k, 2 * zs, 2 * h, 2 * w), 2 * z0)
        logits.append(out[p : p + 2 * d, p : p + 2 * h, p : p + 2 * w] + head.bias[0])
        pooled.append(total / (8 * d * h * w))
    return torch.stack(logits)[:, None], torch.stack(pooled)
