"""ctsam3d.evaluation: simulated-click protocol, metrics, baselines and reports.

Public API::

    from ctsam3d.evaluation import evaluate, RandomWalkerMethod, RegionGrowingMethod, SessionMethod
    report = evaluate("../shared/data/openkbp/validation", "pairs",
                      [RandomWalkerMethod(), RegionGrowingMethod()], clicks=10, out_dir="out")

Metrics: :func:`dice`, :func:`nsd`, :func:`noc`. Methods implement :class:`InteractiveMethod`.
The protocol is described in :mod:`ctsam3d.evaluation.protocol` and written into each report.
"""

from .baselines import RandomWalkerMethod, RegionGrowingMethod
from .datasets import FORMATS, Case, open_cases
from .methods import InteractiveMethod, SessionMethod
from .metrics import dice, noc, nsd
from .protocol import ProtocolConfig, run_structure
from .runner import evaluate

__all__ = [
    "evaluate", "InteractiveMethod", "SessionMethod", "RandomWalkerMethod", "RegionGrowingMethod",
    "dice", "nsd", "noc", "open_cases", "Case", "FORMATS", "ProtocolConfig", "run_structure",
]
