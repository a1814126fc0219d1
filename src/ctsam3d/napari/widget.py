"""The dock widget: pick the CT layer, start, apply prompts, new object, undo, export."""

from __future__ import annotations

from qtpy.QtWidgets import QComboBox, QFileDialog, QLabel, QLineEdit, QPushButton, QVBoxLayout, QWidget

from .controller import NapariSegmenter


class SegmentWidget(QWidget):
    """CT-SAM3D in napari. Draw in the ``ctsam3d`` layers, then *Apply* (or press ``A``)."""

    def __init__(self, napari_viewer, model=None):
        super().__init__()
        self.viewer = napari_viewer
        self._model = model
        self.seg: NapariSegmenter | None = None
        self.layer_box = QComboBox()
        self.name = QLineEdit()
        self.name.setPlaceholderText("object name (optional)")
        self.status = QLabel("choose the CT layer and press Start")
        buttons = [("Start", self.start), ("Apply prompts", self.apply), ("New object", self.new_object),
                   ("Undo", self.undo), ("Export labels…", self.export)]
        lay = QVBoxLayout(self)
        lay.addWidget(self.layer_box)
        for text, fn in buttons:
            b = QPushButton(text)
            b.clicked.connect(fn)
            lay.addWidget(b)
            if text == "Apply prompts":
                lay.addWidget(self.name)
        lay.addWidget(self.status)
        self._fill_layers()
        napari_viewer.layers.events.inserted.connect(self._fill_layers)
        napari_viewer.bind_key("a", lambda _v: self.apply(), overwrite=True)

    def _fill_layers(self, *_):
        from napari.layers import Image

        self.layer_box.clear()
        for layer in self.viewer.layers:
            if isinstance(layer, Image) and layer.data.ndim == 3:
                self.layer_box.addItem(layer.name)

    def _say(self, text: str) -> None:
        self.status.setText(text)

    def start(self):
        name = self.layer_box.currentText()
        if not name:
            self._say("no 3D image layer")
            return
        self.seg = NapariSegmenter(self.viewer, self.viewer.layers[name], model=self._model)
        self._say("draw points / shapes in the ctsam3d layers, then Apply (A)")

    def _run(self, fn):
        from ..errors import CtSam3dError

        if self.seg is None:
            self._say("press Start first")
            return None
        try:
            return fn()
        except CtSam3dError as exc:
            self._say(str(exc))
            return None

    def apply(self):
        n = self._run(lambda: self.seg.apply())
        if n is not None:
            self._say(f"{n} prompt(s) applied; objects: {self.seg.session.objects}")

    def new_object(self):
        oid = self._run(lambda: self.seg.new_object(self.name.text() or None))
        if oid is not None:
            self._say(f"object {oid} started")

    def undo(self):
        ok = self._run(lambda: self.seg.undo())
        if ok is not None:
            self._say("undone" if ok else "nothing to undo")

    def export(self, path=None):
        if self.seg is None:
            self._say("press Start first")
            return None
        if not path:
            path, _ = QFileDialog.getSaveFileName(self, "Export labels", "labels.nii.gz")
            if not path:
                return None
        out = self._run(lambda: self.seg.export(path, True))
        if out is not None:
            self._say(f"wrote {out}")
        return out
