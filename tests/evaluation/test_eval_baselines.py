"""Classical baselines on a synthetic CT with known structures."""

import numpy as np
import pytest
from eval_helpers import ball, synthetic_ct

from ctsam3d.clicks import first_click
from ctsam3d.evaluation import RandomWalkerMethod, RegionGrowingMethod
from ctsam3d.evaluation.baselines import roi_box
from ctsam3d.evaluation.metrics import dice

METHODS = [RandomWalkerMethod, RegionGrowingMethod]


@pytest.mark.parametrize("cls", METHODS, ids=lambda c: c.name)
@pytest.mark.parametrize("structure", ["liver", "bone"])
def test_one_click_finds_a_contrasted_structure(cls, structure):
    img, masks = synthetic_ct()
    target = masks[structure]
    m = cls()
    m.start(img)
    z, y, x = first_click(target, spacing_zyx=img.GetSpacing()[::-1])
    out = m.click((x, y, z), True)
    assert out.dtype == np.uint8 and out.shape == target.shape
    assert dice(out, target) > 0.85


@pytest.mark.parametrize("cls", METHODS, ids=lambda c: c.name)
def test_negative_click_separates_touching_look_alikes(cls):
    # two touching balls of the same HU: one positive click takes both; a negative click in
    # the second must remove (most of) it
    shape = (30, 30, 50)
    a = ball(shape, (15, 15, 16), 8)
    b = ball(shape, (15, 15, 32), 8) & ~a
    hu = np.full(shape, -100.0, np.float32)
    hu[a | b] = 60.0
    hu += np.random.default_rng(1).normal(0, 5, shape).astype(np.float32)
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(hu)
    m = cls()
    m.start(img)
    first = m.click((16, 15, 15), True)
    after = m.click((34, 15, 15), False)
    assert after[15, 15, 34] == 0 and after[15, 15, 16] == 1
    assert dice(after, a) > dice(first, a)
    assert dice(after, a) > 0.8


@pytest.mark.parametrize("cls", METHODS, ids=lambda c: c.name)
def test_reset_and_only_negative(cls):
    img, masks = synthetic_ct()
    m = cls()
    m.start(img)
    m.click((15, 18, 16), True)
    m.reset()
    assert m.click((2, 2, 2), False).sum() == 0  # no positive click -> empty mask


def test_roi_box_margin_in_mm_and_clipped():
    box = roi_box(np.array([[5, 5, 5], [7, 9, 5]]), (2.0, 1.0, 1.0), 4.0, (10, 12, 8))
    assert box == (slice(3, 10), slice(1, 12), slice(1, 8))
