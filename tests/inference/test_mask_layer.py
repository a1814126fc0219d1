"""The input-grid mask layer and the acted region: exact, synthetic cases (no model)."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from inference_fakes import make_volume

from ctsam3d.geometry import paste_patch
from ctsam3d.inference.edits import ActedRegion, restrict_change
from ctsam3d.inference.lattice import Lattice
from ctsam3d.inference.mask_layer import apply_change, box_keep, mask_image, write_user_mask
from ctsam3d.inference.sparse_volume import SparseVolume, levels_diff_box


def _store(values, start=(0, 0, 0), chunk=8):
    v = SparseVolume(chunk)
    v.write(start, values)
    return v


def test_min_mode_and_level_diff_box():
    a = np.zeros((10, 10, 10), np.float32)
    a[2:6, 2:6, 2:6] = 0.9
    v = _store(a)
    before = v.snapshot()
    b = np.full_like(a, 0.7)
    v.write((0, 0, 0), b, mode="min")
    got = v.read((0, 0, 0), a.shape)
    assert np.all(got <= np.maximum(a, 0) + 1 / 256) and got[3, 3, 3] == pytest.approx(0.7, abs=1 / 256)
    lo, hi = levels_diff_box(before[0], v.chunks, v.chunk)
    np.testing.assert_array_equal(lo, (2, 2, 2))
    np.testing.assert_array_equal(hi, (6, 6, 6))
    assert levels_diff_box(v.chunks, dict(v.chunks), v.chunk) is None


def _scene():
    """Before: a cube. After: the cube grown by a blob at (12, 12, 12) and one far away, and
    soft changes of every probability."""
    before = np.zeros((24, 24, 24), np.float32)
    before[4:10, 4:10, 4:10] = 0.9
    after = before * 0.95
    after[4:10, 4:10, 10:14] = 0.8  # attached to the cube, towards the click
    after[18:21, 18:21, 18:21] = 0.8  # a separate blob
    return before, after


@pytest.mark.parametrize("click,expect_added", [((7, 7, 12), 6 * 6 * 4), ((19, 19, 19), 27), ((7, 7, 7), 0), ((1, 1, 1), 0)])
def test_connected_keeps_only_the_flipped_piece_at_the_click(click, expect_added):
    before, after = _scene()
    v = _store(before)
    snap = v.snapshot()
    v.write((0, 0, 0), after)
    restrict_change(v, snap[0], ActedRegion("connected", click=click))
    old = SparseVolume.from_snapshot(snap, v.chunk)
    now, was = v.read_levels((0, 0, 0), before.shape), old.read_levels((0, 0, 0), before.shape)
    changed = now != was
    assert int(changed.sum()) == expect_added  # nothing else, not even soft values
    assert np.all(now[changed] >= 128) and np.all(was[changed] < 128)


def test_negative_never_raises_and_box_keeps_outside():
    before, after = _scene()
    v = _store(before)
    snap = v.snapshot()
    v.write((0, 0, 0), after)
    restrict_change(v, snap[0], ActedRegion("all", negative=True))
    old = SparseVolume.from_snapshot(snap, v.chunk)
    assert np.all(v.read_levels((0, 0, 0), before.shape) <= old.read_levels((0, 0, 0), before.shape))
    v.restore(snap)
    v.write((0, 0, 0), after)
    restrict_change(v, snap[0], ActedRegion("box", lo=(0, 0, 0), hi=(12, 12, 12)))
    now, was = v.read_levels((0, 0, 0), before.shape), old.read_levels((0, 0, 0), before.shape)
    inside = np.zeros(before.shape, bool)
    inside[:12, :12, :12] = True
    np.testing.assert_array_equal(now[~inside], was[~inside])
    assert (now[inside] != was[inside]).any()


@pytest.mark.parametrize("direction", ["RAS", "PLI", "oblique"])
def test_change_from_empty_is_the_thresholded_paste_and_user_voxels_far_away_stay(direction):
    ct, _ = make_volume(direction, size=(40, 36, 28))
    lattice = Lattice.for_image(ct, 1.5, (16, 16, 16))
    rng = np.random.default_rng(3)
    probs = np.zeros((20, 20, 20), np.float32)
    probs[5:15, 4:16, 6:14] = rng.random((10, 12, 8)).astype(np.float32)
    start = (4, 4, 4)
    empty, store = SparseVolume(), _store(probs, start)
    # 1. from an empty mask: exactly the thresholded paste (what result() gave before issue 17)
    mask = SparseVolume()
    apply_change(mask, empty, store, lattice, ct)
    block = store.read(np.subtract(start, 1), np.add(probs.shape, 2))
    region, vals = paste_patch(block, lattice.grid(np.subtract(start, 1), block.shape), ct)
    expected = np.zeros(sitk.GetArrayViewFromImage(ct).shape, bool)
    expected[region] = vals > 0.5
    got = sitk.GetArrayFromImage(mask_image(ct, [(1, mask)])) > 0
    np.testing.assert_array_equal(got, expected)
    # 2. a user's mask (a checkerboard no model would draw) keeps every voxel the change cannot reach
    user = np.indices(expected.shape).sum(axis=0) % 2 == 0
    uimg = sitk.GetImageFromArray(user.astype(np.uint8))
    uimg.CopyInformation(ct)
    layer = SparseVolume()
    write_user_mask(uimg, layer)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mask_image(ct, [(1, layer)])) > 0, user)
    small = store.snapshot()
    bump = np.zeros((3, 3, 3), np.float32) + 0.9
    store.write((9, 9, 9), bump)
    apply_change(layer, SparseVolume.from_snapshot(small, store.chunk), store, lattice, ct)
    out = sitk.GetArrayFromImage(mask_image(ct, [(1, layer)])) > 0
    reach = np.zeros_like(out)
    bb = lattice.box_to_input_bbox((9, 9, 9), (12, 12, 12), ct)
    (i0, i1), (j0, j1), (k0, k1) = bb
    reach[k0:k1, j0:j1, i0:i1] = True
    np.testing.assert_array_equal(out[~reach], user[~reach])
    assert (out != user).any()


def test_box_keep_is_the_index_box_for_axis_aligned_storage():
    ct, _ = make_volume("PLI", size=(20, 18, 16))
    a, b = (3, 4, 2), (11, 9, 12)
    keep = box_keep(ct, np.asarray(ct.TransformIndexToPhysicalPoint(a)), np.asarray(ct.TransformIndexToPhysicalPoint(b)))
    got = keep(np.zeros(3, int), np.asarray(ct.GetSize()[::-1]))
    expected = np.zeros(got.shape, bool)
    expected[2:13, 4:10, 3:12] = True
    np.testing.assert_array_equal(got, expected)


def test_mask_image_overlaps_are_resolved_and_large_ids_widen():
    ct, _ = make_volume("LPS", size=(12, 12, 12), spacing=(1.5, 1.5, 1.5))
    a, b = np.zeros((12, 12, 12), bool), np.zeros((12, 12, 12), bool)
    a[:, :, :8], b[:, :, 4:] = True, True
    layers = []
    for value, m in ((3, a), (300, b)):
        img = sitk.GetImageFromArray(m.astype(np.uint8))
        img.CopyInformation(ct)
        layer = SparseVolume()
        write_user_mask(img, layer)
        layers.append((value, layer))

    def prefer_first(lo, hi, masks):
        return np.where(masks[0][1], masks[0][0], masks[1][0])

    lm = sitk.GetArrayFromImage(mask_image(ct, layers, prefer_first, slab_voxels=300))
    assert lm.dtype == np.uint16
    assert np.all(lm[:, :, :8] == 3) and np.all(lm[:, :, 8:] == 300)
    lm = sitk.GetArrayFromImage(mask_image(ct, layers))  # default: the later layer
    assert np.all(lm[:, :, :4] == 3) and np.all(lm[:, :, 4:] == 300)
    empty = mask_image(ct, [])
    assert empty.GetSize() == ct.GetSize() and not sitk.GetArrayViewFromImage(empty).any()


def _thresholded_paste(s, oid):
    obj = s._objects[oid]
    lo, hi = obj.store.bounds()
    lo, hi = lo - 1, hi + 1
    region, vals = paste_patch(obj.store.read(lo, hi - lo), s.lattice.grid(lo, tuple(int(v) for v in hi - lo)), s.image)
    out = np.zeros(sitk.GetArrayViewFromImage(s.image).shape, bool)
    out[region] = vals > 0.5
    return out


def test_a_prompt_started_mask_stays_the_thresholded_paste_through_single_paste_updates():
    """Objects started from clicks update their mask with one paste (the mask stands in for the
    previous paste); after any sequence it must still equal the paste of the probabilities
    (with the fixed threshold 0.5: no intensity refinement, see test_refine.py for it)."""
    from inference_fakes import BrightComponentModel, nearest_index

    from ctsam3d.inference.session import Session

    a, b = (8.0, -6.0, 12.0), (-22.0, 14.0, -10.0)
    ct, _ = make_volume("oblique", size=(60, 56, 30), spacing=(1.2, 1.1, 2.0),
                        shapes=(("sphere", a, 9.0), ("sphere", b, 7.0)))
    s = Session(BrightComponentModel(), refine=False)
    s.set_image(ct)
    s.add_click(nearest_index(ct, a))
    s.add_click(nearest_index(ct, b))
    s.add_click(nearest_index(ct, np.add(b, (1.0, 0, 0))), positive=False)
    s.add_click(nearest_index(ct, b))
    assert s._objects[1].mask_is_paste
    np.testing.assert_array_equal(sitk.GetArrayFromImage(s.result()) > 0, _thresholded_paste(s, 1))
    s.add_box(nearest_index(ct, np.subtract(b, 3.0)), nearest_index(ct, np.add(b, 3.0)))
    assert not s._objects[1].mask_is_paste  # a box clips on the input grid: two pastes from now on
    s.undo()
    assert s._objects[1].mask_is_paste


def _random_case(seed):
    """An axis-aligned input (any axis order and signs, assorted spacings) and two lattice
    stores: a soft ball, or one of levels 127 / 128 only (pastes of exactly 0.5 abound), the
    second with a box replaced."""
    from ctsam3d.inference.mask_layer import paste_store

    rng = np.random.default_rng(seed)
    size = tuple(int(x) for x in rng.integers(20, 40, 3))
    img = sitk.Image(size, sitk.sitkInt16)
    img.SetSpacing(tuple(float(x) for x in rng.choice([0.5, 0.75, 0.8, 1.5, 0.7421875, 2.0], 3)))
    img.SetOrigin(tuple(float(x) for x in rng.choice([0.0, -10.5, 3.3], 3)))
    d = np.zeros((3, 3))
    d[rng.permutation(3), np.arange(3)] = rng.choice([-1, 1], 3)
    img.SetDirection(tuple(d.ravel()))
    lattice = Lattice.for_image(img, float(rng.choice([1.5, 2.0, 3.0])), 16)
    shape = np.asarray(lattice.shape_zyx)

    def store():
        zz, yy, xx = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
        c, r = rng.uniform(0.3, 0.7, 3) * shape, rng.uniform(0.15, 0.35) * shape.min()
        p = 1 / (1 + np.exp((np.sqrt((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2) - r) / rng.uniform(0.3, 2)))
        v = SparseVolume(8)
        if seed % 2:
            v.write_levels((0, 0, 0), np.where(p > 0.5, 128, np.where(p < 0.2, 0, 127)).astype(np.uint8))
        else:
            v.write((0, 0, 0), p.astype(np.float32))
        return v

    before, other = store(), store()
    after = SparseVolume.from_snapshot(before.snapshot(), 8)
    lo = rng.integers(0, shape // 2)
    hi = lo + rng.integers(2, shape // 2 + 2)
    after.write_levels(lo, other.read_levels(lo, hi - lo))
    paste = paste_store(before, lattice, img, (0, 0, 0), size[::-1]) > 0.5
    return img, lattice, before, after, paste


def _threshold_field(n, seed, constant=None):
    """A per-voxel threshold map over the whole input (as :mod:`ctsam3d.inference.refine` gives;
    here the "HU" read is the threshold itself); ``constant``: every voxel's threshold."""
    from ctsam3d.inference.refine import ThresholdMap

    field = (0.05 + 0.9 * np.random.default_rng(seed + 100).random(n)).astype(np.float32)
    if constant is not None:
        field[:] = constant

    def read(lo, hi):
        return field[tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))]

    return ThresholdMap(float(field.min()), float(field.max()), read, lambda v: np.asarray(v, np.float32))


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("mask_is_paste", [True, False])
@pytest.mark.parametrize("variant", ["plain", "threshold_map", "threshold_half", "only_remove"])
def test_axis_aligned_update_equals_resampling_the_reachable_box(seed, mask_is_paste, variant):
    """The update decided on the lattice (one-sided neighbourhoods, separable interpolation
    elsewhere) flips exactly the voxels that resampling the whole reachable box flips -- with
    the threshold 0.5, with a per-voxel threshold map (also one of 0.5 everywhere: pastes of
    exactly 0.5 go through the map's tie handling), and restricted to removals."""
    from ctsam3d.inference.mask_layer import _apply_change_resampled

    from ctsam3d.inference.mask_layer import paste_store

    img, lattice, before, after, paste = _random_case(seed)
    n = img.GetSize()[::-1]
    threshold = {"threshold_map": _threshold_field(n, seed),
                 "threshold_half": _threshold_field(n, seed, constant=0.5)}.get(variant)
    if threshold is not None:  # the paste thresholded with the map
        paste = paste_store(before, lattice, img, (0, 0, 0), n) > threshold((0, 0, 0), n)
    start = paste if mask_is_paste else np.random.default_rng(seed).random(n) < 0.3
    keep = box_keep(img, np.asarray(img.TransformIndexToPhysicalPoint((2, 3, 4))),
                    np.asarray(img.TransformIndexToPhysicalPoint((15, 12, 10)))) if seed % 3 == 0 else None
    got, ref = SparseVolume(8), SparseVolume(8)
    for m in (got, ref):
        m.write_levels((0, 0, 0), start.astype(np.uint8) * 255)
    opts = dict(threshold=threshold, only_remove=variant == "only_remove")
    box = apply_change(got, before, after, lattice, img, keep=keep, mask_is_paste=mask_is_paste, **opts)
    ref_box = _apply_change_resampled(ref, before, after, lattice, img, keep=keep, mask_is_paste=mask_is_paste,
                                      slab_voxels=8_000_000, **opts)
    if variant == "threshold_half":  # the same flips as the plain threshold 0.5
        plain = SparseVolume(8)
        plain.write_levels((0, 0, 0), start.astype(np.uint8) * 255)
        apply_change(plain, before, after, lattice, img, keep=keep, mask_is_paste=mask_is_paste)
        np.testing.assert_array_equal(got.read_levels((0, 0, 0), n), plain.read_levels((0, 0, 0), n))
    if opts["only_remove"]:
        assert not (got.read_mask((0, 0, 0), n) & ~start).any()
    np.testing.assert_array_equal(got.read_levels((0, 0, 0), n), ref.read_levels((0, 0, 0), n))
    assert got.count() == ref.count()
    assert (box is None) == (ref_box is None)
    if box is not None:
        np.testing.assert_array_equal(box[0], ref_box[0])
        np.testing.assert_array_equal(box[1], ref_box[1])
