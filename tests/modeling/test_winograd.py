"""Winograd F(m, 3) along z (modeling/winograd.py): the same convolution up to float rounding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ctsam3d.modeling import winograd
from ctsam3d.modeling.layers import Conv3d, conv3d

CL = torch.channels_last_3d


def _case(b, cin, cout, size, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((b, cin, *size), generator=g).relu().contiguous(memory_format=CL)
    w = torch.randn((cout, cin, 3, 3, 3), generator=g) / (3 * cin**0.5)
    bias = torch.randn((cout,), generator=g)
    return x, w, bias


def _check(got, x, w, bias, padding, ulps):
    """``got`` equals the float64 convolution up to ``ulps`` float32 rounding units of each
    output's absolute sum ``Σ|w·x| + |bias|`` (a wrong transform is off by O(1) of it)."""
    want = F.conv3d(x.double(), w.double(), bias.double(), padding=padding)
    assert got.shape == want.shape
    scale = F.conv3d(x.double().abs(), w.double().abs(), bias.double().abs(), padding=padding)
    err = (got.double() - want).abs() / scale
    direct = (F.conv3d(x, w, bias, padding=padding).double() - want).abs() / scale
    eps = torch.finfo(torch.float32).eps
    assert float(err.max()) <= ulps * eps, (float(err.max()) / eps, float(direct.max()) / eps)


@pytest.mark.parametrize(
    "b, cin, cout, size, padding, m, chunk",
    [
        (1, 8, 16, (16, 6, 5), 1, 4, 4),  # 4 tiles: one round
        (1, 8, 16, (17, 6, 5), 1, 4, 2),  # 17 planes: a last tile of 1 plane, rounds of 2 tiles
        (1, 8, 16, (13, 7, 6), 0, 4, 1),  # valid conv: 11 output planes, one tile per round
        (2, 6, 4, (10, 5, 5), 1, 4, 4),  # batch of two
        (1, 8, 16, (16, 6, 5), 1, 2, 4),  # F(2, 3)
        (1, 8, 16, (9, 6, 5), 0, 2, 2),  # F(2, 3), odd output depth (7 planes)
        (1, 5, 3, (4, 4, 4), 1, 4, 4),  # a single tile
    ],
)
def test_equals_the_convolution(b, cin, cout, size, padding, m, chunk):
    x, w, bias = _case(b, cin, cout, size)
    with torch.inference_mode():
        got = winograd.conv3d_winograd_z(x, w, bias, padding, m, chunk)
    assert got.is_contiguous(memory_format=CL)
    _check(got, x, w, bias, padding, ulps=16)


def test_input_that_is_a_channel_slice():
    """The decoder passes one norm's half of a fused activation (not contiguous)."""
    x, w, bias = _case(1, 16, 8, (12, 5, 6))
    wide = torch.cat([x, x.flip(1)], 1).contiguous(memory_format=CL)
    part = wide[:, :16]
    assert not part.is_contiguous(memory_format=CL)
    with torch.inference_mode():
        got = winograd.conv3d_winograd_z(part, w, bias, 1)
    _check(got, x, w, bias, 1, ulps=16)


def test_filters_follow_the_weight():
    """Transformed filters are cached on the weight and recomputed when it changes in place."""
    x, w, bias = _case(1, 4, 4, (8, 4, 4))
    w = torch.nn.Parameter(w)
    with torch.inference_mode():
        first = winograd.conv3d_winograd_z(x, w, bias, 1)
        assert winograd.filters(w) is winograd.filters(w)  # cached
    with torch.no_grad():
        w.mul_(2)
    with torch.inference_mode():
        second = winograd.conv3d_winograd_z(x, w, bias, 1)
    torch.testing.assert_close(second - bias.view(1, -1, 1, 1, 1), 2 * (first - bias.view(1, -1, 1, 1, 1)))


@pytest.mark.parametrize(
    "cin, cout, size, padding, used",
    [
        (128, 128, (16, 16, 10), 1, True),  # the paper decoder's widths, 128 · 128 · 2560 voxels
        (128, 256, (14, 13, 13), 0, True),  # a γβ box: 12 · 11 · 11 output voxels
        (128, 128, (8, 8, 8), 1, False),  # too little work: the transforms cost more
        (256, 256, (8, 8, 8), 1, False),
        (64, 256, (32, 32, 32), 1, False),  # too narrow
        (128, 128, (4, 32, 32), 0, False),  # 2 output planes: no tile to share
        (256, 256, (8, 8, 8), 2, False),  # padding other than 0 or 1
    ],
)
def test_applies(cin, cout, size, padding, used):
    x = torch.empty((1, cin, *size))
    assert winograd.applies(x, torch.empty((cout, cin, 3, 3, 3)), padding) is used
    assert not winograd.applies(x, torch.empty((cout, cin, 1, 1, 1)), 0)


def test_conv_layers_use_it_in_cpu_inference_only(monkeypatch):
    x, w, bias = _case(1, 128, 128, (10, 16, 16))
    conv = Conv3d(128, 128, 3, padding=1)
    with torch.no_grad():
        conv.weight.copy_(w)
        conv.bias.copy_(bias)
    calls = []
    real = winograd.conv3d_winograd_z
    monkeypatch.setattr(winograd, "conv3d_winograd_z", lambda *a, **k: calls.append(1) or real(*a, **k))
    with torch.inference_mode():
        fast_fn, fast_module = conv3d(x, w, bias, 1), conv(x)
    assert len(calls) == 2
    _check(fast_fn, x, w, bias, 1, ulps=16)
    torch.testing.assert_close(fast_module, fast_fn, rtol=0, atol=0)
    trained = conv(x)  # autograd: the standard convolution
    assert len(calls) == 2 and trained.requires_grad
    torch.testing.assert_close(trained.detach(), F.conv3d(x, w, bias, padding=1), rtol=0, atol=0)


@pytest.mark.parametrize("m", sorted(winograd.TRANSFORMS))
def test_transforms_are_the_winograd_matrices(m):
    """The shared-partial-sum transforms compute Bᵀ d and Aᵀ M of :data:`winograd.TRANSFORMS`
    (the output one also for a last tile cut short by the output depth)."""
    bt, _, at = (torch.tensor(t, dtype=torch.float64) for t in winograd.TRANSFORMS[m])
    g = torch.Generator().manual_seed(m)
    d = torch.randn((m + 2, 1, 2, 3, 4, 5), generator=g, dtype=torch.float64)
    got = torch.stack(winograd.input_transform(m, list(d)))
    torch.testing.assert_close(got, torch.einsum("kj,j...->k...", bt, d))
    mk = torch.randn((m + 2, 1, 2, 3, 4, 5), generator=g, dtype=torch.float64)
    want = torch.einsum("rk,k...->r...", at, mk)
    out = torch.full((m, 1, 2, 3, 4, 5), float("nan"), dtype=torch.float64)
    views = [out[r, :, :, : 3 - (r >= m - 1)] for r in range(m)]  # the last row one plane short
    winograd.output_transform(m, list(mk), views)
    for r in range(m):
        n = views[r].shape[2]
        torch.testing.assert_close(out[r, :, :, :n], want[r, :, :, :n])
        assert torch.isnan(out[r, :, :, n:]).all()  # nothing written past the output
