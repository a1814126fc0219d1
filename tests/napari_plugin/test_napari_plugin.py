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

from ctsam3d.napari.geometry import (  # noqa: E402
    image_from_layer_data, index_to_lps, layer_transform, lps_to_index, world_to_lps)

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
    # a prompt layer's data (continuous voxel indices (k, j, i)) <-> LPS, as ITK does
    kji = np.array([[0.0, 0.0, 0.0], [7.25, 3.5, 19.0], [13.0, 17.0, 5.75]])
    itk = [ct.TransformContinuousIndexToPhysicalPoint(tuple(float(v) for v in p[::-1])) for p in kji]
    np.testing.assert_allclose(index_to_lps(ct, kji), itk, atol=1e-9)
    np.testing.assert_allclose(lps_to_index(ct, itk), kji, atol=1e-9)


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


def _data(ct, world_zyx):
    """napari world points (LPS reversed) -> a prompt layer's data (voxel indices (k, j, i))."""
    return lps_to_index(ct, np.asarray(world_zyx, float).reshape(-1, 3)[:, ::-1])


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


@pytest.mark.parametrize("direction", ["PLI", "oblique"])
def test_prompt_layers_keep_the_image_world_and_slices(viewer, tmp_path, direction):
    """After Start the dims slider steps through the CT's slices over its world extent (empty
    Points/Shapes layers without the CT's transform have a step of 1 world unit, so the slider
    stepped through every millimetre), and reset_view fits the CT as it does alone."""
    layer, ct, _ = _open(viewer, tmp_path, direction)
    viewer.reset_view()
    center, zoom = tuple(viewer.scene.camera.center), viewer.scene.camera.zoom
    ext = layer.extent
    seg = _segmenter(viewer, layer)
    for d, r in enumerate(viewer.dims.range):
        assert abs(r.start - ext.world[0, d]) <= ext.step[d] / 2 and abs(r.stop - ext.world[1, d]) <= ext.step[d] / 2
        assert r.step == pytest.approx(ext.step[d])
    if direction == "PLI":  # axis-aligned: one slider step per slice, as many as the CT has
        assert viewer.dims.nsteps[0] == layer.data.shape[0] == ct.GetSize()[2]
    viewer.reset_view()
    np.testing.assert_allclose(viewer.scene.camera.center, center, atol=1e-6)
    assert viewer.scene.camera.zoom == pytest.approx(zoom)
    # every ctsam3d layer is on the CT's grid
    for key in ("pos", "neg", "shapes_pos", "shapes_neg", "result"):
        np.testing.assert_allclose(seg.layers[key].affine.affine_matrix, layer.affine.affine_matrix)
        np.testing.assert_allclose(seg.layers[key].scale, layer.scale)
        np.testing.assert_allclose(seg.layers[key].translate, layer.translate)


def _mouse(layer, kind, world):
    from napari.utils._proxies import ReadOnlyWrapper
    from napari.utils.interactions import mouse_move_callbacks, mouse_press_callbacks, mouse_release_callbacks

    class Event:  # what napari's own mouse-binding tests pass: a vispy mouse event in world coordinates
        def __init__(self, type):
            self.type, self.is_dragging, self.modifiers = type, type == "mouse_move", []
            self.position, self.pos = tuple(float(v) for v in world), np.zeros(2)
            self.view_direction = self.up_direction = None
            self.dims_displayed = [1, 2]
            self.handled = False

    fn = {"mouse_press": mouse_press_callbacks, "mouse_move": mouse_move_callbacks,
          "mouse_release": mouse_release_callbacks}[kind]
    fn(layer, ReadOnlyWrapper(Event(kind), exceptions=("handled",)))


