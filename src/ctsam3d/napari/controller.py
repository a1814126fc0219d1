"""The session behind the napari layers: new points and shapes in, a Labels layer out.

:class:`NapariSegmenter` adds five layers next to a CT Image layer:

* ``ctsam3d +`` / ``ctsam3d -`` (Points): positive / negative clicks;
* ``ctsam3d shapes +`` / ``ctsam3d shapes -`` (Shapes): a rectangle is a 2D box, a polygon or
  an ellipse a lasso, a path or a line a scribble (drawn on a slice; a path may also be 3D);
* ``ctsam3d result`` (Labels): :meth:`Session.label_map`, value = object id.

All five carry the CT's transform (:func:`~.geometry.layer_transform`: scale, translation and
direction), as the Image layer opened by the reader does. The prompt layers' data are therefore
continuous voxel indices ``(k, j, i)`` of the CT (what napari stores when one draws, via
``layer.world_to_data``), and they share the image's world extent and step: napari's dims
slider steps through the CT's slices, and a point or shape drawn lands on the slice shown (an
empty layer without that transform has a step of 1 world unit, so the slider would step through
every millimetre instead).

:meth:`apply` sends the items added since the last call to the session (points layers first,
then shapes, each in the order drawn), :meth:`undo` undoes the last one (and removes it from
its layer), :meth:`new_object` starts another object, :meth:`export` writes the label map on
the CT's grid. Coordinates: see :mod:`ctsam3d.napari`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .geometry import image_from_layer_data, index_to_lps, layer_transform

__all__ = ["NapariSegmenter", "LAYER_NAMES"]

LAYER_NAMES = {"pos": "ctsam3d +", "neg": "ctsam3d -", "shapes_pos": "ctsam3d shapes +",
               "shapes_neg": "ctsam3d shapes -", "result": "ctsam3d result"}


def _ellipse_polygon(vertices: np.ndarray, n: int = 32) -> np.ndarray:
    """napari's ellipse (4 corners of its bounding box) -> ``n`` points on it (same space)."""
    c = vertices.mean(axis=0)
    a = (vertices[1] - vertices[0]) / 2.0
    b = (vertices[3] - vertices[0]) / 2.0
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return c + np.cos(t)[:, None] * a + np.sin(t)[:, None] * b


