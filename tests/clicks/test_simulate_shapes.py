"""Simulated 2D boxes, lassos and scribbles (ctsam3d.clicks.shapes): deterministic, on the
largest slice, inside / around the target as the rules say."""

from __future__ import annotations

import numpy as np
import pytest

from ctsam3d.clicks.shapes import (
    PROMPT_KINDS, largest_slice, simulate_box2d, simulate_lasso, simulate_prompt, simulate_scribble,
)


def ellipsoid(shape=(20, 40, 50), c=(10, 20, 25), r=(6, 10, 17)):
    zz, yy, xx = np.indices(shape)
    return sum(((g - a) / b) ** 2 for g, a, b in zip((zz, yy, xx), c, r)) <= 1


T = ellipsoid()


def test_largest_slice_ties_nearest_middle():
    assert largest_slice(T, 0) == 10 and largest_slice(T, 1) == 20 and largest_slice(T, 2) == 25
    assert largest_slice(np.zeros((3, 3, 3), bool)) is None


@pytest.mark.parametrize("kind", PROMPT_KINDS)
def test_deterministic_and_seed_dependent(kind):
    a = simulate_prompt(kind, T, spacing_zyx=(2, 1, 1), rng=np.random.default_rng(3))
    b = simulate_prompt(kind, T, spacing_zyx=(2, 1, 1), rng=np.random.default_rng(3))
    c = simulate_prompt(kind, T, spacing_zyx=(2, 1, 1), rng=np.random.default_rng(4))
    assert np.array_equal(a.points, b.points) and a.kind == kind
    assert not np.array_equal(a.points, c.points)
    assert a.axis == 0 and a.index == 10 and np.all(a.points[:, 0] == 10)
    assert simulate_prompt(kind, np.zeros_like(T)) is None


def test_box2d_jitter_bounds():
    rows, cols = np.nonzero(T[10])
    side = np.array([rows.max() - rows.min() + 1, cols.max() - cols.min() + 1])
    for seed in range(20):
        p = simulate_box2d(T, rng=np.random.default_rng(seed), jitter=0.1)
        lo, hi = p.points[0, 1:], p.points[1, 1:]
        assert np.all(lo <= hi)
        assert np.all(np.abs(lo - [rows.min(), cols.min()]) <= np.ceil(0.1 * side) + 0.5)
        assert np.all(np.abs(hi - [rows.max(), cols.max()]) <= np.ceil(0.1 * side) + 0.5)
    exact = simulate_box2d(T, jitter=0.0)
    assert exact.points[:, 1:].tolist() == [[rows.min(), cols.min()], [rows.max(), cols.max()]]


def test_lasso_follows_contour():
    from skimage.draw import polygon

    for perturb, lo in ((0.0, 0.97), (0.1, 0.75)):
        p = simulate_lasso(T, rng=np.random.default_rng(0), perturb=perturb)
        assert 3 <= len(p.points) <= 64
        m = np.zeros(T[10].shape, bool)
        m[polygon(p.points[:, 1], p.points[:, 2], shape=m.shape)] = True
        inter = (m & T[10]).sum()
        assert 2 * inter / (m.sum() + T[10].sum()) >= lo


def test_lasso_of_one_voxel_is_a_small_square():
    t = np.zeros((5, 5, 5), bool)
    t[2, 2, 2] = True
    p = simulate_lasso(t)
    assert len(p.points) >= 3 and np.allclose(p.points[:, 1:].mean(axis=0), [2, 2], atol=0.6)


@pytest.mark.parametrize("mode", ["skeleton", "boundary"])
def test_scribble_on_slice_inside_target(mode):
    p = simulate_scribble(T, rng=np.random.default_rng(0), mode=mode)
    idx = np.rint(p.points).astype(int)
    assert 2 <= len(p.points) <= 8
    assert all(T[tuple(i)] for i in idx)
    if mode == "skeleton":  # along the long (x) axis of the ellipse, ordered
        assert np.ptp(p.points[:, 2]) > 2 * np.ptp(p.points[:, 1])
        d = np.diff(p.points[:, 2])
        assert np.all(d >= -1) or np.all(d <= 1)


def test_scribble_3d_spans_slices_inside():
    p = simulate_scribble(T, mode="3d")
    assert p.axis is None and len(set(p.points[:, 0])) >= 5
    assert all(T[tuple(i)] for i in np.rint(p.points).astype(int))


def test_unknown_kind_and_mode():
    with pytest.raises(ValueError, match="prompt kind"):
        simulate_prompt("circle", T)
    with pytest.raises(ValueError, match="scribble mode"):
        simulate_scribble(T, mode="zigzag")
