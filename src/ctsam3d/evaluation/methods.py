"""The interface every evaluated method implements, and the adapter for the model.

A method sees what a user's tool sees: the CT as a SimpleITK image (any orientation)
and clicks as ITK indices ``(i, j, k)`` of that image (i fastest, the file's x axis),
exactly as 3D Slicer / MONAI Label send them. It answers with a uint8 0/1 numpy mask
``(z, y, x)`` (= ``sitk.GetArrayFromImage`` order) on the same grid.

Lifecycle per case: ``start(image)`` once, then for each structure ``reset()`` followed by
clicks 1..K (each click adds to the previous ones).
"""

from __future__ import annotations

import abc

import numpy as np
import SimpleITK as sitk

__all__ = ["InteractiveMethod", "SessionMethod"]


class InteractiveMethod(abc.ABC):
    """A click-driven 3D segmentation method.

    Attributes:
        name: short name used in reports and plots.
    """

    name: str = "method"

    @abc.abstractmethod
    def start(self, image: sitk.Image) -> None:
        """Take a new image (HU CT, any orientation); forget all clicks."""

    @abc.abstractmethod
    def reset(self) -> None:
        """Forget the clicks of the current structure; keep the image (and any cache)."""

    @abc.abstractmethod
    def click(self, index_ijk: tuple[int, int, int], positive: bool) -> np.ndarray:
        """Add one click at ITK index ``(i, j, k)`` and return the whole current mask,
        uint8 0/1 ``(z, y, x)`` on the image grid."""

    #: whether :meth:`prompt` takes 2D boxes, lassos and scribbles (``--first-prompt``)
    supports_shapes: bool = False

    def prompt(self, shape) -> np.ndarray:
        """Add a simulated 2D box / lasso / scribble (:class:`ctsam3d.clicks.shapes.ShapePrompt`,
        points ``(z, y, x)`` of the mask array) and return the whole current mask as :meth:`click`."""
        raise NotImplementedError(f"{self.name}: takes clicks only")

    def close(self) -> None:
        """Release resources (optional)."""

    def describe(self) -> dict:
        """Settings written into the report (class name plus public scalar attributes)."""
        out = {"class": type(self).__name__}
        out.update({k: v for k, v in vars(self).items()
                    if not k.startswith("_") and isinstance(v, (int, float, str, bool)) and k != "name"})
        return out


class SessionMethod(InteractiveMethod):
    """The CT-SAM3D model through :class:`ctsam3d.Session` (the same code users run).

    Args:
        model: a loaded model (``ctsam3d.load_model(...)``).
        expansion: cross-patch expansion on (the default product behaviour) or off.
        name: report name; default ``"model"`` / ``"model-noexp"``.
        source: where the model came from (path or preset), for the report.
        session_kwargs: passed to ``Session`` (e.g. an expansion budget).
    """

    def __init__(self, model, *, expansion: bool = True, name: str | None = None, source: str | None = None,
                 **session_kwargs):
        from ..inference.session import Session  # lazy: torch only when a model is evaluated

        self._session = Session(model, expansion=expansion, **session_kwargs)
        self._model = model
        self.source = source or ""
        self.session_options = ", ".join(f"{k}={v}" for k, v in sorted(session_kwargs.items()))
        self.expansion = expansion
        self.refine = self._session.refinement.enabled  # intensity-guided boundary refinement (report)
        self.mirror = self._session.mirror  # left-right mirror averaging of each decode (report)
        self.name = name or ("model" if expansion else "model-noexp")
        self._shape: tuple[int, int, int] | None = None

    def describe(self) -> dict:
        out = super().describe()
        cfg = getattr(self._model, "config", None)
        if cfg is not None:
            out["preset"] = getattr(cfg, "preset", None)
        return out

    def start(self, image: sitk.Image) -> None:
        self._session.set_image(image)
        size = image.GetSize()
        self._shape = (size[2], size[1], size[0])

    def reset(self) -> None:
        self._session.reset()

    supports_shapes = True

    def prompt(self, shape) -> np.ndarray:
        pts = [tuple(float(v) for v in p[::-1]) for p in shape.points]  # (z, y, x) -> ITK (i, j, k)
        axis = None if shape.axis is None else 2 - int(shape.axis)
        if shape.kind == "box2d":
            self._session.add_box2d(pts[0], pts[1], positive=shape.positive, axis=axis)
        elif shape.kind == "lasso":
            self._session.add_lasso(pts, positive=shape.positive, axis=axis)
        else:
            self._session.add_scribble(pts, positive=shape.positive)
        return self._mask()

    def click(self, index_ijk, positive: bool) -> np.ndarray:
        self._session.add_click(tuple(int(v) for v in index_ijk), positive=bool(positive))
        return self._mask()

    def _mask(self) -> np.ndarray:
        mask = sitk.GetArrayFromImage(self._session.result())
        if mask.shape != self._shape:
            raise RuntimeError(f"{self.name}: Session.result() has shape {mask.shape}, image is {self._shape}")
        return (mask != 0).astype(np.uint8)
