"""Network contract per preset: shapes, gradients, determinism, empty prompt, CPP.

The paper preset is large for a 2-core machine: its checks run on half patches (32×64×64).
"""

from __future__ import annotations

import pytest
import torch

from ctsam3d.errors import InputError
from ctsam3d.modeling import build_model, get_preset

torch.set_num_threads(1)


def _model(preset: str, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    cfg = get_preset(preset)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    return build_model(cfg)


def _image(cfg, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((1, 1, *cfg.patch_size), generator=g)


@pytest.mark.parametrize(
    "preset, feature_shapes",
    [
        ("ctsam3d-lite", [(8, 32, 32, 32), (16, 16, 16, 16), (32, 8, 8, 8), (64, 4, 4, 4)]),
        # the paper preset on a 32×64×64 patch (same modules, half the cost)
        ("ctsam3d-paper", [(128, 8, 16, 16), (128, 4, 8, 8), (128, 2, 4, 4), (256, 1, 2, 2)]),
    ],
)
def test_output_shapes(preset, feature_shapes):
    small = {"patch_size": (32, 64, 64)} if preset == "ctsam3d-paper" else {}
    model = _model(preset, **small).eval()
    cfg = model.config
    image = _image(cfg)
    with torch.inference_mode():
        feats = model.encode(image)
        assert [tuple(f.shape[1:]) for f in feats] == feature_shapes
        prompt = model.render_prompt([[(30, 24, 12)]], [[(8, 8, 8)]])
        assert prompt.shape == (1, 3, *cfg.patch_size)
        logits, quality = model.decode(feats, prompt)
        assert logits.shape == (1, 1, *cfg.patch_size)
        assert quality.shape == (1, 1) and 0.0 <= float(quality) <= 1.0
        if preset == "ctsam3d-lite":  # the paper CPP net is covered by the golden test
            heat = model.cpp(image, (image > 0.5).float(), image.roll(8, 2))
            assert heat.shape == (1, 1, *cfg.patch_size)


def test_lite_gradients_reach_every_parameter():
    model = _model("ctsam3d-lite").train()
    cfg = model.config
    image = _image(cfg).repeat(2, 1, 1, 1, 1)
    prompt = model.render_prompt([[(30, 34, 32)], [(10, 50, 20)]], [[(8, 8, 8)], []])
    logits, quality = model(image, prompt)
    heat = model.cpp(image, (image > 0.5).float(), image.flip(2))
    loss = logits.mean() + quality.mean() + heat.mean()
    loss.backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert dead == []


def test_paper_gradients_reach_every_parameter():
    model = _model("ctsam3d-paper", patch_size=(32, 64, 64)).train()  # same modules, 2x cheaper
    image = _image(model.config)
    prompt = model.render_prompt([[(20, 14, 12)]], [[(8, 8, 8)]])
    logits, quality = model(image, prompt)
    (logits.mean() + quality.mean()).backward()
    # the CPP net is a separate MONAI U-Net, exercised for gradients in the lite test
    dead = [
        n
        for n, p in model.named_parameters()
        if not n.startswith("cpp_predictor") and (p.grad is None or not torch.any(p.grad != 0))
    ]
    assert dead == []


def test_same_seed_same_output():
    outs = []
    for _ in range(2):
        model = _model("ctsam3d-lite", seed=3).eval()
        with torch.inference_mode():
            feats = model.encode(_image(model.config))
            outs.append(model.decode(feats, model.render_prompt([[(20, 20, 20)]], [[]]))[0])
    assert torch.equal(outs[0], outs[1])
    other = _model("ctsam3d-lite", seed=4).eval()
    with torch.inference_mode():
        o = other.decode(other.encode(_image(other.config)), other.render_prompt([[(20, 20, 20)]], [[]]))[0]
    assert not torch.equal(o, outs[0])


def test_empty_prompt_gives_valid_mask():
    model = _model("ctsam3d-lite").eval()
    with torch.inference_mode():
        feats = model.encode(_image(model.config))
        prompt = model.render_prompt([[]], [[]])
        assert torch.count_nonzero(prompt) == 0
        logits, quality = model.decode(feats, prompt)
    assert torch.isfinite(logits).all() and torch.isfinite(quality).all()


def test_inference_path_matches_training_path():
    """oneDNN / channels-last inference path computes the same function as autograd mode."""
    model = _model("ctsam3d-lite").eval()
    image = _image(model.config)
    prompt = model.render_prompt([[(30, 34, 32), (40, 40, 40)]], [[(8, 8, 8)]])
    prev = torch.rand((1, 1, *model.config.patch_size))
    prompt[:, 2:] = prev
    with torch.no_grad():
        torch.set_grad_enabled(True)
        ref_logits, ref_q = model.decode(model.encode(image), prompt)
    with torch.inference_mode():
        model.optimize_for_inference()
        logits, q = model.decode(model.encode(image), prompt)
    assert torch.allclose(logits, ref_logits.detach(), atol=1e-4, rtol=1e-4)
    assert torch.allclose(q, ref_q.detach(), atol=1e-5)


def test_batched_cpu_inference_decodes_each_item_like_a_batch_of_one():
    """A batch (e.g. expansion's neighbours) gives what each patch gives alone, and what the
    autograd path gives for the whole batch; sparse prompts take the folded path per item."""
    model = _model("ctsam3d-lite").eval()
    g = torch.Generator().manual_seed(3)
    size = model.config.patch_size
    images = torch.rand((3, 1, *size), generator=g)
    prev = torch.zeros((3, 1, *size))
    prev[1, 0, 20:30, 25:35, 22:40] = 0.8  # later click, previous mask near the object only
    prompt = model.render_prompt([[(24, 30, 30)], [(25, 30, 31)], []], [[], [(10, 10, 10)], []], prev)
    with torch.no_grad():
        torch.set_grad_enabled(True)
        ref_logits, ref_q = model.decode(model.encode(images), prompt)
    with torch.inference_mode():
        model.optimize_for_inference()
        feats = model.encode(images)
        logits, q = model.decode(feats, prompt)
        single = [model.decode([f[b : b + 1] for f in feats], prompt[b : b + 1]) for b in range(3)]
    assert logits.shape == (3, 1, *size) and q.shape == (3, 1)
    for b in range(3):
        assert torch.equal(logits[b : b + 1], single[b][0]) and torch.equal(q[b : b + 1], single[b][1])
    assert torch.allclose(logits, ref_logits.detach(), atol=1e-4, rtol=1e-4)
    assert torch.allclose(q, ref_q.detach(), atol=1e-5)


@pytest.mark.parametrize("reference_exact", [True, False])
@pytest.mark.parametrize("shape, plan", [("slab", "boxes"), ("ball", "voxels")])
def test_paper_inference_path_matches_training_path_on_a_large_object(reference_exact, shape, plan, monkeypatch):
    """The paper decoder's CPU inference shortcuts (streamed tail, folding with boxes or voxel
    by voxel, and a constant interior) compute the autograd path's function on a later click
    inside a large object stored the session's way (top level inside, a soft shell, zeros
    outside): a flat surface (one box) and a curved one (voxel by voxel)."""
    from ctsam3d.modeling import spade_fold

    size = (32, 64, 64)  # half a paper patch: same modules, half the cost
    model = _model("ctsam3d-paper", patch_size=size, reference_exact=reference_exact).eval()
    image = _image(model.config)
    prev = torch.zeros((1, 1, *size))
    if shape == "slab":  # an object covering x >= 4: a soft shell, then the top level
        prev[0, 0, :, :, 4:] = 0.4
        prev[0, 0, :, :, 6:] = 255.5 / 256
    else:  # a ball of radius 22 voxels centred inside the patch
        zz, yy, xx = torch.meshgrid(*[torch.arange(s, dtype=torch.float32) for s in size], indexing="ij")
        r = ((zz - 16) ** 2 + (yy - 40) ** 2 + (xx - 30) ** 2).sqrt()
        prev[0, 0][r < 22] = 0.4
        prev[0, 0][r < 20] = 255.5 / 256
    prompt = model.render_prompt([[(16, 40, 40)]], [[]], prev)
    with torch.no_grad():
        torch.set_grad_enabled(True)
        ref_logits, ref_q = model.decode(model.encode(image), prompt)
    applied = []  # (grid, kind, with an interior) of every folded modulation applied
    real_apply = spade_fold.FoldedModulation.apply

    def spy(self, normalized):
        applied.append((tuple(normalized.shape[2:]), self.kind, self.inside is not None))
        return real_apply(self, normalized)

    monkeypatch.setattr(spade_fold.FoldedModulation, "apply", spy)
    if plan == "voxels":  # which plan is cheaper is the cost model's call; here its function is tested
        monkeypatch.setattr(spade_fold, "VOXEL_COST", {0: 0.5})
    with torch.inference_mode():
        model.optimize_for_inference()
        logits, q = model.decode(model.encode(image), prompt)
    # the biggest scale folded by the plan, the object's interior taken from the cached field
    assert ((16, 32, 32), plan, True) in set(applied)
    assert torch.allclose(logits, ref_logits.detach(), atol=1e-4, rtol=1e-4)
    assert torch.allclose(q, ref_q.detach(), atol=1e-5)


@pytest.mark.parametrize(
    "bad",
    [torch.zeros(1, 64, 64, 64), torch.zeros(1, 2, 64, 64, 64), torch.zeros(1, 1, 60, 64, 64)],
)
def test_encode_rejects_bad_image(bad):
    model = _model("ctsam3d-lite")
    with pytest.raises(InputError):
        model.encode(bad)
