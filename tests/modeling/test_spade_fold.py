"""Folding the constant part of SPADE for sparse prompts computes the same γ/β and block output."""

from __future__ import annotations

import numpy as np
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
            gamma, beta = entry.dense()
            assert _close(gamma, g_ref) and _close(beta, b_ref)
            # apply_folded(1, ·) = 1 + γ + β
            assert _close(spade_fold.apply_folded(ones, entry), 1 + g_ref + b_ref)
        out = blk(x, prompt)
        if pos or neg:
            monkeypatch.setattr(spade_fold, "MAX_RECOMPUTE_FRACTION", -1.0)  # force the dense path
            assert spade_fold.folded_modulation(norms, prompt) is None
            assert _close(out, blk(x, prompt))
    with torch.no_grad(), torch.enable_grad():  # the plain training-mode path
        plain = blk(x.contiguous(), prompt.contiguous())
    assert _close(out, plain.detach())


def test_later_click_with_a_sparse_previous_mask_is_folded_exactly():
    """A later click: previous mask non-zero only around an object (as the session stores it)."""
    size = (32, 32, 32)
    blk = _block(2, 3)
    prev = torch.zeros((1, 1, *size))
    prev[0, 0, 10:16, 10:14, 10:20] = 0.9
    prev[0, 0, 9, 10:14, 10:20] = 0.02
    prompt = _prompt(size, [(12, 12, 12), (13, 12, 16)], [(13, 12, 21)], prev=prev)
    x = torch.randn(1, 16, *size).contiguous(memory_format=torch.channels_last_3d)
    with torch.inference_mode():
        grown = spade_fold.grown_support(prompt, 2)
        assert 0 < float(grown.float().mean()) < 0.5  # only part of the grid recomputed
        folded = spade_fold.folded_modulation([blk.norm_0, blk.norm_1], prompt)
        assert folded is not None
        for norm, entry in zip([blk.norm_0, blk.norm_1], folded):
            gamma, beta = entry.dense()
            g_ref, b_ref = norm.modulation(prompt)
            assert _close(gamma, g_ref) and _close(beta, b_ref)
        out = blk(x, prompt)
    with torch.no_grad(), torch.enable_grad():
        plain = blk(x.contiguous(), prompt.contiguous())
    assert _close(out, plain.detach())


@pytest.mark.parametrize("size, halo", [((16, 16, 16), 2), ((13, 9, 17), 1), ((40, 33, 32), 2)])
def test_grown_support_is_the_prompt_dilated_within_the_grid(size, halo):
    g = torch.Generator().manual_seed(sum(size))
    prompt = torch.zeros((1, 3, *size))
    for _ in range(3):
        z, y, x = (int(torch.randint(0, s, (1,), generator=g)) for s in size)
        prompt[0, 1, z, y, x] = 1.0
    got = {tuple(v) for v in spade_fold.grown_support(prompt, halo).nonzero().tolist()}
    want = set()
    for z, y, x in (prompt[0] != 0).any(0).nonzero().tolist():
        for dz in range(-halo, halo + 1):
            for dy in range(-halo, halo + 1):
                for dx in range(-halo, halo + 1):
                    p = (z + dz, y + dy, x + dx)
                    if all(0 <= p[a] < size[a] for a in range(3)):
                        want.add(p)
    assert got == want


def test_voxels_index_the_grid_in_raster_order():
    grown = torch.zeros((5, 6, 7), dtype=torch.bool)
    grown[1, 2, 3] = grown[4, 0, 6] = grown[1, 5, 0] = True
    voxels = spade_fold._voxels_of(grown)
    assert voxels.coords.tolist() == [[1, 2, 3], [1, 5, 0], [4, 0, 6]]
    assert voxels.index.tolist() == [(1 * 6 + 2) * 7 + 3, (1 * 6 + 5) * 7, (4 * 6) * 7 + 6]
    assert voxels.box == (slice(1, 5), slice(0, 6), slice(0, 7))


def test_dense_prompt_is_not_folded():
    blk = _block(2, 3)
    prompt = _prompt((16, 16, 16), [(5, 5, 5)], [], prev=torch.full((1, 1, 16, 16, 16), 0.01))
    with torch.inference_mode():
        assert spade_fold.folded_modulation([blk.norm_0, blk.norm_1], prompt) is None


