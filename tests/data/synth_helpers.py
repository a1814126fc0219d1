"""Tiny label-map files for the synthesize tests (written to a temporary folder)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

NAMES = {1: "liver", 2: "aorta", 3: "kidney_left"}


def write_labelmap(path: Path, *, dtype=np.uint8, sidecar: bool = True, values=None) -> Path:
    """A 20 x 90 x 96 label map (3 x 2 x 2 mm, RAS like torso_labels) with a liver, aorta and kidney."""
    import SimpleITK as sitk

    lab = np.zeros((20, 90, 96), np.float32)
    lab[3:17, 25:45, 20:45] = 1
    zz, yy, xx = np.mgrid[:20, :90, :96]
    lab[((yy - 45) ** 2 + (xx - 50) ** 2) <= 12] = 2
    lab[((zz - 10) * 1.5) ** 2 + (yy - 48) ** 2 + (xx - 64) ** 2 <= 36] = 3
    if values is not None:
        lab = lab * values
    img = sitk.GetImageFromArray(lab.astype(dtype))
    img.SetSpacing((2.0, 2.0, 3.0))
    img.SetDirection((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    img.SetOrigin((90.0, 80.0, -30.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path))
    if sidecar:
        path.with_name(path.name.replace(".nii.gz", ".json")).write_text(json.dumps({str(k): v for k, v in NAMES.items()}))
    return path
