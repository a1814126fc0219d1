"""The session with a real CT-SAM3D network (untrained ``ctsam3d-lite``): wiring, caching,
expansion through the real CPP net and exact undo with non-binary probabilities.
No accuracy is checked (random weights)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from ctsam3d.examples import example_case
from ctsam3d.inference.session import Session


@pytest.fixture(scope="module")
def lite():
    from ctsam3d.modeling import load_model

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_model("ctsam3d-lite")


@pytest.fixture(scope="module")
def ct():
    return sitk.ReadImage(str(example_case().ct))


def test_clicks_cache_and_exact_undo(lite, ct):
    s = Session(lite, expansion=False)
    s.set_image(ct)
    r1 = s.add_click((63, 63, 25))
    p1 = s.probabilities()
    m1 = sitk.GetArrayFromImage(s.result())
    r2 = s.add_click((60, 66, 27), positive=False)
    assert (r1.patches_encoded, r2.patches_encoded, r2.patches_decoded) == (1, 0, 1)
    assert r1.quality is not None and np.isfinite(r1.quality)
    assert {"crop", "encode", "decode", "total"} <= set(r1.timing_ms)
    s.undo()
    p1b = s.probabilities()
    assert p1b[0] == p1[0]
    np.testing.assert_array_equal(p1b[1], p1[1])
    np.testing.assert_array_equal(sitk.GetArrayFromImage(s.result()), m1)


def test_expansion_runs_the_cpp_net_within_budget(lite, ct):
    s = Session(lite, max_patches=1)
    s.set_image(ct)
    rec = s.add_click((63, 63, 25))
    assert rec.expansion_stop in {"done", "max_patches", "max_cpp"}
    assert rec.expansion_patches <= 1 and rec.cpp_evaluations <= 3
    assert rec.patches_decoded == 1 + rec.expansion_patches
    assert rec.n_patches == 1 + rec.expansion_patches
    mask = s.result()
    assert mask.GetSize() == ct.GetSize() and mask.GetPixelID() == sitk.sitkUInt8