def test_cache_follows_weight_changes():
    blk = _block(1, 3)
    prompt = _prompt((16, 16, 16), [], [])
    with torch.inference_mode():
        first = spade_fold.folded_modulation([blk.norm_0], prompt)[0].dense()[1]
    with torch.no_grad():
        blk.norm_0.mlp_gamma.bias.add_(1.0)
    with torch.inference_mode():
        second = spade_fold.folded_modulation([blk.norm_0], prompt)[0].dense()[1]
        assert not spade_fold.grown_support(prompt, 2).any()  # empty prompt: nothing recomputed
    assert _close(second, first)  # β unchanged by a γ bias change...
    with torch.inference_mode():
        gamma = spade_fold.folded_modulation([blk.norm_0], prompt)[0].dense()[0]
        g_ref, _ = blk.norm_0.modulation(prompt)
    assert _close(gamma, g_ref)  # ...and γ follows it (the cached field was rebuilt)


@pytest.mark.parametrize("plan", ["boxes", "voxels"])
@pytest.mark.parametrize("gamma_kernel", [3, 1])
@pytest.mark.parametrize("layout", [torch.channels_last_3d, torch.contiguous_format])
@pytest.mark.parametrize("pos, neg", CASES[:3])
def test_every_recompute_plan_is_exact(plan, gamma_kernel, layout, pos, neg):
    """Both plans give the dense γβ and modulation, whichever the cost model would pick, for
    either layout of the normalised features."""
    size = (40, 36, 32)
    blk = _block(2, gamma_kernel)
    prev = torch.zeros((1, 1, *size))
    prev[0, 0, 5:30, 20:24, 3:9] = 0.7  # a thin curved-ish slab next to the clicks
    prev[0, 0, 28:31, 3:24, 3:6] = 0.3
    prompt = _prompt(size, pos, neg, prev=prev)
    halo = 1 + gamma_kernel // 2
    grown = spade_fold.grown_support(prompt, halo)
    items = spade_fold._boxes_of(grown) if plan == "boxes" else spade_fold._voxels_of(grown)
    with torch.inference_mode():
        scale, shift = spade_fold.zero_prompt_modulation(blk.norm_0, size, prompt)
        values = spade_fold._recompute([blk.norm_0], prompt, plan, items)[0]
        folded = spade_fold.FoldedModulation(scale, shift, plan, items, values)
        g_ref, b_ref = blk.norm_0.modulation(prompt)
        gamma, beta = folded.dense()
        x = torch.randn(1, 16, *size).contiguous(memory_format=layout)
        modulated = folded.apply(x)
    assert _close(gamma, g_ref) and _close(beta, b_ref)
    assert modulated.shape == x.shape and _close(modulated, x * (1 + g_ref) + b_ref)


def test_voxel_chunks_join_exactly(monkeypatch):
    """Voxels recomputed in several chunks (the last one short) equal one chunk."""
    size = (24, 24, 24)
    blk = _block(1, 3)
    prev = torch.zeros((1, 1, *size))
    prev[0, 0, 4:20, 6:9, 4:20] = 0.5
    prompt = _prompt(size, [(12, 12, 12)], [], prev=prev)
    voxels = spade_fold._voxels_of(spade_fold.grown_support(prompt, 2))
    with torch.inference_mode():
        whole = spade_fold._recompute([blk.norm_0], prompt, "voxels", voxels)[0]
        monkeypatch.setattr(spade_fold, "VOXEL_CHUNK", 1000)
        chunked = spade_fold._recompute([blk.norm_0], prompt, "voxels", voxels)[0]
    assert voxels.index.numel() % 1000 != 0 and torch.equal(whole, chunked)


