"""The released CT-SAM3D decoder's per-click computation, op for op, as a timing baseline.

Same weights as our ``ctsam3d-paper`` model and the same function, but computed the way the
reference code does it: ``torch.no_grad`` (not inference mode), standard contiguous tensors,
the prompt interpolated separately inside each of the 10 SPADE norms, separate γ and β convs,
PyTorch's default conv dispatch (slow im2col for small inputs and all transposed convs),
the channel LayerNorm written out element-wise, a sigmoid over both head channels and the
IoU MLP. Used by ``benchmarks/model_cost.py`` to measure our decoder against it side by side.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _conv(x, conv, padding):
    return F.conv3d(x, conv.weight.contiguous(), conv.bias, padding=padding)


def _spade_norm(x, seg_full, norm):
    seg = F.interpolate(seg_full, size=x.shape[2:], mode="trilinear")
    normalized = F.instance_norm(x)
    actv = F.relu(_conv(seg, norm.mlp_shared[0], 1))
    k = norm.mlp_gamma.kernel_size[0] // 2
    return normalized * (1 + _conv(actv, norm.mlp_gamma, k)) + _conv(actv, norm.mlp_beta, k)


def _spade_block(x, seg, blk):
    dx = _conv(F.leaky_relu(_spade_norm(x, seg, blk.norm_0), 0.2), blk.conv_0, 1)
    if blk.convs == 2:
        dx = _conv(F.leaky_relu(_spade_norm(dx, seg, blk.norm_1), 0.2), blk.conv_1, 1)
    return x + dx


def _cna(x, up):
    conv, ln = up.cna[0], up.cna[1]
    x = F.conv_transpose3d(x, conv.weight.contiguous(), conv.bias, stride=2)
    u = x.mean(1, keepdim=True)
    s = (x - u).pow(2).mean(1, keepdim=True)
    x = (x - u) / torch.sqrt(s + ln.eps)
    x = ln.weight[:, None, None, None] * x + ln.bias[:, None, None, None]
    return F.gelu(x)


@torch.no_grad()
def reference_decode(model, features, prompt):
    """Per-click decode of a ``ctsam3d-paper`` model the reference's way.

    features: encoder outputs (fine→coarse, contiguous); prompt ``(B, 3, D, H, W)``.
    Returns ``(mask probabilities (B, 1, D, H, W), iou (B, 1))`` like the reference.
    """
    dec = model.mask_decoder
    features = [f.contiguous() for f in features]
    prompt = prompt.contiguous()
    x = features[-1]
    for i in range(dec.levels):
        if i > 0:
            x = _cna(x, getattr(dec, f"upscale{i}"))
            if i < dec.n_skips:
                x = torch.cat([x, features[-(i + 1)]], dim=1)
        x = _spade_block(x, prompt, getattr(dec, f"spade{i + 1}"))
    x = _cna(x, getattr(dec, f"upscale{dec.levels}"))
    head = dec.mask_prediction_head[0]
    masks = torch.sigmoid(_conv(x, head, head.kernel_size[0] // 2))
    v = F.adaptive_avg_pool3d(x, 1).flatten(1)
    layers = dec.iou_prediction_head.layers
    for j, layer in enumerate(layers):
        v = layer(v)
        if j < len(layers) - 1:
            v = F.relu(v)
    return masks[:, :1], v[:, :1]
