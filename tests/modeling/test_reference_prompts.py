"""Reference-exact prompt details beyond the network golden test: clicks just outside the patch,
and the quality head's raw output."""

from __future__ import annotations

import pytest
import torch

from ctsam3d.modeling.prompts import gaussian_kernel, render_click_maps
from ctsam3d.modeling.quality import QualityHead


@pytest.mark.parametrize("outside", [1, 3, 8])
def test_reference_click_up_to_radius_outside_draws_its_inside_part(outside):
    maps, dropped = render_click_maps([[(-outside, 10, 10)]], [[]], (32, 32, 32), reference=True)
    assert dropped == []
    kern = gaussian_kernel(2.0, 8)
    part = kern[8 + outside :, :, :]  # kernel rows z = 0 .. 8 - outside of the patch
    expect = part / part.max()  # min-max scaled: a lone cut click peaks at 1 again
    got = maps[0, 0, : 9 - outside, 2:19, 2:19]
    assert torch.allclose(got, expect, atol=1e-6)
    assert float(maps[0, 0].max()) == pytest.approx(1.0)


@pytest.mark.parametrize("reference, where, drawn", [(True, -9, False), (True, 40, False), (False, -1, False),
                                                     (True, 39, True)])
def test_clicks_beyond_reach_are_dropped(reference, where, drawn):
    maps, dropped = render_click_maps([[(where, 5, 5)]], [[]], (32, 32, 32), reference=reference)
    assert bool(maps.sum() > 0) == drawn
    assert (dropped == []) == drawn


def test_quality_head_raw_output_is_the_pre_sigmoid_value():
    torch.manual_seed(0)
    raw = QualityHead(8, hidden=4, layers=3, outputs=2, raw=True)
    squashed = QualityHead(8, hidden=4, layers=3, outputs=2)
    squashed.load_state_dict(raw.state_dict())
    feats, logits = torch.randn(2, 8, 4, 4, 4), torch.randn(2, 1, 4, 4, 4)
    assert torch.allclose(torch.sigmoid(raw(feats, logits)), squashed(feats, logits))
