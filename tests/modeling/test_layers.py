"""Fast CPU inference layers compute the plain layers' function."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ctsam3d.modeling.layers import TRANSPOSE_BLOCK, instance_norm, standard_layout

torch.set_num_threads(1)

SHAPES = [
    (1, 128, 16, 16, 16),  # the paper decoder's channel counts
    (1, 256, 8, 8, 8),
    (1, 768, 2, 2, 2),
    (2, 24, 5, 7, 9),      # a batch; channels and edges not multiples of the vector width
    (1, 17, 3, 3, 3),
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("scale, offset", [(1.0, 0.0), (0.01, 100.0), (50.0, -3.0)])
def test_exact_instance_norm_is_pytorchs_bit_for_bit_in_channels_last(shape, scale, offset):
    """Reference-exact models: the released decoder amplifies the norm's rounding ~1000×, so
    the channels-last inference path must reproduce PyTorch's standard-layout kernel exactly
    (a large offset over a small spread is where variance formulas part ways)."""
    g = torch.Generator().manual_seed(sum(shape))
    x = (torch.randn(shape, generator=g) * scale + offset).contiguous(memory_format=torch.channels_last_3d)
    with torch.inference_mode():
        want = F.instance_norm(x.contiguous(), eps=1e-5)
        got = instance_norm(x, eps=1e-5, exact=True)
    assert got.is_contiguous(memory_format=torch.channels_last_3d)  # the layout is kept
    assert torch.equal(got, want)


@pytest.mark.parametrize("layout", [torch.channels_last_3d, torch.contiguous_format])
@pytest.mark.parametrize("exact", [True, False])
def test_instance_norm_matches_pytorch(layout, exact):
    g = torch.Generator().manual_seed(3)
    x = (torch.randn((1, 32, 8, 9, 10), generator=g) * 4 + 2).contiguous(memory_format=layout)
    want = F.instance_norm(x.contiguous(), eps=1e-5)
    with torch.inference_mode():
        fast = instance_norm(x, exact=exact)
    with torch.enable_grad():  # training: PyTorch's own op, differentiable
        y = x.clone().requires_grad_(True)
        trained = instance_norm(y, exact=exact)
        trained.sum().backward()
    assert torch.allclose(fast, want, atol=1e-5) and torch.allclose(trained.detach(), want, atol=1e-6)
    assert y.grad is not None


@pytest.mark.parametrize("shape", SHAPES + [(1, 8, 3, 11, TRANSPOSE_BLOCK // 11 + 5)])  # blocks + a remainder
def test_standard_layout_copies_exactly(shape):
    x = torch.randn(shape).contiguous(memory_format=torch.channels_last_3d)
    got = standard_layout(x)
    assert got.is_contiguous() and torch.equal(got, x)
