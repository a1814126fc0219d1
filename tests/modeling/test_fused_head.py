"""The streamed upsampling + one-channel head equals the layer-by-layer computation."""

from __future__ import annotations

import pytest
import torch

from ctsam3d.modeling import fused_head
from ctsam3d.modeling.layers import Conv3d
from ctsam3d.modeling.psap_decoder import Upscale

torch.set_num_threads(1)


@pytest.mark.parametrize(
    "shape, slab_voxels, kernel",
    [
        ((1, 16, 4, 4, 4), 4096, 3),   # one slab
        ((1, 16, 5, 6, 7), 42, 3),     # one z plane per slab
        ((2, 16, 7, 3, 4), 30, 3),     # batch of two, 2 planes per slab, a short last slab
        ((1, 16, 6, 5, 4), 20, 1),     # 1×1×1 head
        ((1, 16, 6, 5, 4), 40, 5),     # 5×5×5 head: taps reach two planes past a slab
    ],
)
def test_streamed_head_equals_layer_by_layer(shape, slab_voxels, kernel, monkeypatch):
    torch.manual_seed(0)
    up = Upscale(shape[1], 8).eval()
    head = Conv3d(8, 2, kernel, padding=kernel // 2).eval()
    with torch.no_grad():
        for p in list(up.parameters()) + list(head.parameters()):
            p.normal_(0, 0.5)
    x = torch.randn(shape).contiguous(memory_format=torch.channels_last_3d)
    with torch.no_grad(), torch.enable_grad():  # the plain (training-mode) layers
        full = up(x)
        want_logits = head(full)[:, :1].detach()
        want_pooled = full.mean(dim=(2, 3, 4)).detach()
    monkeypatch.setattr(fused_head, "SLAB_VOXELS", slab_voxels)
    with torch.inference_mode():
        logits, pooled = fused_head.upsample_head(x, up, head)
    assert logits.shape == (shape[0], 1, 2 * shape[2], 2 * shape[3], 2 * shape[4])
    assert pooled.shape == (shape[0], 8)
    torch.testing.assert_close(logits, want_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(pooled, want_pooled, rtol=1e-5, atol=1e-6)
