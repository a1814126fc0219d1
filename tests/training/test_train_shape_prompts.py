"""Training's first prompt as a simulated 2D box / lasso / scribble (ClickConfig.p_shape_first,
issue 18): off by default (same clicks and random stream as before), clicks inside the patch
and on the target when on."""

from __future__ import annotations

import numpy as np
import torch

from ctsam3d.clicks.shapes import shape_clicks, simulate_prompt
from ctsam3d.training.clicks import first_clicks
from ctsam3d.training.config import ClickConfig


def _targets():
    zz, yy, xx = np.indices((24, 24, 24))
    a = ((zz - 12) ** 2 / 36 + (yy - 10) ** 2 / 25 + (xx - 12) ** 2 / 100) <= 1
    b = np.zeros_like(a)
    b[4:20, 8:12, 6:18] = True
    return torch.from_numpy(np.stack([a, b, np.zeros_like(a)])[:, None].astype(np.float32))


def test_off_by_default_changes_nothing():
    assert ClickConfig().p_shape_first == 0.0
    t = _targets()
    r1, r2 = np.random.default_rng(5), np.random.default_rng(5)
    a = first_clicks(t, r1, 0.3, "numpy")
    b = first_clicks(t, r2, 0.3, "numpy", 0.0)
    assert a.pos == b.pos and r1.random() == r2.random()


def test_shapes_as_clicks_on_target():
    t = _targets()
    seen = set()
    for seed in range(12):
        st = first_clicks(t, np.random.default_rng(seed), 0.0, "numpy", 1.0)
        assert st.pos[2] == [] and st.neg == [[], [], []]
        for i in (0, 1):
            assert st.pos[i]
            on = [bool(t[i, 0][c] > 0.5) for c in st.pos[i]]
            assert sum(on) >= 0.5 * len(on)  # a jittered box centre may miss; scribbles and lassos sit inside
            seen.add(len(st.pos[i]) > 1)
    assert seen == {True, False}  # single clicks (boxes, round lassos) and rows (scribbles)
    torch_backend = first_clicks(t, np.random.default_rng(0), 0.0, "torch", 1.0)
    assert torch_backend.pos[0]


def test_shape_clicks_rules():
    t = _targets()[0, 0].numpy() > 0.5
    box = simulate_prompt("box2d", t, axis=0, jitter=0.0)
    assert shape_clicks(box, t.shape) == [tuple(int(v) for v in np.rint(box.points.mean(axis=0)))]
    sc = simulate_prompt("scribble", t, axis=0, rng=np.random.default_rng(0))
    clicks = shape_clicks(sc, t.shape, step_vox=2.0)
    assert len(clicks) >= len(sc.points) and all(t[c] for c in clicks)
    steps = np.linalg.norm(np.diff(np.array(clicks, float), axis=0), axis=1)
    assert steps.max() <= 2.0 * np.sqrt(3) + 1e-6
    lasso = simulate_prompt("lasso", t, axis=0, perturb=0.0)
    lc = shape_clicks(lasso, t.shape)
    assert 1 <= len(lc) <= 3 and all(t[c] for c in lc)


# --- slice rules (ClickConfig.shape_rules): the lasso seed and the background outside a box/lasso


def test_lasso_rule_seeds_its_inside_on_its_slice_only():
    from ctsam3d.clicks.shapes import shape_slice_rule

    t = _targets()[0, 0].numpy() > 0.5
    lasso = simulate_prompt("lasso", t, axis=1, perturb=0.0)
    rule = shape_slice_rule(lasso, t.shape)
    seed = rule.seed(t.shape)
    assert seed.shape == t.shape and seed.dtype == np.float32
    on = np.argwhere(seed > 0)
    assert set(on[:, 1]) == {lasso.index}  # one slice, along the lasso's axis
    plane = t[:, lasso.index, :]
    inside = seed[:, lasso.index, :] > 0
    # an unperturbed lasso traces the contour: its inside is the piece, give or take the rim
    assert (inside & plane).sum() >= 0.8 * plane.sum() and (inside & ~plane).sum() <= 0.3 * plane.sum()


