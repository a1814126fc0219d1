"""Reading and writing CT volumes, masks, label maps, DICOM series and DICOM-SEG.

Images are SimpleITK images: world LPS mm, index ``(i, j, k)``; arrays from them are
``[z, y, x]``. All problems with user files raise :mod:`ctsam3d.errors` exceptions with one
line naming the file and the problem.
"""

from .read import read_header, read_label, read_volume, same_grid
from .validate import DEFAULT_MAX_VOXELS, MAX_VOXELS_ENV, Header
from .write import read_sidecar, sidecar_path, write_label_map, write_mask

__all__ = [
    "DEFAULT_MAX_VOXELS",
    "MAX_VOXELS_ENV",
    "Header",
    "read_header",
    "read_label",
    "read_sidecar",
    "read_volume",
    "same_grid",
    "sidecar_path",
    "write_label_map",
    "write_mask",
]
