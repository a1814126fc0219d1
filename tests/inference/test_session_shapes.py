"""Session.add_box2d / add_lasso / add_scribble with the bright-component test double.

The double segments the bright component under a positive click and keeps the previous
mask, so what each shape's rendering adds (clicks, the slice rule, patches for far clicks)
shows up exactly on the input grid.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from inference_fakes import BrightComponentModel, make_volume, nearest_index

from ctsam3d.errors import ClickError
from ctsam3d.inference.session import Session

A = (8.0, -6.0, 12.0)
B = (-22.0, 14.0, -10.0)
TWO = (("sphere", A, 9.0), ("sphere", B, 7.0))


def _session(ct, **kw):
    s = Session(BrightComponentModel(), expansion=False, **kw)
    s.set_image(ct)
    return s


def _arr(img):
    return sitk.GetArrayFromImage(img) > 0


def _state(s):
    return [(o, _arr(s.result(o)).copy(), list(s.clicks(o))) for o in s.objects]


@pytest.fixture(params=["LPS", "PLI", "oblique"])
def case(request):
    ct, lab = make_volume(request.param, size=(60, 56, 30), spacing=(1.2, 1.1, 2.0), shapes=TWO)
    return request.param, ct, _arr(lab)


def _slice_through(ct, lps):
    """(axis, index) of the input slice holding LPS point ``lps``: the axis most aligned with S."""
    m = np.asarray(ct.GetDirection()).reshape(3, 3)
    axis = int(np.argmax(np.abs(m[2])))
    return axis, nearest_index(ct, lps)[axis]


def _slice_mask(arr_kji, axis, index):
    return np.take(arr_kji, index, axis=2 - axis)


def test_box2d_keeps_object_and_cuts_slice_outside_box(case):
    name, ct, lab = case
    s = _session(ct)
    axis, idx = _slice_through(ct, A)
    c = np.asarray(nearest_index(ct, A))
    s.add_click(tuple(int(v) for v in c))
    sphere_a = _arr(s.result())  # what one click gives (the double segments the whole sphere)
    s.reset()
    a, b = [x for x in (2, 1, 0) if x != axis]
    lo, hi = c.copy(), c.copy()
    lo[a] -= 2  # the box cuts the sphere's cross-section on one side of the row axis
    hi[a] += 12
    lo[b] -= 12
    hi[b] += 12
    rec = s.add_box2d(tuple(int(v) for v in lo), tuple(int(v) for v in hi))
    assert rec.action == "box2d" and rec.positive
    got = _arr(s.result())
    # off the slice: the whole sphere
    off = np.ones(got.shape, bool)
    idx_sl = [slice(None)] * 3
    idx_sl[2 - axis] = idx
    off[tuple(idx_sl)] = False
    assert np.array_equal(got & off, sphere_a & off)
    # on the slice: exactly the sphere inside the box
    box = np.zeros(_slice_mask(got, axis, idx).shape, bool)
    box[lo[a] : hi[a] + 1, lo[b] : hi[b] + 1] = True
    assert np.array_equal(_slice_mask(got, axis, idx), _slice_mask(sphere_a, axis, idx) & box)


def _lps_grid(ct):
    k, j, i = np.meshgrid(*(np.arange(n) for n in ct.GetSize()[::-1]), indexing="ij")
    ijk = np.stack([i, j, k], -1).astype(float)
    m = np.asarray(ct.GetDirection()).reshape(3, 3) * np.asarray(ct.GetSpacing())
    return ijk @ m.T + np.asarray(ct.GetOrigin())


def _square(ct, axis, centre, half):
    a, b = [x for x in (2, 1, 0) if x != axis]
    pts = []
    for da, db in ((-half, -half), (-half, half), (half, half), (half, -half)):
        p = np.asarray(centre, int).copy()
        p[a] += da
        p[b] += db
        pts.append(tuple(int(v) for v in p))
    return pts


def test_lasso_inside_is_object_on_slice_and_seeds_3d(case):
    name, ct, lab = case
    s = _session(ct)
    axis, idx = _slice_through(ct, A)
    c = nearest_index(ct, A)
    pts = _square(ct, axis, c, 3)  # a small square inside the sphere's cross-section
    rec = s.add_lasso(pts)
    assert rec.action == "lasso"
    got = _arr(s.result())
    on = _slice_mask(got, axis, idx)
    # the slice holds exactly the lasso's inside (the square, edges included)
    a, b = [x for x in (2, 1, 0) if x != axis]
    sq = np.zeros(on.shape, bool)
    sq[c[a] - 3 : c[a] + 4, c[b] - 3 : c[b] + 4] = True
    assert np.array_equal(on, sq)
    # the click(s) at the inside's maxima segment the sphere off the slice
    assert got.sum() > 0.8 * (lab & (np.linalg.norm(_lps_grid(ct) - np.asarray(A), axis=-1) <= 9.0)).sum() - sq.size


def test_lasso_forces_dark_inside_and_negative_lasso_removes(case):
    name, ct, lab = case
    s = _session(ct)
    axis, idx = _slice_through(ct, A)
    c = nearest_index(ct, A)
    s.add_click(c)
    before = _arr(s.result())
    big = _square(ct, axis, c, 12)  # larger than the sphere: dark voxels inside become object on the slice
    s.add_lasso(big)
    on = _slice_mask(_arr(s.result()), axis, idx)
    assert on.sum() == 25 * 25
    s.undo()
    assert np.array_equal(_arr(s.result()), before)
    rec = s.add_lasso(_square(ct, axis, c, 4), positive=False)
    assert rec.positive is False
    on = _slice_mask(_arr(s.result()), axis, idx)
    a, b = [x for x in (2, 1, 0) if x != axis]
    assert not on[c[a] - 4 : c[a] + 5, c[b] - 4 : c[b] + 5].any()
    # (the double drops the whole component under a negative click: nothing else to check)


def test_scribble_3d_across_patches_segments_both():
    ct, lab = make_volume("RAS", size=(60, 56, 30), spacing=(1.2, 1.1, 2.0), shapes=TWO)
    s = Session(BrightComponentModel(), expansion=False)
    s.set_image(ct)
    rec = s.add_scribble([A, B], space="world")
    assert rec.action == "scribble" and rec.n_patches >= 2
    got = _arr(s.result())
    ref = Session(BrightComponentModel(), expansion=False)
    ref.set_image(ct)
    ref.add_click(A, space="world")
    ref.add_click(B, space="world")
    assert got.sum() > 0.9 * _arr(lab).sum() and np.array_equal(got, _arr(ref.result()))
    srcs = {c.source for c in s.clicks()}
    assert srcs == {"scribble"} and len(s.clicks()) >= 5
    s.undo()
    assert not _arr(s.result()).any() and s.clicks() == []


def test_negative_scribble_removes_component():
    ct, lab = make_volume("LPS", size=(60, 56, 30), spacing=(1.2, 1.1, 2.0), shapes=TWO)
    s = Session(BrightComponentModel(), expansion=False)
    s.set_image(ct)
    s.add_scribble([A, B], space="world")
    s.add_scribble([B, np.add(B, (2.0, 0, 0))], positive=False, space="world")
    got = _arr(s.result())
    lps = _lps_grid(ct)
    assert not (got & (np.linalg.norm(lps - np.asarray(B), axis=-1) <= 7.0)).any()
    assert (got & (np.linalg.norm(lps - np.asarray(A), axis=-1) <= 9.0)).any()


@pytest.mark.parametrize("call,match", [
    (lambda s, c: s.add_scribble([c], positive=False), "negative scribble before any positive"),
    (lambda s, c: s.add_lasso([c, (c[0] + 1, c[1] + 1, c[2]), (c[0] + 2, c[1] + 2, c[2])]), "no area"),
    (lambda s, c: s.add_box2d(c, (c[0] + 3, c[1] + 3, c[2]), positive=False), "negative box2d before any positive"),
    (lambda s, c: s.add_box2d(c, (c[0] + 3, c[1] + 3, c[2] + 3)), "do not lie on one slice"),
    (lambda s, c: s.add_lasso([c, (c[0] + 5, c[1], c[2]), (c[0], c[1] + 99, c[2])]), "outside the image"),
    (lambda s, c: s.add_scribble([c, (np.nan, 1, 1)]), "finite"),
    (lambda s, c: s.add_scribble([c], positive="yes"), "positive must be True or False"),
    (lambda s, c: s.add_scribble([]), "at least 1"),
])
def test_bad_shapes_leave_session_unchanged(call, match):
    ct, _ = make_volume("LPS", size=(60, 56, 30), spacing=(1.2, 1.1, 2.0), shapes=TWO)
    s = _session(ct)
    c = nearest_index(ct, A)
    with pytest.raises(ClickError, match=match) as e:
        call(s, c)
    assert "\n" not in str(e.value)
    assert s.objects == {} and s.current_object is None
    s.add_click(c)
    state = _state(s)
    with pytest.raises(ClickError):
        call(s, (c[0], c[1], c[2] + 99)) if "negative" in match else call(s, c)
    assert [(o, m.sum(), len(k)) for o, m, k in _state(s)] == [(o, m.sum(), len(k)) for o, m, k in state]


def test_undo_after_each_shape_is_exact():
    ct, _ = make_volume("PLI", size=(60, 56, 30), spacing=(1.2, 1.1, 2.0), shapes=TWO)
    s = Session(BrightComponentModel(), expansion=True, max_patches=4)
    s.set_image(ct)
    c = nearest_index(ct, A)
    axis, idx = _slice_through(ct, A)
    steps = [
        lambda: s.add_click(c),
        lambda: s.add_box2d(*[_square(ct, axis, c, 10)[k] for k in (0, 2)]),
        lambda: s.add_lasso(_square(ct, axis, c, 5)),
        lambda: s.add_scribble([A, B], space="world"),
        lambda: s.add_lasso(_square(ct, axis, c, 2), positive=False),
    ]
    states = [(_arr(s.result()).copy(), len(s.clicks()))]
    for step in steps:
        step()
        states.append((_arr(s.result()).copy(), len(s.clicks())))
    for want in reversed(states[:-1]):
        s.undo()
        got = (_arr(s.result()), len(s.clicks()))
        assert np.array_equal(got[0], want[0]) and got[1] == want[1]


def test_box_negatives_option_places_four_negatives_outside_the_box():
    from ctsam3d.inference.shape_render import ShapeRendering

    ct, _ = make_volume("LPS", size=(60, 56, 30), spacing=(1.2, 1.1, 2.0), shapes=TWO)
    s = _session(ct)
    s.shape_rendering = ShapeRendering(box_negatives=True)
    c = np.asarray(nearest_index(ct, A))
    lo, hi = c - [10, 10, 0], c + [10, 10, 0]
    s.add_box2d(tuple(int(v) for v in lo), tuple(int(v) for v in hi))
    clicks = s.clicks()
    assert [k.positive for k in clicks] == [True, False, False, False, False]
    for k in clicks[1:]:
        i, j, kk = k.index_ijk
        assert round(kk) == c[2] and not (lo[0] <= i <= hi[0] and lo[1] <= j <= hi[1])
    assert _arr(s.result()).any()


def test_slice_rule_survives_later_clicks_elsewhere():
    """The lasso's exact slice is not the lattice paste: a later click in another patch must
    not touch it (the session must not take the mask for the paste after a slice rule)."""
    ct, _ = make_volume("LPS", size=(60, 56, 30), spacing=(1.2, 1.1, 2.0), shapes=TWO)
    s = _session(ct)
    axis, idx = _slice_through(ct, A)
    c = nearest_index(ct, A)
    s.add_lasso(_square(ct, axis, c, 12))  # dark voxels inside: object on the slice only by the rule
    on = _slice_mask(_arr(s.result()), axis, idx).copy()
    assert on.sum() == 25 * 25
    s.add_click(nearest_index(ct, B))
    assert np.array_equal(_slice_mask(_arr(s.result()), axis, idx), on)
    # the mask layer must not be taken for the lattice's paste after a slice rule (as after a box)
    assert s._objects[s.current_object].mask_is_paste is False
    s.new_object("b")
    s.add_scribble([B], space="world")  # no slice rule: the mask is still the paste
    assert s._objects[s.current_object].mask_is_paste is True
    s.undo()
    s.select_object(1)
    s.undo()
    s.undo()
    assert s._objects[1].mask_is_paste is True  # restored with the rest
