"""``python -m ctsam3d.napari.screenshot OUT.png``: the plugin on the bundled example CT.

Opens the bundled OpenKBP case with the plugin's reader, docks the widget, draws a lasso
around the left parotid on its largest axial slice (from the ground-truth contour, as
:mod:`ctsam3d.clicks.shapes` simulates one) and a positive click in the mandible as a
second object, applies them with the default model and saves a screenshot of the window.
Needs a display with OpenGL (on a headless machine: ``xvfb-run -a python -m ...``).
"""

from __future__ import annotations

import sys

import numpy as np
import SimpleITK as sitk


def main(argv=None) -> int:
    import napari

    from ..clicks.shapes import simulate_lasso
    from ..examples import example_case
    from .reader import read_ct
    from .widget import SegmentWidget

    out = (argv or sys.argv[1:] or ["napari.png"])[0]
    case = example_case()
    viewer = napari.Viewer(show=False)
    (data, meta, _), = read_ct(str(case.ct))
    image_layer = viewer.add_image(data, **meta)
    ct = meta["metadata"]["ctsam3d_image"]
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(case.labels)))
    names = {v: k for k, v in case.names.items()}
    widget = SegmentWidget(viewer)
    viewer.window.add_dock_widget(widget, name="CT-SAM3D", area="right")
    widget.start()
    seg = widget.seg

    def world(zyx):  # array index (k, j, i) -> napari world (LPS reversed)
        return np.asarray(ct.TransformContinuousIndexToPhysicalPoint(tuple(float(v) for v in zyx[::-1])))[::-1]

    lasso = simulate_lasso(labels == names["parotid_left"], rng=np.random.default_rng(0), perturb=0.05, max_vertices=24)
    viewer.dims.set_point(0, world(lasso.points[0])[0])
    z = viewer.dims.point[0]  # the slider's position: where a user drawing on this slice draws
    poly = np.array([world(p) for p in lasso.points])
    poly[:, 0] = z
    seg.layers["shapes_pos"].add([poly], shape_type="polygon")
    seg.apply()
    seg.new_object("mandible")
    m = np.argwhere(labels == names["mandible"])
    at = m[np.argmin(((m - m.mean(axis=0)) ** 2).sum(axis=1))]
    seg.layers["pos"].add([world(at)])
    seg.apply()
    from qtpy.QtWidgets import QApplication

    viewer.window._qt_window.resize(1500, 900)
    QApplication.processEvents()
    viewer.dims.set_point(0, z)
    corners = np.array([world(np.array(c, float) * (np.array(data.shape) - 1)) for c in np.ndindex(2, 2, 2)])
    viewer.camera.center = tuple(corners.mean(axis=0))
    viewer.camera.zoom = 0.9 * min(560 / np.ptp(corners[:, 1]), 560 / np.ptp(corners[:, 2]))
    QApplication.processEvents()
    viewer.layers.selection.active = seg.layers["shapes_pos"]
    widget._say("lasso (parotid) + click (mandible) applied; objects: " + ", ".join(seg.session.objects.values()))
    img = viewer.screenshot(canvas_only=False, flash=False)
    from PIL import Image

    Image.fromarray(img).save(out)
    print(f"wrote {out} ({img.shape[1]}x{img.shape[0]}); objects {seg.session.objects}; "
          f"voxels {[int((seg.layers['result'].data == k).sum()) for k in seg.session.objects]}")
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
