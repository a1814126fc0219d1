"""Click simulator on hand-made masks with known answers."""

import numpy as np
import pytest

from ctsam3d.clicks import first_click, next_click, next_clicks_batch
from ctsam3d.errors import ClickError


def box(shape, lo, hi):
    m = np.zeros(shape, bool)
    m[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = True
    return m


def ball(shape, center, radius, spacing=(1, 1, 1)):
    zz, yy, xx = np.indices(shape)
    d2 = sum(((g - c) * s) ** 2 for g, c, s in zip((zz, yy, xx), center, spacing))
    return d2 <= radius**2


# (name, target, spacing, expected first click)
FIRST_CASES = [
    ("odd cube centre", box((20, 20, 20), (5, 5, 5), (14, 14, 14)), None, (9, 9, 9)),
    ("ball centre", ball((31, 31, 31), (12, 17, 15), 8), None, (12, 17, 15)),
    # 1 voxel thick along z with 1 mm spacing -> depth limited by z; the tie plateau's centre wins
    ("slab plateau centre", box((9, 30, 30), (4, 5, 5), (5, 26, 26)), None, (4, 15, 15)),
    # an L shape: the thick arm holds the maximum
    ("thick arm of an L", box((12, 40, 40), (2, 2, 2), (11, 11, 11)) | box((12, 40, 40), (2, 2, 2), (6, 38, 6)),
     None, (6, 6, 6)),
    # even-sized box: the plateau of maxima is 2x2x2; the voxel nearest its centroid, first in raster order
    ("even box plateau", box((12, 12, 12), (2, 2, 2), (10, 10, 10)), None, (5, 5, 5)),
    # touching the volume border: the border counts as outside, so the click is not on it
    ("cut by border", box((10, 10, 10), (0, 0, 0), (10, 10, 5)), None, (4, 4, 2)),
]


@pytest.mark.parametrize("name,target,spacing,expected", FIRST_CASES, ids=[c[0] for c in FIRST_CASES])
def test_first_click_center(name, target, spacing, expected):
    click = first_click(target, spacing_zyx=spacing)
    assert click == expected
    assert target[click]


def test_first_click_anisotropic_spacing_changes_the_answer():
    # A: 3 slices thick, 20x20 in plane; B: 11 slices thick, 5x5 in plane.
    # 1 mm voxels: B is deeper (3 vs 2). 5 mm slices: A is deeper (10 mm vs 3 mm).
    target = box((20, 30, 60), (2, 5, 2), (5, 25, 22)) | box((20, 30, 60), (2, 10, 40), (13, 15, 45))
    assert first_click(target) == (7, 12, 42)
    assert first_click(target, spacing_zyx=(5.0, 1.0, 1.0)) == (3, 14, 11)


def test_first_click_empty_and_random():
    assert first_click(np.zeros((4, 4, 4), bool)) is None
    target = ball((30, 30, 30), (15, 15, 15), 10)
    a = first_click(target, mode="random", rng=3)
    b = first_click(target, mode="random", rng=np.random.default_rng(3))
    assert a == b and target[a]
    picks = {first_click(target, mode="random", rng=s) for s in range(20)}
    assert len(picks) > 5  # random, not always the centre
    for p in picks:  # well inside: at least half the max depth (10 mm) from outside
        assert np.linalg.norm(np.subtract(p, 15)) <= 6


@pytest.mark.parametrize("bad", [np.zeros((4, 4)), np.zeros((1, 4, 4, 4))])
def test_first_click_rejects_wrong_dims(bad):
    with pytest.raises(ClickError):
        first_click(bad)


def test_first_click_rejects_bad_mode_and_spacing():
    t = box((5, 5, 5), (1, 1, 1), (4, 4, 4))
    with pytest.raises(ClickError):
        first_click(t, mode="middle")
    with pytest.raises(ClickError):
        first_click(t, spacing_zyx=(1, 0, 1))


# (name, target, prediction, expected click, expected sign)
shape = (20, 40, 40)
T = box(shape, (4, 4, 4), (16, 36, 36))
NEXT_CASES = [
    # prediction misses a big slab x 26..35 and over-segments a small blob outside -> positive in the slab
    ("missed larger than false", T, box(shape, (4, 4, 4), (16, 36, 26)) | box(shape, (0, 0, 37), (3, 3, 40)),
     (9, 19, 30), True),  # plateau z 8..11, y 8..31, x 30..31: nearest its centroid, raster-first
    # prediction covers all + a big false slab at y 36..39 (4 thick) vs a 2-voxel miss -> negative
    ("false larger than missed", T, (T | box(shape, (4, 36, 4), (16, 40, 36))) & ~box(shape, (10, 10, 10), (11, 11, 12)),
     (9, 37, 19), False),  # plateau y 37..38 (volume border counts as outside)
]


@pytest.mark.parametrize("name,target,pred,expected,positive", NEXT_CASES, ids=[c[0] for c in NEXT_CASES])
def test_next_click_largest_region(name, target, pred, expected, positive):
    click, sign = next_click(target, pred)
    assert sign is positive
    assert click == expected
    err = (target & ~pred) if positive else (pred & ~target)
    assert err[click]


def test_next_click_prefers_largest_of_several_missed_regions():
    target = ball((40, 40, 40), (20, 20, 20), 15)
    pred = target.copy()
    small = box(target.shape, (8, 18, 18), (11, 22, 22)) & target
    big = box(target.shape, (25, 14, 14), (33, 26, 26)) & target
    pred &= ~small & ~big
    click, positive = next_click(target, pred)
    assert positive and big[click] and not small[click]
    assert click == (28, 19, 19)  # centre of the 8x12x12 box, raster-first of the 2x2x2 tie


def test_next_click_none_when_perfect_and_valid_mask():
    t = ball((20, 20, 20), (10, 10, 10), 6)
    assert next_click(t, t) is None
    pred = t.copy()
    pred[10:, :, :] = False  # miss the lower half
    valid = np.zeros_like(t)
    valid[:10] = True  # errors outside valid do not count
    assert next_click(t, pred, valid=valid) is None
    click, positive = next_click(t, pred)
    assert positive and click[0] >= 10


def test_next_click_spacing_measures_volume_and_depth_in_mm():
    # two missed regions: A 2x2x2 = 8 voxels (40 mm^3), B 1x3x3 = 9 voxels (45 mm^3) -> B;
    # its depth maximum is its in-plane centre
    t = np.zeros((10, 10, 10), bool)
    t[1:3, 1:3, 1:3] = True
    t[6:7, 5:8, 5:8] = True
    click, positive = next_click(t, np.zeros_like(t), spacing_zyx=(5, 1, 1))
    assert positive and click == (6, 6, 6)


def test_next_click_float_prediction_thresholded():
    t = box((10, 10, 10), (2, 2, 2), (8, 8, 8))
    prob = t.astype(np.float32) * 0.9
    assert next_click(t, prob) is None
    prob[2:8, 2:8, 5:8] = 0.2
    click, positive = next_click(t, prob)
    assert positive and click[2] in (5, 6, 7)


def test_next_click_deterministic_tie():
    # two identical missed cubes: the first in raster order wins, every time
    t = box((10, 10, 30), (2, 2, 2), (7, 7, 7)) | box((10, 10, 30), (2, 2, 20), (7, 7, 25))
    results = {next_click(t, np.zeros_like(t)) for _ in range(3)}
    assert results == {((4, 4, 4), True)}


# (name, target, prediction, excluded voxels, expected click, positive)
_BIG = box((12, 12, 30), (2, 2, 2), (9, 9, 9))  # 7^3 missed cube, centre (5, 5, 5)
_SMALL = box((12, 12, 30), (2, 2, 20), (5, 5, 23))  # 3^3 missed cube, centre (3, 3, 21)
_ONE = np.zeros((12, 12, 30), bool)
_ONE[6, 6, 15] = True  # a one-voxel false region next to a 2-voxel missed one
_TWO = box((12, 12, 30), (6, 6, 20), (7, 7, 22))
EXCLUDE_CASES = [
    ("nothing excluded: centre of the largest", _BIG | _SMALL, np.zeros_like(_BIG), [], (5, 5, 5), True),
    ("clicked centre: deepest voxel not yet clicked, same region",
     _BIG | _SMALL, np.zeros_like(_BIG), [(5, 5, 5)], (4, 5, 5), True),
    ("clicked voxels outside the errors are ignored", _BIG | _SMALL, np.zeros_like(_BIG), [(0, 0, 0), (11, 11, 29)],
     (5, 5, 5), True),
    ("every voxel of the largest clicked: the next largest region",
     _BIG | _SMALL, np.zeros_like(_BIG), [tuple(v) for v in np.argwhere(_BIG)], (3, 3, 21), True),
    ("the sign follows the region that gets the click",
     _TWO, _ONE, [(6, 6, 20), (6, 6, 21)], (6, 6, 15), False),
    ("all error voxels clicked: no click", _TWO, _ONE, [(6, 6, 20), (6, 6, 21), (6, 6, 15)], None, None),
]


@pytest.mark.parametrize("name,target,pred,exclude,expected,positive", EXCLUDE_CASES, ids=[c[0] for c in EXCLUDE_CASES])
def test_next_click_never_repeats_an_excluded_voxel(name, target, pred, exclude, expected, positive):
    out = next_click(target, pred, exclude=exclude)
    if expected is None:
        assert out is None
    else:
        assert out == (expected, positive)


def test_next_click_exclude_keeps_the_rules_without_exclusions():
    # an excluded voxel elsewhere changes nothing: same click as without ``exclude``
    t = ball((30, 30, 30), (15, 15, 15), 10)
    pred = box(t.shape, (0, 0, 0), (30, 30, 16)) & t | box(t.shape, (2, 2, 2), (6, 6, 6))
    assert next_click(t, pred, exclude=[(29, 29, 29)]) == next_click(t, pred)


def test_next_click_shape_mismatch():
    with pytest.raises(ClickError):
        next_click(np.zeros((4, 4, 4)), np.zeros((4, 4, 5)))


def test_batch_helper_matches_single_and_accepts_torch():
    torch = pytest.importorskip("torch")
    t = np.stack([box((12, 12, 12), (2, 2, 2), (10, 10, 10))] * 2)
    p = np.zeros_like(t)
    p[1] = t[1]
    out = next_clicks_batch(torch.from_numpy(t[:, None]), torch.from_numpy(p[:, None].astype(np.float32)))
    assert out[0] == next_click(t[0], p[0]) and out[1] is None