def test_the_cheaper_plan_is_chosen():
    size = (32, 32, 32)
    one_click = _prompt(size, [(16, 16, 16)], [])
    cost, kind, _ = spade_fold.plan_recompute(one_click, 2)
    assert kind == "boxes" and cost < 0.3  # (17 + 4)³ of 32³
    ring = torch.zeros((1, 1, *size))  # a U-shaped previous mask: one box would be the whole grid
    ring[0, 0, 2:30, 3, 2:30] = 0.6
    ring[0, 0, 2:30, 2:30, 3] = 0.6
    ring[0, 0, 2:30, 2:30, 28] = 0.6
    cost, kind, voxels = spade_fold.plan_recompute(_prompt(size, [], [], prev=ring), 2)
    grown = spade_fold.grown_support(_prompt(size, [], [], prev=ring), 2)
    # cheaper voxel by voxel than the one box, the whole grid
    assert kind == "voxels" and voxels.index.numel() == int(grown.sum()) and cost < 1.0
    # a narrow γβ conv (the lite preset's 16 hidden × 1 tap) is never gathered voxel by voxel
    assert spade_fold.plan_recompute(_prompt(size, [], [], prev=ring), 2, width=16)[1] == "boxes"
    tube = torch.zeros((1, 1, *size))  # a tube along z, drifting in y and x (a spinal cord)
    for z in range(32):
        tube[0, 0, z, 4 + z // 2 : 8 + z // 2, 20 - z // 2 : 24 - z // 2] = 0.9
    cost, kind, _ = spade_fold.plan_recompute(_prompt(size, [], [], prev=tube), 2)
    one_box = spade_fold._boxes_of(spade_fold.grown_support(_prompt(size, [], [], prev=tube), 2))
    assert len(one_box) == 1 and kind == "voxels"
    assert cost < 0.5 * np.prod([s.stop - s.start for s in one_box[0]]) / 32**3


TOP = 255.5 / 256  # the session's top stored level


@pytest.mark.parametrize(
    "box, pos, neg",
    [
        ((slice(-9, 41), slice(-9, 41), slice(-9, 20)), [(16, 16, 10)], []),         # past 5 grid faces
        ((slice(-9, 41), slice(2, 41), slice(-9, 41)), [(10, 12, 9)], [(30, 20, 20)]),
        ((slice(-9, 24), slice(-9, 41), slice(-9, 41)), [], []),                      # no click at all
    ],
)
def test_constant_interior_is_folded_exactly(box, pos, neg, monkeypatch):
    """A large object's later click: inside, the prompt is the constant (0, 0, top level)."""
    monkeypatch.setattr(spade_fold, "MIN_VOXEL_WIDTH", 0)  # the test block's γβ conv is narrow
    monkeypatch.setattr(spade_fold, "VOXEL_COST", {0: 1.0})  # and its dense conv plain, no Winograd
    size = (32, 32, 32)
    blk = _block(2, 3)
    prev = torch.zeros((1, 1, *size))
    big = torch.zeros((1, 1, *(s + 18 for s in size)))  # the object, on a grid 9 voxels larger
    big[(0, 0) + tuple(slice(s.start + 9, s.stop + 9) for s in box)] = 0.3  # a soft shell...
    big[(0, 0) + tuple(slice(s.start + 10, s.stop + 8) for s in box)] = TOP  # ...around the top level
    prev = big[:, :, 9:-9, 9:-9, 9:-9].clone()
    prompt = _prompt(size, pos, neg, prev=prev)
    x = torch.randn(1, 16, *size).contiguous(memory_format=torch.channels_last_3d)
    with torch.inference_mode():
        interior = spade_fold.constant_interior(prompt, 2)
        assert interior is not None and interior.value == (0.0, 0.0, TOP)
        assert 0.3 < float(interior.mask.float().sum()) / 32**3 < 0.9
        cost, _, _ = spade_fold.plan_recompute(prompt, 2, interior)
        assert cost <= min(spade_fold.MAX_RECOMPUTE_FRACTION, spade_fold.plan_recompute(prompt, 2)[0])
        folded = spade_fold.folded_modulation([blk.norm_0, blk.norm_1], prompt)
        assert folded is not None and folded[0].inside is not None
        for norm, entry in zip([blk.norm_0, blk.norm_1], folded):
            gamma, beta = entry.dense()
            g_ref, b_ref = norm.modulation(prompt)
            assert _close(gamma, g_ref) and _close(beta, b_ref)
            assert _close(entry.apply(x), x * (1 + g_ref) + b_ref)
        out = blk(x, prompt)
    with torch.no_grad(), torch.enable_grad():
        plain = blk(x.contiguous(), prompt.contiguous())
    assert _close(out, plain.detach())


def test_an_object_filling_most_of_the_grid_is_folded_only_with_its_interior():
    size = (32, 32, 32)
    prev = torch.zeros((1, 1, *size))
    prev[0, 0, :28] = TOP
    prev[0, 0, 28] = 0.3
    prompt = _prompt(size, [], [], prev=prev)
    interior = spade_fold.constant_interior(prompt, 2)
    assert spade_fold.plan_recompute(prompt, 2)[0] > spade_fold.MAX_RECOMPUTE_FRACTION  # dense path
    cost, kind, _ = spade_fold.plan_recompute(prompt, 2, interior)
    # z 26-30: the surface grown by 2, less the interior, in one box
    assert kind == "boxes" and cost == (5 * 32 * 32 + spade_fold.BOX_OVERHEAD_VOXELS) / 32**3


def test_no_interior_where_the_top_level_is_thin_or_clicked():
    size = (32, 32, 32)
    prev = torch.zeros((1, 1, *size))
    prev[0, 0, 4:28, 10:13, 4:28] = TOP  # a 3-voxel-thick sheet: no voxel 2 deep inside it
    assert spade_fold.constant_interior(_prompt(size, [], [], prev=prev), 2) is None
    prev[0, 0, 4:28, 4:28, 4:28] = TOP
    clicks = [(z, y, x) for z in (8, 16, 24) for y in (8, 16, 24) for x in (8, 16, 24)]
    # clicks everywhere inside: their Gaussians leave no constant interior (σ = 2, radius 8)
    assert spade_fold.constant_interior(_prompt(size, clicks, [], prev=prev), 2) is None