def test_drawn_prompts_land_on_the_slice_shown(viewer, tmp_path):
    """A click and a rectangle drawn with the mouse on the slice shown are shown on that slice,
    and reach the session at their LPS position (world reversed) on that slice."""
    layer, ct, _ = _open(viewer, tmp_path, "PLI")
    seg = _segmenter(viewer, layer)
    k, j, i = _data(ct, np.asarray(B)[::-1])[0].round()  # the CT voxel at B
    viewer.dims.set_point(0, layer.data_to_world((k, j, i))[0])
    assert layer.world_to_data(viewer.dims.point)[0] == pytest.approx(k)  # the slice shown is k
    z = viewer.dims.point[0]
    # a click at B's in-plane position (napari's add mode: world_to_data of the mouse position)
    pts = seg.layers["pos"]
    pts.mode = "add"
    at = (z, B[1], B[0])
    _mouse(pts, "mouse_press", at)
    _mouse(pts, "mouse_release", at)
    assert len(pts.data) == 1 and pts.data[0][0] == pytest.approx(k)
    assert list(pts._view_indices) == [0]  # shown on this slice
    assert seg.apply() == 1
    np.testing.assert_allclose(seg.session.clicks()[-1].world_lps, np.asarray(at)[::-1], atol=1e-6)
    assert seg.layers["result"].data[int(k)].any()
    # a rectangle dragged on the same slice
    seg.new_object()
    sh = seg.layers["shapes_pos"]
    sh.mode = "add_rectangle"
    a, b = (z, B[1] - 4, B[0] - 4), (z, B[1] + 4, B[0] + 4)
    _mouse(sh, "mouse_press", a)
    _mouse(sh, "mouse_move", b)
    _mouse(sh, "mouse_release", b)
    assert len(sh.data) == 1 and np.allclose(sh.data[0][:, 0], k)
    assert sh._data_view._displayed.tolist() == [True]
    assert seg.apply() == 1 and seg.session.clicks()[-1].source == "box2d"
    corners = index_to_lps(ct, sh.data[0])
    np.testing.assert_allclose(corners[:, 2], at[0], atol=1e-6)  # S of the slice shown
    np.testing.assert_allclose(corners[:, :2].min(axis=0), [B[0] - 4, B[1] - 4], atol=1e-6)


def test_points_shapes_objects_undo_export(viewer, tmp_path):
    layer, ct, _ = _open(viewer, tmp_path, "PLI")
    seg = _segmenter(viewer, layer)
    seg.layers["pos"].add(_data(ct, np.asarray(A)[::-1]))
    assert seg.apply() == 1 and seg.apply() == 0
    want = _session_labels(ct, [lambda s: s.add_click(A, space="world")])
    assert np.array_equal(seg.layers["result"].data, want) and want.any()

    # a second object from a lasso on the axial slice through B (world z = S constant)
    oid = seg.new_object("b")
    assert oid == 2
    k = ct.TransformPhysicalPointToIndex(B)
    z = np.asarray(ct.TransformIndexToPhysicalPoint(k))[2]  # the slice's S position
    sq = np.array([[z, B[1] - 3, B[0] - 3], [z, B[1] - 3, B[0] + 3], [z, B[1] + 3, B[0] + 3], [z, B[1] + 3, B[0] - 3]])
    seg.layers["shapes_pos"].add([_data(ct, sq)], shape_type="polygon")
    assert seg.apply() == 1
    labels = seg.layers["result"].data
    assert set(np.unique(labels)) == {0, 1, 2}
    # a negative scribble across B removes it; undo brings it back and drops the path from its layer
    seg.layers["shapes_neg"].add([_data(ct, [[z, B[1], B[0] - 2], [z, B[1], B[0] + 2]])], shape_type="path")
    seg.apply()
    assert 2 not in np.unique(seg.layers["result"].data)
    assert seg.undo() and len(seg.layers["shapes_neg"].data) == 0
    assert np.array_equal(seg.layers["result"].data, labels)
    # rectangle = 2D box on the slice
    rect = sq[[0, 2]][[0, 0, 1, 1]] * [1, 1, 1] + np.array([[0, 0, 0], [0, 0, 6], [0, 6, 6], [0, 6, 0]]) - [0, 3, 3]
    seg.layers["shapes_pos"].add([_data(ct, rect)], shape_type="rectangle")
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
    seg.layers["neg"].add(_data(ct, np.asarray(A)[::-1]))  # a negative click first
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
    w.seg.layers["pos"].add(_data(ct, np.asarray(A)[::-1]))
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
