"""Interactive inference: :class:`Session` (clicks -> 3D mask on the input grid) and
cross-patch expansion (:class:`ExpansionConfig`). See :mod:`ctsam3d.inference.session`.
:class:`ReferencePredictor` replays the released CT-SAM3D click path on one patch for
reference-exact models (docs/reference-fidelity.md)."""

from .expansion import ExpansionConfig
from .prediction import Prediction
from .reference_predictor import ReferencePredictor
from .session import Session

__all__ = ["ExpansionConfig", "Prediction", "ReferencePredictor", "Session"]
