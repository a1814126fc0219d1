"""The bundled example CT (OpenKBP validation patient 201, MIT licence; see README.md here).

``example_case()`` returns the paths of the CT and its label map and the label names. The CT
is stored with axes P, L, I (not RAS): a useful check that masks line up in every viewer.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..anatomy import get_catalogue

__all__ = ["ExampleCase", "example_case"]

#: Label ids of the example's organ-at-risk map: the OpenKBP catalogue of :mod:`ctsam3d.anatomy`.
LABELS: dict[int, str] = dict(get_catalogue("openkbp").labels)


@dataclass(frozen=True)
class ExampleCase:
    """Paths of the bundled example: ``ct`` (HU) and ``labels`` (ids of :data:`LABELS`)."""

    name: str
    ct: Path
    labels: Path
    names: dict[int, str]


def example_case() -> ExampleCase:
    """The bundled head-and-neck CT (128³, 5.4 × 5.4 × 3 mm, axes P, L, I) and its organ labels."""
    root = Path(str(resources.files(__package__)))
    return ExampleCase(
        "openkbp_pt_201",
        root / "openkbp_pt_201_ct.nii.gz",
        root / "openkbp_pt_201_oars.nii.gz",
        dict(LABELS),
    )
