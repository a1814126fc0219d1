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
