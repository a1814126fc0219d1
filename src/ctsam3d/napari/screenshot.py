"""``python -m ctsam3d.napari.screenshot OUT.png``: the plugin on the bundled example CT.

Opens the bundled OpenKBP case with the plugin's reader, docks the widget, draws a lasso
around the left parotid on its largest axial slice (from the ground-truth contour, as
:mod:`ctsam3d.clicks.shapes` simulates one) and, as a second object, a positive click in the
mandible on the same slice, applies them with the default model and saves a screenshot of the
window on that slice, zoomed on the patient (the CT's field of view is mostly air).
Needs a display with OpenGL (on a headless machine: ``xvfb-run -a python -m ...``).
"""

from __future__ import annotations

import sys

import numpy as np
import SimpleITK as sitk


def _body_box(ct_slice: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The patient's bounding box ``(lo, hi)`` (``(j, i)`` voxels) on one slice: the largest
    component above -500 HU (not the couch's or a stray voxel's)."""
    from scipy import ndimage

    lab, n = ndimage.label(ct_slice > -500)
    sizes = ndimage.sum(np.ones_like(lab), lab, range(1, n + 1))
    pts = np.argwhere(lab == 1 + int(np.argmax(sizes)))
    return pts.min(axis=0), pts.max(axis=0)


def main(argv=None) -> int:
    import napari
    from qtpy.QtWidgets import QApplication
    from scipy import ndimage

    from ..clicks.shapes import simulate_lasso
    from ..examples import example_case
    from .reader import read_ct
    from .widget import SegmentWidget

    out = (argv or sys.argv[1:] or ["napari.png"])[0]
    case = example_case()
    viewer = napari.Viewer(show=False)
    (data, meta, _), = read_ct(str(case.ct))
    image_layer = viewer.add_image(data, **meta)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(case.labels)))
    names = {v: k for k, v in case.names.items()}
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="CT-SAM3D", area="right")
    widget.start()
    seg = widget.seg

    # the prompt layers hold voxel indices (k, j, i) of the CT, as napari stores what one draws
    lasso = simulate_lasso(labels == names["parotid_left"], rng=np.random.default_rng(0), perturb=0.05, max_vertices=24)
    k = int(round(lasso.points[0][0]))
    viewer.dims.set_point(0, image_layer.data_to_world((k, 0, 0))[0])  # the slider on the lasso's slice
    seg.layers["shapes_pos"].add([lasso.points], shape_type="polygon")
    seg.apply()
    seg.new_object("mandible")
    bone = labels[k] == names["mandible"]  # the click: the mandible's deepest voxel on that slice
    depth = ndimage.distance_transform_edt(bone)
    seg.layers["pos"].add([[k, *np.unravel_index(int(np.argmax(depth)), bone.shape)]])
    seg.apply()
    seg.layers["pos"].selected_data = set()

    viewer.window._qt_window.resize(1500, 900)
    QApplication.processEvents()
    # zoom on the patient on this slice (reset_view fits the whole CT, here mostly air)
    lo, hi = _body_box(data[k])
    corners = np.array([image_layer.data_to_world((k, j, i)) for j in (lo[0] - 0.5, hi[0] + 0.5)
                        for i in (lo[1] - 0.5, hi[1] + 0.5)])
    viewer.screenshot(canvas_only=False, flash=False)  # lays the hidden window out: the canvas's real size
    camera = viewer.scene.camera
    camera.center = tuple(corners.mean(axis=0)[1:])
    h, w = viewer.canvas.size  # pixels, height x width
    camera.zoom = 0.92 * min(h / np.ptp(corners[:, 1]), w / np.ptp(corners[:, 2]))
    QApplication.processEvents()
    viewer.layers.selection.active = image_layer  # its controls: the window (contrast limits), colormap
    widget._say("lasso (parotid) + click (mandible) applied; objects: " + ", ".join(seg.session.objects.values()))
    img = viewer.screenshot(canvas_only=False, flash=False)
    from PIL import Image

    Image.fromarray(img).save(out)
    print(f"wrote {out} ({img.shape[1]}x{img.shape[0]}); slice k={k} (slider {viewer.dims.current_step[0]} of "
          f"{viewer.dims.nsteps[0]}); objects {seg.session.objects}; "
          f"voxels {[int((seg.layers['result'].data == o).sum()) for o in seg.session.objects]}")
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
