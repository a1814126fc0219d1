"""Session state machine: patches and cache, undo, reset, objects, edit mode, bad prompts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk
from inference_fakes import BrightComponentModel, dice, make_volume, nearest_index

from ctsam3d.errors import ClickError, GeometryError, InputError
from ctsam3d.inference.session import Session

A = (8.0, -6.0, 12.0)  # sphere centres (LPS mm), far apart: different patches
B = (-22.0, 14.0, -10.0)
TWO = (("sphere", A, 9.0), ("sphere", B, 7.0))


@pytest.fixture
def two_spheres():
    ct, _ = make_volume("RAS", size=(60, 56, 30), spacing=(1.2, 1.1, 2.0), shapes=TWO)
    return ct


def _arr(img):
    return sitk.GetArrayFromImage(img)


def _session(ct, **kw):
    s = Session(BrightComponentModel(), expansion=False, **kw)
    s.set_image(ct)
    return s


def test_second_click_in_patch_reuses_features(two_spheres):
    s = _session(two_spheres)
    r1 = s.add_click(nearest_index(two_spheres, A))
    r2 = s.add_click(nearest_index(two_spheres, np.add(A, (2.0, 0, 0))))
    assert (r1.patches_encoded, r1.patches_decoded) == (1, 1)
    assert (r2.patches_encoded, r2.patches_decoded) == (0, 1)
    assert r2.n_patches == 1
    # the model sees the patch and its left-right mirror in one batch (Session.mirror, on by default)
    assert s.model.calls["encode"] == (2 if s.mirror else 1)
    assert {"decode", "total"} <= set(r2.timing_ms)


def test_click_outside_opens_patch_and_merges(two_spheres):
    s = _session(two_spheres)
    s.add_click(nearest_index(two_spheres, A))
    first = _arr(s.result())
    rec = s.add_click(nearest_index(two_spheres, B))
    both = _arr(s.result())
    assert rec.n_patches == 2 and rec.patches_encoded == 1
    assert np.all(both[first > 0] == 1)  # the first sphere is kept
    assert both.sum() > first.sum()
    # the changed box covers the second sphere only
    changed = np.zeros_like(both)
    changed[rec.changed_slices_zyx] = 1
    assert np.all(changed[(both > 0) & (first == 0)] == 1)
    assert not changed[first > 0].all()


def test_lru_cache_is_bounded(two_spheres):
    s = _session(two_spheres, cache_size=1)
    s.add_click(nearest_index(two_spheres, A))
    s.add_click(nearest_index(two_spheres, B))
    assert len(s.cache) == 1
    rec = s.add_click(nearest_index(two_spheres, np.add(A, (1.0, 0, 0))))
    assert rec.patches_encoded == 1  # evicted, encoded again, same result
    assert s.model.calls["encode"] == 3 * (2 if s.mirror else 1)


def test_negative_click_removes_component(two_spheres):
    s = _session(two_spheres)
    s.add_click(nearest_index(two_spheres, A))
    s.add_click(nearest_index(two_spheres, np.add(A, (1.0, 1.0, 0))), positive=False)
    assert not _arr(s.result()).any()


def test_undo_restores_previous_mask_exactly(two_spheres):
    s = _session(two_spheres)
    assert s.undo() is None
    s.add_click(nearest_index(two_spheres, A))
    m1 = _arr(s.result())
    p1 = s.probabilities()[1].copy()
    s.add_click(nearest_index(two_spheres, B))
    m2 = _arr(s.result())
    s.add_click(nearest_index(two_spheres, B), positive=False)
    rec = s.undo()
    np.testing.assert_array_equal(_arr(s.result()), m2)
    assert rec.action == "undo"
    rec = s.undo()
    np.testing.assert_array_equal(_arr(s.result()), m1)
    np.testing.assert_array_equal(s.probabilities()[1], p1)
    assert rec.changed_bbox is not None and len(s.clicks()) == 1
    s.undo()
    assert not _arr(s.result()).any() and s.clicks() == []
    assert s.undo() is None


def test_reset_clears_current_object_only(two_spheres):
    s = _session(two_spheres)
    first = s.new_object("a")
    s.add_click(nearest_index(two_spheres, A))
    mask_a = _arr(s.result())
    second = s.new_object("b")
    s.add_click(nearest_index(two_spheres, B))
    assert (first, second) == (1, 2) and s.objects == {1: "a", 2: "b"}
    rec = s.reset()
    assert rec.action == "reset" and rec.changed_bbox is not None
    assert not _arr(s.result()).any()
    np.testing.assert_array_equal(_arr(s.result(first)), mask_a)
    lm = _arr(s.label_map())
    assert set(np.unique(lm)) == {0, 1}
    s.undo()  # reset is undoable
    assert set(np.unique(_arr(s.label_map()))) == {0, 1, 2}


def test_label_map_and_objects(two_spheres):
    s = _session(two_spheres)
    s.add_click(nearest_index(two_spheres, A))  # implicit first object
    assert s.objects == {1: "object_1"}
    s.new_object("b")
    s.add_click(nearest_index(two_spheres, B))
    lm = _arr(s.label_map())
    np.testing.assert_array_equal(lm == 1, _arr(s.result(1)) > 0)
    np.testing.assert_array_equal(lm == 2, _arr(s.result(2)) > 0)
    with pytest.raises(InputError, match="exists already"):
        s.new_object("b")
    assert s.select_object("object_1") == 1 and s.current_object == 1


def test_new_object_renames_an_implicit_empty_object(two_spheres):
    s = _session(two_spheres)
    with pytest.raises(ClickError):
        s.add_click((5, 5, 5), positive=False)  # creates the implicit object, rejects the click
    assert s.new_object("liver") == 1 and s.objects == {1: "liver"}


def test_box_prompt_is_restricted_to_the_box(two_spheres):
    s = _session(two_spheres)
    c = np.asarray(nearest_index(two_spheres, A))
    rec = s.add_box(c - (3, 3, 2), c + (3, 3, 2))
    m = _arr(s.result())
    assert rec.action == "box" and m.any()
    k, j, i = np.nonzero(m)
    assert i.min() >= c[0] - 4 and i.max() <= c[0] + 4  # box corners +- rounding to the lattice
    assert k.min() >= c[2] - 3 and k.max() <= c[2] + 3


def test_initial_mask_edit_mode(two_spheres):
    ct = two_spheres
    s = _session(ct)
    s.add_click(nearest_index(ct, A))
    s.add_click(nearest_index(ct, B))
    both = s.result()
    edit = _session(ct)
    rec = edit.set_initial_mask(both)
    assert rec.action == "initial_mask"
    assert dice(edit.result(), both) > 0.95
    edit.add_click(nearest_index(ct, B), positive=False)  # allowed: the mask is a positive prompt
    left = _arr(edit.result())
    assert left.any() and dice(edit.result(), both) < 0.9
    edit.undo()
    assert dice(edit.result(), both) > 0.95
    wrong = sitk.Image([n + 1 for n in ct.GetSize()], sitk.sitkUInt8)
    with pytest.raises(GeometryError, match="initial mask"):
        edit.set_initial_mask(wrong)


SIZE = (60, 56, 30)
BAD_CLICKS = [
    ((-1, 5, 5), "index", "outside the image"),
    ((5, 5, 30), "index", "outside the image"),
    ((60, 0, 0), "index", "index i must be within 0..59"),
    ((5.0, math.nan, 5.0), "index", "finite"),
    ((5.0, 5.0, math.inf), "index", "finite"),
    ((5, 5), "index", "expected three numbers, got 2"),
    ((5, 5, 5, 5), "index", "expected three numbers, got 4"),
    ("5,5,5", "index", "expected three numbers"),
    (5, "index", "expected three numbers"),
    ((5, "a", 5), "index", "is not a number"),
    ((True, 5, 5), "index", "is not a number"),
    ((5, 5, 5), "voxel", "space must be one of"),
    ((1000.0, 0.0, 0.0), "world", "outside the image"),
]


@pytest.mark.parametrize("point,space,message", BAD_CLICKS)
def test_bad_clicks_raise_and_leave_session_unchanged(two_spheres, point, space, message):
    s = _session(two_spheres)
    s.add_click(nearest_index(two_spheres, A))
    before = _arr(s.result())
    n = len(s.clicks())
    with pytest.raises(ClickError, match=message):
        s.add_click(point, space=space)
    assert len(s.clicks()) == n
    np.testing.assert_array_equal(_arr(s.result()), before)


def test_negative_before_positive_is_rejected(two_spheres):
    s = _session(two_spheres)
    with pytest.raises(ClickError, match="negative click before any positive"):
        s.add_click((5, 5, 5), positive=False)
    assert s.clicks() == []


def test_bad_box_and_missing_image(two_spheres):
    s = Session(BrightComponentModel())
    with pytest.raises(InputError, match="set_image"):
        s.add_click((1, 1, 1))
    s.set_image(two_spheres)
    with pytest.raises(ClickError, match="box corner"):
        s.add_box((0, 0, 0), (70, 5, 5))
    with pytest.raises(InputError, match="3D"):
        s.set_image(sitk.Image([5, 5], sitk.sitkInt16))
