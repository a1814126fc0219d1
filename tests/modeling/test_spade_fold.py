"""Folding the constant part of SPADE for sparse prompts computes the same γ/β and block output."""

from __future__ import annotations

import pytest
import torch

from ctsam3d.modeling import spade_fold
from ctsam3d.modeling.prompts import build_prompt, render_click_maps
from ctsam3d.modeling.spade import SpadeBlock

torch.set_num_threads(1)


def _block(convs, gamma_kernel, seed=0):
    torch.manual_seed(seed)
    blk = SpadeBlock(16, convs=convs, hidden=8, gamma_kernel=gamma_kernel).eval()
    with torch.no_grad():
        for p in blk.parameters():
            p.normal_(0, 0.3)  # biases not small: a wrong constant field would show
    return blk.to(memory_format=torch.channels_last_3d)


def _close(a, b, rel=1e-5):
    return float((a - b).abs().max()) <= rel * max(1.0, float(b.abs().max()))


def _prompt(size, pos, neg, prev=None):
    maps, _ = render_click_maps([pos], [neg], size)
    return build_prompt(maps, prev).contiguous(memory_format=torch.channels_last_3d)


CASES = [
    ([(10, 12, 9)], []),                      # one click
    ([(0, 0, 0)], [(47, 47, 39)]),            # corners: boxes clipped at the grid edge
    ([(2, 30, 5), (40, 3, 28)], [(22, 24, 1)]),
    ([(20, 20, 20), (24, 22, 21)], []),       # overlapping clicks: one box
    ([], []),                                 # empty prompt: the cached field alone
]


@pytest.mark.parametrize("convs, gamma_kernel", [(2, 3), (1, 1)])
@pytest.mark.parametrize("pos, neg", CASES)
def test_folded_equals_dense(convs, gamma_kernel, pos, neg, monkeypatch):
    size = (48, 48, 40)
    blk = _block(convs, gamma_kernel)
    prompt = _prompt(size, pos, neg)
    x = torch.randn(1, 16, *size).contiguous(memory_format=torch.channels_last_3d)
    norms = [blk.norm_0] + ([blk.norm_1] if convs == 2 else [])
    with torch.inference_mode():
        folded = spade_fold.folded_modulation(norms, prompt)
        assert folded is not None
        for norm, entry in zip(norms, folded):
            g_ref, b_ref = norm.modulation(prompt)
            ones = torch.ones_like(g_ref)
            # apply_folded(1, ·) = 1 + γ + β and apply_folded(0, ·) = β reveal γ and β everywhere
            beta = spade_fold.apply_folded(torch.zeros_like(ones), entry)
            gamma = spade_fold.apply_folded(ones, entry) - 1 - beta
            assert _close(gamma, g_ref) and _close(beta, b_ref)
        out = blk(x, prompt)
        if pos or neg:
            monkeypatch.setattr(spade_fold, "MAX_BOX_FRACTION", -1.0)  # force the dense path
            assert spade_fold.folded_modulation(norms, prompt) is None
            assert _close(out, blk(x, prompt))
    with torch.no_grad(), torch.enable_grad():  # the plain training-mode path
        plain = blk(x.contiguous(), prompt.contiguous())
    assert _close(out, plain.detach())


def test_dense_prompt_is_not_folded():
    blk = _block(2, 3)
    prompt = _prompt((16, 16, 16), [(5, 5, 5)], [], prev=torch.full((1, 1, 16, 16, 16), 0.01))
    with torch.inference_mode():
        assert spade_fold.folded_modulation([blk.norm_0, blk.norm_1], prompt) is None


def test_cache_follows_weight_changes():
    blk = _block(1, 3)
    prompt = _prompt((16, 16, 16), [], [])
    with torch.inference_mode():
        first = spade_fold.folded_modulation([blk.norm_0], prompt)[0][0].clone()
    with torch.no_grad():
        blk.norm_0.mlp_gamma.bias.add_(1.0)
    with torch.inference_mode():
        second = spade_fold.folded_modulation([blk.norm_0], prompt)[0][0]
        assert not spade_fold.folded_modulation([blk.norm_0], prompt)[0][2]  # empty prompt: no boxes
    assert _close(second, first + 1.0)
