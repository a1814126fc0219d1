"""Click simulation inside training: both backends, and the interactive step's click loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ctsam3d.clicks import first_click, next_click
from ctsam3d.training.clicks import add_next_clicks, first_clicks


def _case(shape=(24, 24, 24)):
    """Target: a 10³ cube; prediction misses a 4-voxel-thick slab of it and adds a smaller
    2-voxel-thick false slab outside it -> the missed region is the largest error."""
    t = torch.zeros((1, 1) + shape)
    t[..., 4:14, 4:14, 4:14] = 1
    p = t.clone()
    p[..., 4:14, 4:14, 10:14] = 0  # missed: 10*10*4 = 400 voxels
    p[..., 16:18, 4:14, 4:14] = 1  # false: 2*10*10 = 200 voxels
    return t, p


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_next_click_goes_into_the_largest_error(backend):
    t, p = _case()
    from ctsam3d.training.clicks import ClickState

    st = ClickState(1)
    add_next_clicks(st, t, p, backend)
    assert st.neg == [[]] and len(st.pos[0]) == 1
    z, y, x = st.pos[0][0]
    assert t[0, 0, z, y, x] == 1 and p[0, 0, z, y, x] == 0  # inside the missed region
    # swap roles: a large false region gets a negative click
    st2 = ClickState(1)
    add_next_clicks(st2, p * 0 + (t * 0), t, backend)  # predicted cube, empty target
    assert st2.pos == [[]] and len(st2.neg[0]) == 1


def test_numpy_backend_is_the_shared_protocol():
    t, p = _case()
    tn, pn = t[0, 0].numpy() > 0.5, p[0, 0].numpy() > 0.5
    st = first_clicks(t, np.random.default_rng(0), 0.0, "numpy")
    assert st.pos[0] == [first_click(tn)]
    add_next_clicks(st, t, p, "numpy")
    click, positive = next_click(tn, pn)
    assert st.pos[0][1] == click and positive


def test_torch_first_click_is_deep_inside():
    t, _ = _case()
    st = first_clicks(t, np.random.default_rng(0), 0.0, "torch")
    z, y, x = st.pos[0][0]
    assert all(8 <= v <= 9 for v in (z, y, x))  # centre of the 4..13 cube


def test_empty_target_gets_no_click():
    st = first_clicks(torch.zeros(2, 1, 8, 8, 8), np.random.default_rng(0), 0.5, "numpy")
    assert st.pos == [[], []]


class _Spy(torch.nn.Module):
    """Wraps a network, recording grad mode and prompts of every decode."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.calls = []

    def encode(self, image):
        return self.net.encode(image)

    def render_prompt(self, pos, neg, prev):
        self.calls.append({"pos": [list(c) for c in pos], "neg": [list(c) for c in neg], "prev": prev})
        return self.net.render_prompt(pos, neg, prev)

    def decode(self, feats, prompt):
        self.calls[-1]["grad"] = torch.is_grad_enabled()
        out = self.net.decode(feats, prompt)
        self.calls[-1]["logits"] = out[0].detach()
        return out

    def cpp(self, *a):
        return self.net.cpp(*a)


def test_interactive_step_feeds_predictions_back_and_backprops_last_round_only():
    from train_helpers import TINY_MODEL

    from ctsam3d.modeling import build_model
    from ctsam3d.training.config import LossConfig
    from ctsam3d.training.loop import _merge
    from ctsam3d.modeling import ModelConfig, get_preset
    from ctsam3d.training.step import InteractiveStep

    torch.manual_seed(0)
    mc = ModelConfig.from_dict(_merge(get_preset("ctsam3d-lite").to_dict(), TINY_MODEL))
    spy = _Spy(build_model(mc))
    step = InteractiveStep(spy, LossConfig())
    target = torch.zeros(2, 1, 32, 32, 32)
    target[:, :, 8:20, 10:22, 6:18] = 1
    batch = {"image": torch.rand(2, 1, 32, 32, 32), "target": target}
    out = step(batch, 4, np.random.default_rng(0))
    assert [c["grad"] for c in spy.calls] == [False, False, False, True]
    assert spy.calls[0]["prev"] is None
    for prev_call, call in zip(spy.calls, spy.calls[1:]):
        torch.testing.assert_close(call["prev"], torch.sigmoid(prev_call["logits"].float()))
        for b in range(2):  # exactly one click added per round unless the mask was perfect
            n_before = len(prev_call["pos"][b]) + len(prev_call["neg"][b])
            assert len(call["pos"][b]) + len(call["neg"][b]) == n_before + 1
    out["total"].backward()
    # no CPP pair in this batch: every parameter but the CPP net's gets a gradient
    grads = [p.grad for n, p in spy.net.named_parameters() if not n.startswith("cpp_predictor.")]
    assert all(g is not None for g in grads) and any(float(g.abs().sum()) > 0 for g in grads)
    assert torch.isfinite(out["total"]) and 0.0 <= float(out["train_dice"]) <= 1.0
