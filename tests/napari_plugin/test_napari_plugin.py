"""napari plugin (ctsam3d.napari): true geometry of the CT and result layers, prompts from
points and shapes layers, several objects, undo, export. Headless (QT_QPA_PLATFORM=offscreen,
viewer never shown); skipped where napari is not installed (``pip install -e .[napari]``).

The model is the bright-component test double of tests/inference, so every result is exact.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "inference"))
from inference_fakes import BrightComponentModel, make_volume  # noqa: E402

from ctsam3d.napari.geometry import image_from_layer_data, layer_transform, world_to_lps  # noqa: E402

A = (8.0, -6.0, 12.0)  # sphere centres, LPS mm
B = (-22.0, 14.0, -10.0)
TWO = (("sphere", A, 9.0), ("sphere", B, 7.0))


def _world(layer_kw, index_kji):
    """napari's data -> world: affine @ (scale * index + translate)."""
    x = np.asarray(layer_kw["scale"]) * np.asarray(index_kji, float) + np.asarray(layer_kw["translate"])
    return layer_kw["affine"][:3, :3] @ x + layer_kw["affine"][:3, 3]


@pytest.mark.parametrize("direction", ["LPS", "RAS", "PLI", "oblique"])
def test_layer_transform_is_itk_index_to_lps(direction):
    ct, _ = make_volume(direction, size=(20, 18, 14), spacing=(1.2, 1.1, 2.0))
    kw = layer_transform(ct)
    for ijk in [(0, 0, 0), (19, 3, 7), (5, 17, 13)]:
        lps = np.asarray(ct.TransformContinuousIndexToPhysicalPoint(tuple(float(v) for v in ijk)))
        np.testing.assert_allclose(_world(kw, ijk[::-1]), lps[::-1], atol=1e-9)
    np.testing.assert_allclose(world_to_lps([lps[::-1]])[0], lps)


def test_image_from_axis_aligned_layer():
    img = image_from_layer_data(np.zeros((3, 4, 5)), scale=(2.0, 0.5, 0.7), translate=(10.0, -3.0, 1.0))
    assert img.GetSize() == (5, 4, 3) and img.GetSpacing() == (0.7, 0.5, 2.0) and img.GetOrigin() == (1.0, -3.0, 10.0)


@pytest.fixture(scope="module")
def napari_mod():
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    return pytest.importorskip("napari", reason="napari not installed (pip install -e .[napari])")


@pytest.fixture
def viewer(napari_mod):
    """napari's viewer model: the layers and events of a viewer without its OpenGL canvas (this
    machine has no OpenGL context offscreen, so ``napari.Viewer(show=False)`` cannot draw)."""
    from napari.components import ViewerModel

    return ViewerModel()


def _open(viewer, tmp_path, direction="PLI"):
    from napari.layers import Layer

    from ctsam3d.napari.reader import get_reader

    ct, lab = make_volume(direction, size=(60, 56, 30), spacing=(1.2, 1.1, 2.0), shapes=TWO)
    path = tmp_path / "ct.nii.gz"
    sitk.WriteImage(ct, str(path))
    assert get_reader(str(tmp_path / "x.png")) is None
    (data, meta, kind), = get_reader(str(path))(str(path))
    layer = viewer.add_layer(Layer.create(data, meta, kind))
    return layer, ct, lab


def _segmenter(viewer, layer):
    from ctsam3d.inference.session import Session
    from ctsam3d.napari.controller import NapariSegmenter

    return NapariSegmenter(viewer, layer, session=Session(BrightComponentModel(), expansion=False))


def _session_labels(ct, steps):
    from ctsam3d.inference.session import Session

    s = Session(BrightComponentModel(), expansion=False)
    s.set_image(ct)
    for fn in steps:
        fn(s)
    return sitk.GetArrayFromImage(s.label_map())


def test_reader_geometry_and_result_layer(viewer, tmp_path):
    layer, ct, _ = _open(viewer, tmp_path, "oblique")
    seg = _segmenter(viewer, layer)
    res = seg.layers["result"]
    np.testing.assert_allclose(res.scale, layer.scale)
    np.testing.assert_allclose(res.translate, layer.translate)
    np.testing.assert_allclose(res.affine.affine_matrix, layer.affine.affine_matrix)
    assert res.data.shape == sitk.GetArrayFromImage(ct).shape
    # the napari world position of a data voxel is its LPS position (reversed)
    lps = np.asarray(ct.TransformIndexToPhysicalPoint((10, 20, 5)))
    np.testing.assert_allclose(layer.data_to_world((5, 20, 10)), lps[::-1], atol=1e-6)


