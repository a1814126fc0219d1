"""The session's mask lines up with the image whatever the stored orientation (Slicer's convention).

A bright sphere at a fixed world position is stored as LPS, RAS, PLI (OpenKBP's axes) and an
oblique grid; a click on it (ITK index of that file) must give the sphere's own label.
The test-double model segments exactly the bright component under the click, so any
error in index <-> world <-> lattice <-> input-grid conversions shows as a low Dice.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from inference_fakes import BrightComponentModel, dice, make_volume, nearest_index

import ctsam3d
from ctsam3d.inference.session import Session

SPHERE_LPS = (8.0, -6.0, 12.0)


@pytest.mark.parametrize("direction", ["LPS", "RAS", "PLI", "oblique"])
def test_click_on_sphere_matches_its_label(direction):
    ct, label = make_volume(direction)
    s = Session(BrightComponentModel(), expansion=False)
    s.set_image(ct)
    rec = s.add_click(nearest_index(ct, SPHERE_LPS))
    mask = s.result()
    assert mask.GetSize() == ct.GetSize()
    assert mask.GetPixelID() == sitk.sitkUInt8
    np.testing.assert_allclose(mask.GetOrigin(), ct.GetOrigin())
    np.testing.assert_allclose(mask.GetDirection(), ct.GetDirection())
    assert set(np.unique(sitk.GetArrayViewFromImage(mask))) <= {0, 1}
    assert dice(mask, label) > 0.9, direction
    assert rec.changed_bbox is not None
    # every changed voxel lies in the reported box
    arr = sitk.GetArrayFromImage(mask)
    outside = arr.copy()
    outside[rec.changed_slices_zyx] = 0
    assert not outside.any()


@pytest.mark.parametrize("direction", ["LPS", "PLI", "oblique"])
def test_click_off_the_sphere_gives_nothing(direction):
    """A flipped axis would put the sphere under a click on its mirror image."""
    ct, _ = make_volume(direction)
    mirror = (-SPHERE_LPS[0], -SPHERE_LPS[1], -SPHERE_LPS[2])
    s = Session(BrightComponentModel(), expansion=False)
    s.set_image(ct)
    s.add_click(nearest_index(ct, mirror))
    assert not sitk.GetArrayViewFromImage(s.result()).any()


@pytest.mark.parametrize("space", ["world", "ras"])
@pytest.mark.parametrize("direction", ["RAS", "PLI", "oblique"])
def test_index_and_world_clicks_agree(direction, space):
    ct, _ = make_volume(direction)
    index = nearest_index(ct, SPHERE_LPS)
    lps = np.asarray(ct.TransformIndexToPhysicalPoint(index))
    point = lps if space == "world" else lps * [-1, -1, 1]
    results = []
    for p, sp in ((index, "index"), (tuple(point), space)):
        s = Session(BrightComponentModel(), expansion=False)
        s.set_image(ct)
        rec = s.add_click(p, space=sp)
        np.testing.assert_allclose(rec.world_lps, lps, atol=1e-6)
        np.testing.assert_allclose(rec.index_ijk, index, atol=1e-6)
        results.append(sitk.GetArrayFromImage(s.result()))
    np.testing.assert_array_equal(results[0], results[1])


def test_image_already_on_the_model_lattice_is_copied_exactly():
    """An LPS image at the model spacing: lattice == image grid, the mask equals the label."""
    ct, label = make_volume("LPS", size=(40, 40, 40), spacing=(1.5, 1.5, 1.5))
    s = Session(BrightComponentModel(), expansion=False)
    s.set_image(ct)
    s.add_click(nearest_index(ct, SPHERE_LPS))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(s.result()), sitk.GetArrayFromImage(label))


def test_session_reads_a_path(tmp_path):
    ct, label = make_volume("PLI")
    path = tmp_path / "ct.nii.gz"
    sitk.WriteImage(ct, str(path))
    s = ctsam3d.Session(BrightComponentModel(), expansion=False)
    s.set_image(path)
    s.add_click(nearest_index(ct, SPHERE_LPS))
    assert dice(s.result(), label) > 0.9


@pytest.mark.parametrize("label_id", [1, 2, 7])  # brainstem, spinal cord (thin), mandible
def test_real_pli_anatomy_lines_up(label_id):
    """OpenKBP's stored P, L, I grid (5.4 x 5.4 x 3 mm) with real organ shapes.

    The CT is replaced by the organ drawn bright, so the test double segments exactly the organ
    on the model's lattice; the mask pasted back must match the clinician's label.
    """
    from ctsam3d.clicks import first_click
    from ctsam3d.examples import example_case

    case = example_case()
    labels = sitk.ReadImage(str(case.labels))
    organ = sitk.GetArrayFromImage(labels) == label_id
    ct = sitk.GetImageFromArray(np.where(organ, 200, -100).astype(np.int16))
    ct.CopyInformation(labels)
    z, y, x = first_click(organ, spacing_zyx=labels.GetSpacing()[::-1])
    s = Session(BrightComponentModel(), max_patches=40)  # 48 mm patches: the mandible needs ~20
    s.set_image(ct)
    rec = s.add_click((x, y, z))
    assert rec.expansion_stop == "done"
    truth = sitk.GetImageFromArray(organ.astype(np.uint8))
    truth.CopyInformation(labels)
    assert dice(s.result(), truth) > 0.97