def test_rules_apply_alike_to_numpy_and_torch():
    from ctsam3d.clicks.shapes import shape_slice_rule

    t = _targets()[1, 0].numpy() > 0.5
    rng = np.random.default_rng(3)
    probs = rng.random(t.shape).astype(np.float32)
    for kind in ("lasso", "box2d"):
        shape = simulate_prompt(kind, t, axis=0, rng=np.random.default_rng(1))
        rule = shape_slice_rule(shape, t.shape)
        a = rule.apply(probs.copy())
        b = rule.apply(torch.from_numpy(probs.copy())).numpy()
        np.testing.assert_allclose(a, b)
        other = [z for z in range(t.shape[0]) if z != shape.index]
        np.testing.assert_array_equal(a[other], probs[other])  # only the slice changes
        s = a[shape.index]
        assert (s[~rule.allowed] == 0).all()  # background outside (a voxel of margin)
        assert np.array_equal(s[rule.allowed] > 0, probs[shape.index][rule.allowed] > 0)
        if kind == "lasso":
            assert (s[rule.inside] == 1).all() and rule.seed(t.shape) is not None
        else:
            assert rule.inside is None and rule.seed(t.shape) is None
            assert rule.allowed.sum() < rule.allowed.size  # a box leaves part of the slice out
    sc = simulate_prompt("scribble", t, axis=0, rng=np.random.default_rng(0))
    assert shape_slice_rule(sc, t.shape) is None


def test_rules_keep_the_random_stream_and_seed_the_first_decode():
    from ctsam3d.training.clicks import apply_rules, seed_previous

    t = _targets()
    kinds = set()
    for seed in range(10):
        r1, r2 = np.random.default_rng(seed), np.random.default_rng(seed)
        a = first_clicks(t, r1, 0.0, "numpy", 1.0)
        b = first_clicks(t, r2, 0.0, "numpy", 1.0, True)
        assert a.pos == b.pos and r1.random() == r2.random()  # rules draw no random numbers
        assert a.rules == [None] * 3 and b.rules[2] is None
        kinds.update(type(r).__name__ if r is None else ("lasso" if r.inside is not None else "box") for r in b.rules[:2])
        prev = seed_previous(b, t)
        if any(r is not None and r.inside is not None for r in b.rules):
            assert prev.shape == t.shape and prev.dtype == torch.float32
            for i, r in enumerate(b.rules):
                if r is None or r.inside is None:
                    assert prev[i].sum() == 0
                else:
                    assert prev[i].sum() == r.inside.sum()
        else:
            assert prev is None
        p = torch.full_like(t, 0.5)
        q = apply_rules(b, p)
        assert (p == 0.5).all()  # not in place
        assert (q != 0.5).any() == any(r is not None for r in b.rules)
    assert kinds == {"NoneType", "lasso", "box"}


def test_step_seeds_the_first_decode_and_applies_the_rule_after_it():
    from test_train_clicks import _Spy
    from train_helpers import TINY_MODEL

    from ctsam3d.modeling import ModelConfig, build_model, get_preset
    from ctsam3d.training.config import LossConfig
    from ctsam3d.training.loop import _merge
    from ctsam3d.training.step import InteractiveStep

    torch.manual_seed(0)
    mc = ModelConfig.from_dict(_merge(get_preset("ctsam3d-lite").to_dict(), TINY_MODEL))
    spy = _Spy(build_model(mc))
    step = InteractiveStep(spy, LossConfig())
    t = torch.nn.functional.pad(_targets(), (4, 4, 4, 4, 4, 4))  # 32^3, the tiny model's patch
    batch = {"image": torch.rand(3, 1, 32, 32, 32), "target": t}
    seen_lasso = False
    for seed in range(8):
        spy.calls.clear()
        ref = first_clicks(t, np.random.default_rng(seed), 0.0, "numpy", 1.0, True)  # what step() draws first
        out = step(batch, 3, np.random.default_rng(seed), p_random_first=0.0, p_shape_first=1.0, shape_rules=True)
        assert torch.isfinite(out["total"])
        first, second = spy.calls[0], spy.calls[1]
        lasso = [r is not None and r.inside is not None for r in ref.rules]
        if any(lasso):
            seen_lasso = True
            for b, r in enumerate(ref.rules):
                expect = np.zeros((32, 32, 32), np.float32) if not lasso[b] else r.seed((32, 32, 32))
                np.testing.assert_array_equal(first["prev"][b, 0].numpy(), expect)
        else:
            assert first["prev"] is None
        fed = torch.sigmoid(first["logits"].float())
        for b, r in enumerate(ref.rules):
            want = fed[b, 0].clone() if r is None else r.apply(fed[b, 0].clone())
            torch.testing.assert_close(second["prev"][b, 0], want)
    assert seen_lasso