def test_points_shapes_objects_undo_export(viewer, tmp_path):
    layer, ct, _ = _open(viewer, tmp_path, "PLI")
    seg = _segmenter(viewer, layer)
    seg.layers["pos"].add([np.asarray(A)[::-1]])
    assert seg.apply() == 1 and seg.apply() == 0
    want = _session_labels(ct, [lambda s: s.add_click(A, space="world")])
    assert np.array_equal(seg.layers["result"].data, want) and want.any()

    # a second object from a lasso on the axial slice through B (world z = S constant)
    oid = seg.new_object("b")
    assert oid == 2
    k = ct.TransformPhysicalPointToIndex(B)
    z = np.asarray(ct.TransformIndexToPhysicalPoint(k))[2]  # the slice's S position
    sq = np.array([[z, B[1] - 3, B[0] - 3], [z, B[1] - 3, B[0] + 3], [z, B[1] + 3, B[0] + 3], [z, B[1] + 3, B[0] - 3]])
    seg.layers["shapes_pos"].add([sq], shape_type="polygon")
    assert seg.apply() == 1
    labels = seg.layers["result"].data
    assert set(np.unique(labels)) == {0, 1, 2}
    # a negative scribble across B removes it; undo brings it back and drops the path from its layer
    seg.layers["shapes_neg"].add([np.array([[z, B[1], B[0] - 2], [z, B[1], B[0] + 2]])], shape_type="path")
    seg.apply()
    assert 2 not in np.unique(seg.layers["result"].data)
    assert seg.undo() and len(seg.layers["shapes_neg"].data) == 0
    assert np.array_equal(seg.layers["result"].data, labels)
    # rectangle = 2D box on the slice
    seg.layers["shapes_pos"].add([sq[[0, 2]][[0, 0, 1, 1]] * [1, 1, 1] + np.array([[0, 0, 0], [0, 0, 6], [0, 6, 6], [0, 6, 0]]) - [0, 3, 3]], shape_type="rectangle")
    assert seg.apply() == 1
    assert seg.session.clicks()[-1].source == "box2d"
    out = seg.export(tmp_path / "labels.nii.gz")
    written = sitk.ReadImage(str(out))
    assert written.GetSize() == ct.GetSize() and np.allclose(written.GetDirection(), ct.GetDirection())
    assert np.array_equal(sitk.GetArrayFromImage(written), seg.layers["result"].data)
    assert (tmp_path / "labels.json").is_file()


def test_refused_prompt_is_removed_and_reported(viewer, tmp_path):
    from ctsam3d.errors import ClickError

    layer, ct, _ = _open(viewer, tmp_path, "LPS")
    seg = _segmenter(viewer, layer)
    seg.layers["neg"].add([np.asarray(A)[::-1]])  # a negative click first
    with pytest.raises(ClickError, match="negative click before any positive"):
        seg.apply()
    assert len(seg.layers["neg"].data) == 0 and not seg.layers["result"].data.any()


def test_widget_builds_and_runs(viewer, tmp_path):
    from qtpy.QtWidgets import QApplication

    from ctsam3d.napari.widget import SegmentWidget

    app = QApplication.instance() or QApplication([])  # offscreen platform  # noqa: F841

    layer, ct, _ = _open(viewer, tmp_path, "LPS")
    w = SegmentWidget(viewer, model=BrightComponentModel())
    assert w.layer_box.currentText() == layer.name
    w.start()
    w.seg.session.expansion.enabled = False
    w.seg.layers["pos"].add([np.asarray(A)[::-1]])
    w.apply()
    assert "1 prompt(s) applied" in w.status.text() and w.seg.layers["result"].data.any()
    w.undo()
    assert not w.seg.layers["result"].data.any()
    assert w.export(str(tmp_path / "l.nii.gz")) is not None


def test_manifest_is_valid_npe2(napari_mod):
    npe2 = pytest.importorskip("npe2")
    import ctsam3d.napari

    path = Path(ctsam3d.napari.__file__).parent / "napari.yaml"
    pm = npe2.PluginManifest.from_file(path)
    assert pm.name == "ctsam3d"
    assert {c.id for c in pm.contributions.commands} == {"ctsam3d.get_reader", "ctsam3d.segment_widget"}
    # every command's python_name resolves
    import importlib

    for c in pm.contributions.commands:
        mod, attr = c.python_name.split(":")
        assert callable(getattr(importlib.import_module(mod), attr))
