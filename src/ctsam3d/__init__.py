"""ctsam3d: promptable 3D segmentation of anatomy in CT (CT-SAM3D).

Public API (see README):

    import ctsam3d
    model = ctsam3d.load_model()
    s = ctsam3d.Session(model)
"""

from ._version import __version__
from .errors import CtSam3dError

__all__ = ["__version__", "CtSam3dError", "load_model", "Session"]


def __getattr__(name):  # lazy: keep `import ctsam3d` light (no torch until needed)
    if name == "load_model":
        from .modeling.checkpoint import load_model

        return load_model
    if name == "Session":
        from .inference.session import Session

        return Session
    raise AttributeError(name)