class NapariSegmenter:
    """A :class:`ctsam3d.Session` driven by napari layers.

    Args:
        viewer: the napari viewer.
        image_layer: the CT layer (opened by the ctsam3d reader, or any 3D Image layer with
            axis-aligned scale/translate in mm).
        model: a loaded model (default: ``ctsam3d.load_model()``); ``session``: or a ready
            Session (its image is set here).
    """

    def __init__(self, viewer, image_layer, model=None, session=None, expansion: bool = True):
        from ..inference.session import Session

        self.viewer = viewer
        self.image_layer = image_layer
        image = image_layer.metadata.get("ctsam3d_image")
        if image is None:
            image = image_from_layer_data(image_layer.data, image_layer.scale, image_layer.translate)
        self.image: sitk.Image = image
        if session is None:
            if model is None:
                from .. import load_model

                model = load_model()
            session = Session(model, expansion=expansion)
        self.session = session
        self.session.set_image(image)
        self.layers = self._make_layers()
        self._applied = {k: 0 for k in ("pos", "neg", "shapes_pos", "shapes_neg")}
        self._history: list[tuple[int, str, int]] = []  # (object id, layer key, item index)

    # ------------------------------------------------------------------ layers
    def _make_layers(self) -> dict:
        v = self.viewer
        ndim = 3
        tf = layer_transform(self.image)  # every layer on the CT's grid (see the module doc)
        # sizes are in data units (voxels): a 4 mm point (napari scales a point by the last axis's
        # scale) and 2 mm shape edges, as wide as they were in a millimetre world
        point = 4.0 / abs(tf["scale"][-1])
        edge = 2.0 / float(np.mean(np.abs(tf["scale"][-2:])))
        layers = {
            "pos": v.add_points(np.zeros((0, ndim)), name=LAYER_NAMES["pos"], face_color="lime", size=point, **tf),
            "neg": v.add_points(np.zeros((0, ndim)), name=LAYER_NAMES["neg"], face_color="red", size=point, **tf),
            "shapes_pos": v.add_shapes(None, ndim=ndim, name=LAYER_NAMES["shapes_pos"], edge_color="lime",
                                       face_color="transparent", edge_width=edge, **tf),
            "shapes_neg": v.add_shapes(None, ndim=ndim, name=LAYER_NAMES["shapes_neg"], edge_color="red",
                                       face_color="transparent", edge_width=edge, **tf),
        }
        size = self.image.GetSize()
        layers["result"] = v.add_labels(np.zeros((size[2], size[1], size[0]), np.uint16), name=LAYER_NAMES["result"],
                                        opacity=0.5, **tf)
        return layers

    def _refresh(self) -> None:
        self.layers["result"].data = sitk.GetArrayFromImage(self.session.label_map()).astype(np.uint16)

    # ------------------------------------------------------------------ prompts
    def _lps(self, data) -> np.ndarray:
        """A prompt layer's data (continuous voxel indices ``(N, 3)`` ``(k, j, i)``) -> LPS mm."""
        return index_to_lps(self.image, data)

    def _send(self, key: str, item) -> None:
        """One layer item (voxel indices ``(k, j, i)``) to the session, in LPS world mm."""
        s = self.session
        lps = self._lps
        if key in ("pos", "neg"):
            s.add_click(tuple(lps(item)[0]), positive=key == "pos", space="world")
            return
        data, kind = item
        positive = key == "shapes_pos"
        pts = lps(data)
        if kind == "rectangle":
            s.add_box2d(tuple(pts[0]), tuple(pts[2]), positive=positive, space="world")
        elif kind in ("polygon", "ellipse"):
            poly = lps(_ellipse_polygon(np.asarray(data, float))) if kind == "ellipse" else pts
            s.add_lasso([tuple(p) for p in poly], positive=positive, space="world")
        else:  # path, line
            s.add_scribble([tuple(p) for p in pts], positive=positive, space="world")

    def _items(self, key: str) -> list:
        layer = self.layers[key]
        if key in ("pos", "neg"):
            return list(np.asarray(layer.data))
        return list(zip(layer.data, layer.shape_type))

    def apply(self) -> int:
        """Send every point or shape added since the last call; returns how many were sent.

        A prompt the session refuses (:class:`~ctsam3d.errors.ClickError`) is removed from its
        layer and the error re-raised; the ones before it stay applied.
        """
        sent = 0
        for key in ("pos", "neg", "shapes_pos", "shapes_neg"):
            items = self._items(key)
            while self._applied[key] < len(items):
                n = self._applied[key]
                try:
                    self._send(key, items[n])
                except Exception:
                    self._remove_item(key, n)
                    self._refresh()
                    raise
                self._applied[key] += 1
                self._history.append((self.session.current_object, key, n))
                sent += 1
        if sent:
            self._refresh()
        return sent

    def _remove_item(self, key: str, n: int) -> None:
        layer = self.layers[key]
        if key in ("pos", "neg"):
            layer.data = np.delete(np.asarray(layer.data), n, axis=0)
        else:
            layer.selected_data = {n}
            layer.remove_selected()

    def undo(self) -> bool:
        """Undo the current object's last prompt and remove it from its layer; False if none."""
        oid = self.session.current_object
        mine = [h for h in self._history if h[0] == oid]
        if not mine or self.session.undo() is None:
            return False
        entry = mine[-1]
        self._history.remove(entry)
        _, key, n = entry
        self._remove_item(key, n)
        self._applied[key] -= 1
        self._history = [(o, k, i - 1 if (k == key and i > n) else i) for o, k, i in self._history]
        self._refresh()
        return True

    def new_object(self, name: str | None = None) -> int:
        """Apply pending prompts, then start a new object (label); returns its id."""
        self.apply()
        return self.session.new_object(name)

    def export(self, path, overwrite: bool = False) -> Path:
        """Write all objects as one label map on the CT's grid (``.nii.gz``, ``.nrrd``, ``.mha``)."""
        from ..io import write_label_map

        self.apply()
        return write_label_map(self.session.label_map(), path, source=self.image, overwrite=overwrite,
                               names=self.session.objects)
