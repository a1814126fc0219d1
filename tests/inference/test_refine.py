"""Intensity-guided boundary refinement (inference/refine.py) and its use by the session."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import SimpleITK as sitk
from inference_fakes import BrightComponentModel, FakeConfig, make_volume, nearest_index

from ctsam3d.inference.refine import Refinement, fit_intensity_model, sample_stride
from ctsam3d.inference.session import Session


def _dice(a, b):
    return 2.0 * (a & b).sum() / max(1, a.sum() + b.sum())


def test_thresholds_follow_the_inside_and_outside_histograms():
    rng = np.random.default_rng(0)
    hu = np.concatenate([rng.normal(400, 30, 5000), rng.normal(40, 20, 20000)])  # bone in muscle
    probs = np.concatenate([np.full(5000, 0.95), np.full(20000, 0.02)])
    m = fit_intensity_model(probs, hu, Refinement())
    t_bone, t_muscle = m.at(np.array([400.0, 40.0]))
    assert t_bone == pytest.approx(1 / (1 + np.exp(3.0)), abs=1e-6)  # capped: c = 3
    assert t_muscle == pytest.approx(1 / (1 + np.exp(-3.0)), abs=1e-6)
    assert m.lo == pytest.approx(t_bone) and m.hi == pytest.approx(t_muscle)
    # between the two classes the threshold rises monotonically from bone to muscle
    mid = m.at(np.array([300.0, 220.0, 150.0, 100.0]))
    assert np.all(np.diff(mid) >= 0)


@pytest.mark.parametrize(("n_in", "n_out"), [(10, 5000), (5000, 10)])
def test_too_few_confident_voxels_give_no_model(n_in, n_out):
    probs = np.concatenate([np.full(n_in, 0.99), np.full(n_out, 0.01), np.full(100, 0.5)])
    hu = np.zeros_like(probs)
    assert fit_intensity_model(probs, hu, Refinement()) is None


def test_weight_zero_leaves_the_threshold_at_one_half():
    probs = np.concatenate([np.full(500, 0.99), np.full(500, 0.01)])
    hu = np.concatenate([np.full(500, 300.0), np.full(500, 0.0)])
    m = fit_intensity_model(probs, hu, Refinement(weight=0.0))
    np.testing.assert_array_equal(m.thresholds, np.float32(0.5))


@pytest.mark.parametrize(("box", "cap", "stride"), [((10, 10, 10), 1000, 1), ((100, 100, 100), 200_000, 2),
                                                    ((100, 100, 100), 1000, 10), ((0, 5, 5), 10, 1)])
def test_sample_stride(box, cap, stride):
    assert sample_stride((0, 0, 0), box, cap) == stride


@pytest.mark.parametrize("bad", [dict(weight=-1.0), dict(bin_hu=0.0), dict(inside=0.1, outside=0.2)])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError):
        Refinement(**bad)


def _rod_case():
    """A 5 mm thick bright rod on a 1 mm input grid, segmented by a model on a 3 mm lattice."""
    ct, label = make_volume("LPS", size=(48, 48, 40), spacing=(1.0, 1.0, 1.0),
                            shapes=(("cylinder", (0.0, 0.0, -12.0, 12.0), 2.5),))
    model = BrightComponentModel(FakeConfig(spacing_mm=3.0, patch_size=(16, 16, 16)))
    return ct, sitk.GetArrayFromImage(label) > 0, model


def _rod_mask(refine):
    ct, truth, model = _rod_case()
    s = Session(model, refine=refine, expansion=False)
    s.set_image(ct)
    s.add_click(nearest_index(ct, (0.0, 0.0, 0.0)))
    return sitk.GetArrayFromImage(s.result()) > 0, truth, s


def test_refinement_moves_a_thin_structure_boundary_to_the_intensity_edge():
    plain, truth, _ = _rod_mask(False)
    refined, _, s = _rod_mask(True)
    assert s._objects[1].intensity is not None
    d_plain, d_refined = _dice(plain, truth), _dice(refined, truth)
    assert d_refined > d_plain + 0.05, (d_plain, d_refined)
    assert d_refined > 0.9, d_refined


def test_a_negative_click_never_adds_a_voxel_with_refinement():
    ct, _, model = _rod_case()
    s = Session(model, refine=True, expansion=False)
    s.set_image(ct)
    s.add_click(nearest_index(ct, (0.0, 0.0, 0.0)))
    for z in (8.0, -4.0, 11.0):
        before = sitk.GetArrayFromImage(s.result()) > 0
        s.add_click(nearest_index(ct, (0.0, 0.0, z)), positive=False)
        after = sitk.GetArrayFromImage(s.result()) > 0
        assert not (after & ~before).any()


def test_undo_restores_the_refined_mask_and_its_thresholds_exactly():
    ct, _, model = _rod_case()
    s = Session(model, expansion=False)
    s.set_image(ct)
    s.add_click(nearest_index(ct, (0.0, 0.0, 0.0)))
    first = sitk.GetArrayFromImage(s.result())
    model_1 = s._objects[1].intensity
    s.add_click(nearest_index(ct, (0.0, 0.0, 6.0)), positive=False)
    s.undo()
    np.testing.assert_array_equal(sitk.GetArrayFromImage(s.result()), first)
    assert s._objects[1].intensity is model_1


def test_refinement_is_on_by_default_and_off_for_reference_exact_models():
    @dataclasses.dataclass
    class ExactConfig(FakeConfig):
        reference_exact: bool = True

    assert Session(BrightComponentModel()).refinement.enabled
    assert not Session(BrightComponentModel(ExactConfig())).refinement.enabled
    assert Session(BrightComponentModel(ExactConfig()), refine=True).refinement.enabled
    custom = Refinement(cap=2.0)
    assert Session(BrightComponentModel(), refine=custom).refinement is custom


@pytest.mark.parametrize(("lo", "hi", "stride"), [((0, 0, 0), (5, 6, 7), 1), ((1, 2, 3), (4, 6, 7), 2), ((1, 1, 1), (5, 6, 7), 3)])
def test_hu_box_reads_the_strided_box_with_paste_stores_shape(lo, hi, stride):
    from ctsam3d.inference.mask_layer import _strided_shape
    from ctsam3d.inference.refine import hu_box

    a = np.arange(5 * 6 * 7, dtype=np.int16).reshape(5, 6, 7)
    got = hu_box(sitk.GetImageFromArray(a), lo, hi, stride)
    want = a[lo[0]:hi[0]:stride, lo[1]:hi[1]:stride, lo[2]:hi[2]:stride]
    np.testing.assert_array_equal(got, want)
    assert got.shape == _strided_shape(lo, hi, stride)


def test_a_step_never_takes_a_numpy_view_of_the_session_image(monkeypatch):
    """A view's MakeUnique swaps the buffer of an image that server sessions share while other
    threads crop from it (SIGSEGV under 8 users): the refinement must copy through SimpleITK."""
    ct, _, model = _rod_case()
    s = Session(model, refine=True)
    s.set_image(ct)  # set-up may take a view (the server holds every permit then)
    seen = []
    real = sitk.GetArrayViewFromImage
    monkeypatch.setattr(sitk, "GetArrayViewFromImage", lambda img: seen.append(img is ct) or real(img))
    s.add_click(nearest_index(ct, (0.0, 0.0, 0.0)))
    s.add_click(nearest_index(ct, (0.0, 0.0, 8.0)), positive=False)
    assert s._objects[1].intensity is not None
    assert not any(seen)
