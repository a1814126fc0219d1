"""The bundled example CT (OpenKBP validation patient 201, MIT licence; see README.md here).

``example_case()`` returns the paths of the CT and its label map and the label names. The CT
is stored with axes P, L, I (not RAS): a useful check that masks line up in every viewer.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

__all__ = ["ExampleCase", "example_case"]

#: Label ids of the example's organ-at-risk map.
LABELS: dict[int, str] = {
    1: "brainstem",
    2: "spinal_cord",
    3: "parotid_right",
    4: "parotid_left",
    5: "esophagus",
    6: "larynx",
    7: "mandible",
}


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
