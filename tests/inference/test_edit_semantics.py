"""Prompt semantics on real CT (issue 17, items 13-15) with the bundled trained model.

OpenKBP validation patient pt_203 (tests/data): a user's mask comes back voxel-identical,
a click in edit mode changes only the connected change at it, a negative click never adds
a voxel, a box never reaches outside its voxels, and undo stays exact.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from ctsam3d.inference.session import Session

DATA = Path(__file__).resolve().parents[1] / "data"
BRAINSTEM, SPINAL_CORD, PAROTID_R, PAROTID_L, LARYNX = 1, 2, 3, 4, 6


@pytest.fixture(scope="module")
def model():
    from ctsam3d.modeling import load_model
    from ctsam3d.modeling.checkpoint import BUNDLED_DIR

    if not (BUNDLED_DIR / "model.safetensors").is_file():
        pytest.skip("no bundled trained weights")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_model()


@pytest.fixture(scope="module")
def ct():
    return sitk.ReadImage(str(DATA / "openkbp_pt_203_ct.nii.gz"))


@pytest.fixture(scope="module")
def oars():
    return sitk.GetArrayFromImage(sitk.ReadImage(str(DATA / "openkbp_pt_203_oars.nii.gz")))


def _img(arr, ct):
    out = sitk.GetImageFromArray(np.asarray(arr, np.uint8))
    out.CopyInformation(ct)
    return out


def _mask(s, oid=None):
    return sitk.GetArrayFromImage(s.result(oid)) > 0


def _centre(m) -> tuple[int, int, int]:
    """ITK index (i, j, k) of the innermost voxel of a (z, y, x) mask."""
    z, y, x = np.unravel_index(int(np.argmax(ndimage.distance_transform_edt(m))), m.shape)
    return int(x), int(y), int(z)


def _session(model, ct, expansion=False):
    s = Session(model, expansion=expansion, max_patches=4)  # expansion runs, within a test's time
    s.set_image(ct)
    return s


def _probs_match_result(s):
    region, probs = s.probabilities()
    full = np.zeros(sitk.GetArrayViewFromImage(s.image).shape, bool)
    full[region] = probs > 0.5
    np.testing.assert_array_equal(full, _mask(s))


def test_initial_mask_reads_back_voxel_identical(model, ct, oars):
    s = _session(model, ct)
    for organ in (BRAINSTEM, PAROTID_R, LARYNX):
        rec = s.set_initial_mask(_img(oars == organ, ct))
        np.testing.assert_array_equal(_mask(s), oars == organ)
        assert rec.volume_ml == pytest.approx((oars == organ).sum() * np.prod(ct.GetSpacing()) / 1000)
        _probs_match_result(s)
    s.set_initial_mask(_img(oars > 0, ct))  # several organs in one mask, multi-valued label
    np.testing.assert_array_equal(_mask(s), oars > 0)


def _cut(organ_mask, half=2):
    zs = np.flatnonzero(organ_mask.any(axis=(1, 2)))
    mid = (zs[0] + zs[-1]) // 2
    cut = np.zeros_like(organ_mask)
    cut[mid - half : mid + half] = True
    return organ_mask & cut


@pytest.mark.parametrize("organ", [PAROTID_L, LARYNX])
def test_edit_mode_positive_click_changes_only_the_connected_addition(model, ct, oars, organ):
    missing = _cut(oars == organ)
    initial = (oars > 0) & ~missing  # every organ of the patient, one with a gap of 4 slices
    s = _session(model, ct, expansion=True)
    s.set_initial_mask(_img(initial, ct))
    click = _centre(missing)
    rec = s.add_click(click)
    after = _mask(s)
    added, removed = after & ~initial, initial & ~after
    assert not removed.any()  # the user's mask is kept everywhere
    assert after[click[::-1]]  # the clicked voxel is in (this model fills most of the gap)
    assert (added & missing).sum() > 0.5 * missing.sum()
    # every change is one piece around the gap: nothing of the other organs changes
    others = (oars > 0) & (oars != organ)
    assert not (added & ndimage.binary_dilation(others, iterations=2) & ~ndimage.binary_dilation(oars == organ, iterations=3)).any()
    sl = rec.changed_slices_zyx
    inside = np.zeros_like(after)
    inside[sl] = True
    assert not (added & ~inside).any()
    _probs_match_result(s)
    s.undo()
    np.testing.assert_array_equal(_mask(s), initial)


def test_edit_mode_click_on_an_already_correct_voxel_changes_nothing(model, ct, oars):
    initial = oars == PAROTID_L
    s = _session(model, ct, expansion=True)
    s.set_initial_mask(_img(initial, ct))
    rec = s.add_click(_centre(initial))  # positive, inside: already foreground
    np.testing.assert_array_equal(_mask(s), initial)
    assert rec.changed_bbox is None and rec.expansion_stop == "no_change"
    s.add_click(_centre(~(oars > 0) & (sitk.GetArrayViewFromImage(ct) > -200)), positive=False)  # negative on background
    np.testing.assert_array_equal(_mask(s), initial)


NEGATIVE_CASES = [  # (start, where the negative click goes)
    ("clicks", "inside"),  # on the mask the first click made
    ("clicks", "other_organ"),
    ("clicks", "far_background"),
    ("edit", "other_organ"),
    ("edit", "far_background"),
    ("empty_edit", "inside_organ"),  # issue 17: an empty initial mask plus a negative click made 11 ml
]


@pytest.mark.parametrize("start,where", NEGATIVE_CASES)
def test_negative_click_never_adds_a_voxel(model, ct, oars, start, where):
    target = oars == PAROTID_L
    s = _session(model, ct, expansion=True)
    if start == "clicks":
        s.add_click(_centre(target))
    elif start == "edit":
        s.set_initial_mask(_img(target | (oars == BRAINSTEM), ct))
    else:
        s.set_initial_mask(_img(np.zeros_like(target), ct))
    before = _mask(s)
    p_before = s.probabilities()
    body = sitk.GetArrayViewFromImage(ct) > -200
    point = {
        "inside": _centre(before) if before.any() else None,
        "other_organ": _centre(oars == BRAINSTEM),
        "far_background": _centre(body & ~ndimage.binary_dilation(oars > 0, iterations=8)),
        "inside_organ": _centre(target),
    }[where]
    rec = s.add_click(point, positive=False)
    after = _mask(s)
    assert not (after & ~before).any(), f"negative click added {(after & ~before).sum()} voxels"
    assert rec.expansion_stop == "negative"
    s.undo()
    np.testing.assert_array_equal(_mask(s), before)
    p_undone = s.probabilities()
    assert p_undone[0] == p_before[0]
    np.testing.assert_array_equal(p_undone[1], p_before[1])


@pytest.mark.parametrize("organ,space", [(PAROTID_R, "index"), (PAROTID_L, "world")])
def test_box_mask_stays_inside_the_box_voxels(model, ct, oars, organ, space):
    """A box through the middle of a parotid (the organ goes on beyond it): before issue 17
    the mask reached up to one lattice voxel outside (105 and 63 voxels here)."""
    k, j, i = np.nonzero(oars == organ)
    lo, hi = np.array([i.min(), j.min(), k.min()]), np.array([i.max(), j.max(), k.max()])
    a, b = lo + (hi - lo) // 4, hi - (hi - lo) // 4
    s = _session(model, ct, expansion=True)
    if space == "world":
        s.add_box(ct.TransformIndexToPhysicalPoint(tuple(int(v) for v in a)),
                  ct.TransformIndexToPhysicalPoint(tuple(int(v) for v in b)), space="world")
    else:
        s.add_box(tuple(int(v) for v in a), tuple(int(v) for v in b))
    m = _mask(s)
    assert m.sum() > 100
    inbox = np.zeros_like(m)
    inbox[a[2] : b[2] + 1, a[1] : b[1] + 1, a[0] : b[0] + 1] = True
    assert not (m & ~inbox).any(), f"{(m & ~inbox).sum()} voxels outside the box"


def test_box_inside_an_existing_patch_keeps_the_mask_outside_the_box(model, ct, oars):
    s = _session(model, ct)
    s.add_click(_centre(oars == PAROTID_L))
    before = _mask(s)
    c = np.asarray(_centre(oars == PAROTID_L))
    a, b = c - (3, 3, 2), c + (3, 3, 2)
    s.add_box(tuple(int(v) for v in a), tuple(int(v) for v in b))
    after = _mask(s)
    inbox = np.zeros_like(after)
    inbox[a[2] : b[2] + 1, a[1] : b[1] + 1, a[0] : b[0] + 1] = True
    np.testing.assert_array_equal(after[~inbox], before[~inbox])
