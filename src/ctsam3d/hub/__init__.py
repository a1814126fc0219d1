"""Models on this machine: the bundled ones, the ones installed per user, and fetching the
released CT-SAM3D weights (explicitly, with ``ctsam3d download``; nothing downloads by itself).

* :mod:`.paths`: where installed models live (``$CTSAM3D_HOME``, default under the user's
  cache directory: ``~/.cache/ctsam3d/models/<name>/``).
* :mod:`.registry`: the bundled models with their metadata (one entry is the default), the
  installed ones, and which model ``load_model()`` uses when given none. Plain files and JSON,
  no torch: it sits below :mod:`ctsam3d.modeling`.
* :mod:`.modelscope`: ModelScope's plain HTTP file interface (file listing, file download).
* :mod:`.transfer`: one resumable HTTP download (Range requests into a partial file), sha256.
* :mod:`.install`: download or take a local ``params.pth``, verify, convert with
  :mod:`ctsam3d.modeling.reference_import`, and install atomically (above modeling).
"""

from .paths import home, models_dir
from .registry import RELEASED_NAME, ModelEntry, default_model, find_model, list_models

__all__ = ["RELEASED_NAME", "ModelEntry", "default_model", "find_model", "home", "list_models", "models_dir"]
