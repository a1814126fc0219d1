"""Dice, NSD and NoC on hand-made volumes with known answers."""

import numpy as np
import pytest

from ctsam3d.evaluation.metrics import dice, noc, nsd


def box(shape, lo, hi):
    m = np.zeros(shape, bool)
    m[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = True
    return m


S = (20, 20, 20)
A = box(S, (5, 5, 5), (15, 15, 15))  # 1000 voxels
DICE_CASES = [
    ("identical", A, A, 1.0),
    ("both empty", np.zeros(S, bool), np.zeros(S, bool), 1.0),
    ("prediction empty", np.zeros(S, bool), A, 0.0),
    ("disjoint", box(S, (0, 0, 0), (2, 2, 2)), A, 0.0),
    ("half of target", box(S, (5, 5, 5), (15, 15, 10)), A, 2 * 500 / 1500),
    ("shift by 2 in x", box(S, (5, 5, 7), (15, 15, 17)), A, 2 * 800 / 2000),
    ("uint8 input", A.astype(np.uint8) * 1, A.astype(np.uint8), 1.0),
]


@pytest.mark.parametrize("name,pred,gt,expected", DICE_CASES, ids=[c[0] for c in DICE_CASES])
def test_dice(name, pred, gt, expected):
    assert dice(pred, gt) == pytest.approx(expected)


def test_dice_shape_mismatch():
    with pytest.raises(ValueError):
        dice(np.zeros((3, 3, 3)), np.zeros((3, 3, 4)))


NSD_CASES = [
    # name, pred, gt, spacing, tolerance, expected (abs tol)
    ("identical", A, A, (1, 1, 1), 2.0, 1.0, 1e-6),
    ("both empty", np.zeros(S, bool), np.zeros(S, bool), (1, 1, 1), 2.0, 1.0, 0),
    ("one empty", np.zeros(S, bool), A, (1, 1, 1), 2.0, 0.0, 0),
    ("far apart", box(S, (0, 0, 0), (3, 3, 3)), box(S, (12, 12, 12), (19, 19, 19)), (1, 1, 1), 2.0, 0.0, 1e-6),
    # 1-voxel shift at 1 mm is within a 2 mm tolerance everywhere
    ("shift 1 mm within 2 mm", box(S, (6, 5, 5), (16, 15, 15)), A, (1, 1, 1), 2.0, 1.0, 1e-6),
]


@pytest.mark.parametrize("name,pred,gt,spacing,tol,expected,atol", NSD_CASES, ids=[c[0] for c in NSD_CASES])
def test_nsd_known(name, pred, gt, spacing, tol, expected, atol):
    assert nsd(pred, gt, spacing, tol) == pytest.approx(expected, abs=atol)


def test_nsd_uses_spacing():
    # a wide flat slab shifted by one slice: with 1 mm slices everything is within 2 mm; with 3 mm
    # slices the top and bottom faces (2 x 30 x 30 mm^2 of each surface's ~ 2 x 900 + 4 x 30 x 15)
    # are 3 mm apart and fail, the side walls mostly pass -> NSD well below 1 but above 0
    shape = (12, 34, 34)
    gt = box(shape, (3, 2, 2), (8, 32, 32))
    pred = box(shape, (4, 2, 2), (9, 32, 32))
    assert nsd(pred, gt, (1.0, 1.0, 1.0), 2.0) == pytest.approx(1.0, abs=1e-6)
    aniso = nsd(pred, gt, (3.0, 1.0, 1.0), 2.0)
    top_bottom = 2 * 30 * 30
    sides = 4 * 30 * 15
    assert aniso == pytest.approx(sides / (sides + top_bottom), abs=0.08)
    # a 4 mm tolerance covers a 3 mm shift again
    assert nsd(pred, gt, (3.0, 1.0, 1.0), 4.0) == pytest.approx(1.0, abs=1e-6)


NOC_CASES = [
    ([0.5, 0.81, 0.9], 0.80, 2),
    ([0.5, 0.81, 0.9], 0.85, 3),
    ([0.5, 0.81, 0.9], 0.90, 3),
    ([0.5, 0.81, 0.89], 0.90, 4),  # never reached in K=3 -> K+1
    ([0.95], 0.90, 1),
    ([0.2, 0.3], 0.80, 3),
]


@pytest.mark.parametrize("curve,threshold,expected", NOC_CASES)
def test_noc(curve, threshold, expected):
    assert noc(curve, threshold) == expected
