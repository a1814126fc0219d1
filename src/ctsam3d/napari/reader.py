"""npe2 reader: a CT file or DICOM folder as an Image layer with its true geometry."""

from __future__ import annotations

from pathlib import Path

import SimpleITK as sitk

from .geometry import layer_transform

SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd")


def get_reader(path):
    """napari asks whether we read ``path``: a CT file of a known suffix or a folder."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(path)
    if not (p.is_dir() or p.name.lower().endswith(SUFFIXES)):
        return None
    return read_ct


def read_ct(path) -> list[tuple]:
    """``[(array [k, j, i], layer kwargs, "image")]``; the SimpleITK image rides in the metadata."""
    from ..io import read_volume

    if isinstance(path, list):
        path = path[0]
    image = read_volume(path)
    meta = {"name": Path(path).name, "colormap": "gray", "contrast_limits": (-160.0, 240.0),
            "metadata": {"ctsam3d_image": image, "ctsam3d_path": str(path)}, **layer_transform(image)}
    return [(sitk.GetArrayFromImage(image), meta, "image")]
