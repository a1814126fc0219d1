"""Click maps: exact peaks, max-combination, edges, dropped clicks, survival at every scale."""

from __future__ import annotations

import pytest
import torch

from ctsam3d.errors import ClickError
from ctsam3d.modeling.prompts import PromptPyramid, build_prompt, gaussian_kernel, render_click_maps

SIZE = (64, 64, 64)


def test_kernel_peak_and_truncation():
    k = gaussian_kernel(2.0, 8)
    assert k.shape == (17, 17, 17)
    assert k[8, 8, 8] == 1.0 and k.max() == 1.0
    assert k[0, 0, 0] == 0.0  # exp(-24) < eps: cut


@pytest.mark.parametrize("click", [(30, 34, 32), (0, 0, 0), (63, 63, 63), (0, 63, 5), (7, 1, 62)])
def test_peak_exactly_on_clicked_voxel_including_edges(click):
    maps, dropped = render_click_maps([[click]], [[]], SIZE)
    assert dropped == []
    pos = maps[0, 0]
    assert pos[click] == 1.0
    assert torch.nonzero(pos == pos.max()).tolist() == [list(click)]
    assert maps[0, 1].sum() == 0


def test_overlapping_clicks_take_maximum_not_overwrite():
    a, b = (30, 30, 30), (30, 30, 33)
    maps, _ = render_click_maps([[a, b]], [[]], SIZE)
    single_a, _ = render_click_maps([[a]], [[]], SIZE)
    single_b, _ = render_click_maps([[b]], [[]], SIZE)
    assert torch.equal(maps, torch.maximum(single_a, single_b))
    assert maps[0, 0][a] == 1.0 and maps[0, 0][b] == 1.0
    # the reference overwrites: the later click's tail replaces the earlier peak region
    ref, _ = render_click_maps([[a, b]], [[]], SIZE, reference=True)
    assert ref[0, 0][a] < 1.0


def test_outside_clicks_dropped_and_reported(caplog):
    maps, dropped = render_click_maps([[(10, 10, 10), (64, 0, 0)]], [[(-1, 5, 5)]], SIZE)
    assert dropped == [(0, "pos", (64, 0, 0)), (0, "neg", (-1, 5, 5))]
    assert maps[0, 1].sum() == 0 and maps[0, 0][10, 10, 10] == 1.0
    assert "dropped 2 click" in caplog.text


@pytest.mark.parametrize("bad", [[(1, 2)], [(1.0, float("nan"), 3.0)], [5]])
def test_malformed_clicks_raise(bad):
    with pytest.raises(ClickError):
        render_click_maps([bad], [[]], SIZE)


def test_prev_mask_shape_checked():
    maps, _ = render_click_maps([[]], [[]], SIZE)
    with pytest.raises(ClickError):
        build_prompt(maps, torch.zeros(1, 1, 32, 32, 32))


@pytest.mark.parametrize("click", [(30, 34, 32), (0, 0, 0), (63, 63, 63), (17, 46, 3), (8, 8, 8)])
def test_click_peak_survives_at_every_decoder_scale(click):
    """Default mode: at each scale the coarse voxel containing the click holds the map's peak."""
    maps, _ = render_click_maps([[click]], [[click]], SIZE)
    pyramid = PromptPyramid(build_prompt(maps, None))
    for n in (32, 16, 8, 4, 2):
        p = pyramid.at((n, n, n))
        f = SIZE[0] // n
        expect = [c // f for c in click]
        for ch in (0, 1):
            m = p[0, ch]
            assert m[tuple(expect)] == 1.0, (n, ch)
            assert torch.nonzero(m == m.max()).tolist() == [expect]


def test_reference_mode_loses_click_at_coarse_scale():
    """Documents the reference defect that the default mode fixes."""
    maps, _ = render_click_maps([[(30, 34, 32)]], [[]], SIZE, reference=True)
    p = PromptPyramid(build_prompt(maps, None), reference=True).at((2, 2, 2))
    assert p[0, 0].max() < 0.01


def test_pyramid_equals_direct_pooling():
    g = torch.Generator().manual_seed(0)
    prompt = torch.rand((1, 3, *SIZE), generator=g)
    pyr = PromptPyramid(prompt)
    for n in (32, 8, 16, 4, 2):  # any order
        direct = torch.cat(
            [
                torch.nn.functional.adaptive_max_pool3d(prompt[:, :2], n),
                torch.nn.functional.adaptive_avg_pool3d(prompt[:, 2:], n),
            ],
            1,
        )
        assert torch.allclose(pyr.at((n, n, n)), direct, atol=1e-6)
