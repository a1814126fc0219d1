"""Interactive inference: :class:`Session` (clicks -> 3D mask on the input grid) and
cross-patch expansion (:class:`ExpansionConfig`). See :mod:`ctsam3d.inference.session`."""

from .expansion import ExpansionConfig
from .prediction import Prediction
from .session import Session

__all__ = ["ExpansionConfig", "Prediction", "Session"]
