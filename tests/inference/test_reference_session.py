"""A session with a reference-exact model: the release's grid, int16 block crops and the viewer's
patch rule; models we train keep the canonical lattice and the patch/8 margin (test double)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from inference_fakes import BrightComponentModel, FakeConfig, make_volume

from ctsam3d.geometry import canonical_grid
from ctsam3d.geometry.reference_grid import ReferenceGrid, normalize_reference, sample_reference_block
from ctsam3d.inference.session import Session


@dataclass
class _RefConfig(FakeConfig):
    reference_exact: bool = True


def _session(reference: bool):
    ct, _ = make_volume("PLI")
    model = BrightComponentModel(_RefConfig() if reference else FakeConfig())
    s = Session(model, expansion=False)
    s.set_image(ct)
    return s, ct


def test_lattice_and_crops():
    s, ct = _session(True)
    g = ReferenceGrid.of(ct, 1.5)
    assert s.lattice.reference and s.lattice.origin_lps == g.origin_lps and s.lattice.shape_zyx == g.shape_zyx
    s.add_click((8.0, -6.0, 12.0), space="world")
    start = s._objects[s.current_object].patches[0]
    hu = s._runner.crop(start)
    assert hu.dtype == np.int16  # the input's pixel type, as the release keeps it
    np.testing.assert_array_equal(hu, sample_reference_block(ct, g, start, (32, 32, 32)))
    np.testing.assert_array_equal(s._runner.cache.get(start).image[0, 0].numpy(),
                                  normalize_reference(hu, (-125.0, 225.0)))

    t, _ = _session(False)  # models we train: the canonical grid, float crops
    origin, _ = canonical_grid(ct, 1.5)
    assert not t.lattice.reference and t.lattice.origin_lps == pytest.approx(origin)
    assert t.lattice.origin_lps != s.lattice.origin_lps


@pytest.mark.parametrize("reference, patches", [(True, 1), (False, 2)])
def test_click_near_a_patch_face(reference, patches):
    """The viewer decodes any click inside its patch there; models we train open a new patch
    for a positive click closer than patch/8 voxels to the faces."""
    s, _ = _session(reference)
    s.add_click((8.0, -6.0, 12.0), space="world")
    start = np.asarray(s._objects[s.current_object].patches[0])
    near_face = s.lattice.zyx_to_world(start + np.array([16, 16, 2]))  # 2 voxels from the x face
    s.add_click(tuple(near_face), space="world")
    assert len(s._objects[s.current_object].patches) == patches
