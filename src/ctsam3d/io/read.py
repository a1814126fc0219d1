"""Reading CT volumes and label maps (NIfTI, NRRD, MHA/MHD, DICOM series), validated.

Every reader returns a 3D SimpleITK image (world in LPS mm, index ``(i, j, k)``) or raises
:class:`~ctsam3d.errors.InputError` / :class:`~ctsam3d.errors.GeometryError` with one line
naming the file and the problem. Headers are checked before voxels are read, so a bad or
huge file is refused before memory is allocated.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import GeometryError, InputError
from . import dicom
from .memory import file_kind
from .validate import Header, check_finite, check_header, check_nifti_file, check_nifti_header

log = logging.getLogger(__name__)

#: File endings read by :func:`read_volume` (besides DICOM folders and files).
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")

#: Tolerances for "same grid": spacing (relative), origin (fraction of the smallest spacing),
#: direction (absolute, per matrix element).
SPACING_RTOL = 1e-4
ORIGIN_VOXEL_TOL = 1e-2
DIRECTION_ATOL = 1e-3


def _itk_reason(exc: Exception) -> str:
    """The most telling line of an ITK exception, shortened to one line."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    for ln in reversed(lines):
        ln = re.sub(r"^(sitk::ERROR|ITK ERROR|\[nrrd\])\s*:?\s*", "", ln)
        if ln and not ln.startswith(("Exception thrown", "/")):
            return ln[:200]
    return lines[-1][:200] if lines else type(exc).__name__


_ITK_QUIET_LOCK = threading.Lock()
_itk_quiet_depth = 0
_itk_saved_display = True


@contextlib.contextmanager
def quiet_itk():
    """Switch ITK's global warning display off while reading (restored afterwards).

    ITK prints its warnings straight to stderr, several lines each with the paths of its build
    tree; our checks say what matters in one line. Nested and concurrent uses (server threads)
    share one switch. With debug logging on (``--verbose``) the warnings stay visible.
    """
    global _itk_quiet_depth, _itk_saved_display
    if logging.getLogger("ctsam3d").isEnabledFor(logging.DEBUG):
        yield
        return
    with _ITK_QUIET_LOCK:
        if _itk_quiet_depth == 0:
            _itk_saved_display = sitk.ProcessObject.GetGlobalWarningDisplay()
            sitk.ProcessObject.SetGlobalWarningDisplay(False)
        _itk_quiet_depth += 1
    try:
        yield
    finally:
        with _ITK_QUIET_LOCK:
            _itk_quiet_depth -= 1
            if _itk_quiet_depth == 0:
                sitk.ProcessObject.SetGlobalWarningDisplay(_itk_saved_display)


def _header_from_reader(r) -> Header:
    return Header(
        tuple(int(s) for s in r.GetSize()),
        tuple(float(s) for s in r.GetSpacing()),
        tuple(float(s) for s in r.GetOrigin()),
        tuple(float(s) for s in r.GetDirection()),
        int(r.GetNumberOfComponents()),
        sitk.GetPixelIDValueAsString(r.GetPixelID()),
    )


def read_header(path: str | Path) -> Header:
    """Header of a volume file or DICOM series folder, without reading voxels (not validated)."""
    p = Path(path)
    with quiet_itk():
        if p.is_dir():
            series = dicom.choose_series(p, str(p), announce=False)
            r, size = dicom.series_header(series)
            h = _header_from_reader(r)
            return Header(size, h.spacing, h.origin, h.direction, h.components, h.pixel_type)
        r = sitk.ImageFileReader()
        r.SetFileName(str(p))
        r.ReadImageInformation()
        return _header_from_reader(r)


def _squeeze_4d(img: sitk.Image) -> sitk.Image:
    if img.GetDimension() == 4 and img.GetSize()[3] == 1:
        size = list(img.GetSize())
        return sitk.Extract(img, size[:3] + [0], [0, 0, 0, 0], sitk.ExtractImageFilter.DIRECTIONCOLLAPSETOSUBMATRIX)
    return img


def read_volume(
    path: str | Path,
    *,
    what: str = "image",
    max_voxels: int | None = None,
    max_memory: int | str | None = None,
    within: str | Path | None = None,
) -> sitk.Image:
    """Read and validate a 3D volume: a file (NIfTI, NRRD, MHA/MHD, DICOM) or a DICOM folder.

    For a folder, the image series with the most slices is read (sorted by position) and the
    choice is logged; a single DICOM file reads the whole series it belongs to. Images read
    from DICOM carry metadata ``ctsam3d:dicom_dir`` / ``ctsam3d:series_uid`` so that
    :func:`~ctsam3d.io.write_mask` can write a DICOM-SEG referencing them.

    Args:
        path: file or folder.
        what: word used in messages (``"image"``, ``"label map"``...).
        max_voxels: refuse volumes with more voxels (default: ``$CTSAM3D_MAX_VOXELS`` or 1.5e9);
            checked on the header, before any voxel memory is allocated.
        max_memory: refuse volumes whose reading and processing would take more memory (bytes
            or a size such as ``"6G"``; default ``$CTSAM3D_MAX_MEMORY``, else 80 % of the memory
            available now; see :mod:`ctsam3d.io.memory`); estimated from the header.
        within: if given, every file read (each DICOM slice, after following symlinks) must lie
            inside this folder, e.g. a server's data folder; a link out of it is refused.

    Returns:
        The 3D image (pixel type as stored; index ``(i, j, k)``, world LPS mm).

    Raises:
        InputError: missing/unreadable/truncated file, not 3D, multi-channel, NaN voxels,
            too large (voxels or memory), empty folder, folder without DICOM, a file outside
            ``within``.
        GeometryError: zero/negative/NaN spacing, non-orthonormal direction.
    """
    with quiet_itk():
        return _read_volume(Path(path), str(path), what, max_voxels, max_memory, within)


def _check_within(files, root: Path, name: str) -> None:
    base = root.resolve()
    for f in files:
        if not Path(f).resolve().is_relative_to(base):
            shown = Path(f).name
            raise InputError(f"{name}: {shown} links to a file outside {root.name or root}; refusing to follow it")


def _read_volume(p: Path, name: str, what: str, max_voxels, max_memory, within) -> sitk.Image:
    if not p.exists():
        if p.is_symlink():
            raise InputError(f"{name}: is a broken link; its target does not exist ({what})")
        raise InputError(f"{name}: no such file or folder ({what})")
    if p.is_file() and p.stat().st_size == 0:
        raise InputError(f"{name}: is an empty file ({what})")
    series = None
    if p.is_dir():
        series = dicom.choose_series(p, name)
        folder = p
    elif dicom.is_dicom_file(p):
        try:
            series = dicom.series_of_file(p)
        except RuntimeError as exc:
            raise InputError(f"{name}: cannot read DICOM file ({_itk_reason(exc)})") from None
        if series.modality in dicom.NON_IMAGE_MODALITIES:
            raise InputError(f"{name}: is a DICOM {series.modality} object, not an image volume")
        folder = p.parent
        if len(series.files) > 1:
            log.info("%s: reading the whole %s", name, series.label())
    if within is not None:
        _check_within(series.files if series is not None else [p], Path(within), name)
    try:
        if series is not None:
            dicom.check_pixel_spacing(series, name)
            r, size = dicom.series_header(series)
            h = _header_from_reader(r)
            h = Header(size, h.spacing, h.origin, h.direction, h.components, h.pixel_type)
        else:
            lower = name.lower()
            if not lower.endswith(VOLUME_SUFFIXES):
                log.debug("%s: unknown file ending; letting SimpleITK guess the format", name)
            check_nifti_header(p, name)  # before ITK, which turns a zero / NaN spacing into 1 mm
            r = sitk.ImageFileReader()
            r.SetFileName(name)
            r.ReadImageInformation()
            h = _header_from_reader(r)
    except RuntimeError as exc:
        raise InputError(f"{name}: cannot read {what} ({_itk_reason(exc)})") from None
    check_header(h, name, limit=max_voxels, max_memory=max_memory,
                 kind="other" if series is not None else file_kind(name))
    if series is None:
        check_nifti_file(p, name)
    try:
        img = dicom.read_series(series, folder) if series is not None else r.Execute()
    except RuntimeError as exc:
        raise InputError(f"{name}: cannot read {what}; file is truncated or corrupt ({_itk_reason(exc)})") from None
    img = _squeeze_4d(img)
    if img.GetDimension() != 3:  # header and data disagree (should not happen)
        raise InputError(f"{name}: is a {img.GetDimension()}D image; a 3D volume is needed")
    check_finite(sitk.GetArrayViewFromImage(img), name)
    return img


# --------------------------------------------------------------------------- labels
def _smallest_uint(max_value: int) -> int:
    if max_value < 256:
        return sitk.sitkUInt8
    if max_value < 65536:
        return sitk.sitkUInt16
    return sitk.sitkUInt32


def as_label_image(img: sitk.Image, name: str) -> sitk.Image:
    """Cast a label image to the smallest unsigned integer type holding its ids.

    Raises:
        InputError: negative or non-integer values.
    """
    arr = sitk.GetArrayViewFromImage(img)
    if arr.size == 0:
        return img
    lo, hi = arr.min(), arr.max()
    if lo < 0:
        raise InputError(f"{name}: label map has negative values (min {lo}); labels must be ids >= 0")
    if np.issubdtype(arr.dtype, np.floating):
        for z in range(0, arr.shape[0], 16):
            if not np.array_equal(arr[z : z + 16], np.round(arr[z : z + 16])):
                raise InputError(f"{name}: label map has non-integer values; is it an image, not labels?")
    ptype = _smallest_uint(int(hi))
    if img.GetPixelID() == ptype:
        return img
    out = sitk.Cast(img, ptype)
    for k in img.GetMetaDataKeys():
        if k.startswith("ctsam3d:"):
            out.SetMetaData(k, img.GetMetaData(k))
    return out


def same_grid(a: sitk.Image, b: sitk.Image) -> bool:
    """True if ``a`` and ``b`` have the same size, spacing, origin and direction (within tolerance)."""
    if a.GetSize() != b.GetSize():
        return False
    sa, sb = np.asarray(a.GetSpacing()), np.asarray(b.GetSpacing())
    if not np.allclose(sa, sb, rtol=SPACING_RTOL, atol=0):
        return False
    if np.max(np.abs(np.subtract(a.GetOrigin(), b.GetOrigin()))) > ORIGIN_VOXEL_TOL * sb.min():
        return False
    return bool(np.allclose(a.GetDirection(), b.GetDirection(), rtol=0, atol=DIRECTION_ATOL))


def same_voxel_centres(label: sitk.Image, reference: sitk.Image) -> bool:
    """True if ``label``'s voxel centres are exactly ``reference``'s, stored in another axis order.

    E.g. the same physical grid written with a flipped or permuted axis (RAS vs LPS storage).
    """
    if sorted(label.GetSize()) != sorted(reference.GetSize()):
        return False
    size = np.asarray(reference.GetSize(), dtype=np.float64) - 1
    corners = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], dtype=np.float64) * size
    from ..geometry.coords import index_to_lps, lps_to_index

    idx = lps_to_index(label, index_to_lps(reference, corners))
    if np.max(np.abs(idx - np.rint(idx))) > ORIGIN_VOXEL_TOL:
        return False
    lo, hi = np.rint(idx).min(axis=0), np.rint(idx).max(axis=0)
    if np.any(lo != 0) or np.any(hi != np.asarray(label.GetSize()) - 1):
        return False
    # Axis steps must map onto unit steps of the label grid (no stretch).
    steps = lps_to_index(label, index_to_lps(reference, np.eye(3))) - lps_to_index(label, index_to_lps(reference, np.zeros(3)))
    return bool(np.allclose(np.sort(np.abs(steps), axis=1), [[0, 0, 1]] * 3, atol=ORIGIN_VOXEL_TOL))


def read_label(
    path: str | Path,
    *,
    reference: sitk.Image | None = None,
    max_voxels: int | None = None,
    max_memory: int | str | None = None,
    within: str | Path | None = None,
) -> sitk.Image:
    """Read an integer label map (ids >= 0), optionally checked against the CT it belongs to.

    Args:
        path: a volume file (NIfTI, NRRD, MHA, ...), a DICOM-SEG file, or a DICOM folder.
        reference: the CT. Its grid must equal the label map's (size, spacing, origin,
            direction within tolerance); the label map then gets the reference's exact
            geometry. A label map holding the very same voxel centres in another axis order
            (e.g. stored RAS while the CT is LPS) is reordered onto the reference grid.

    Returns:
        A 3D label image of the smallest unsigned integer pixel type holding its ids.

    Raises:
        InputError: as :func:`read_volume`, or negative / non-integer values.
        GeometryError: the grid differs from ``reference``'s.
    """
    name = str(path)
    p = Path(path)
    if p.is_file() and dicom.is_dicom_file(p) and dicom.modality_of(p) == "SEG":
        from .dicom_seg import read_dicom_seg

        if within is not None:
            _check_within([p], Path(within), name)
        img, _names = read_dicom_seg(p, reference=reference, max_memory=max_memory)
    else:
        img = read_volume(path, what="label map", max_voxels=max_voxels, max_memory=max_memory, within=within)
    img = as_label_image(img, name)
    if reference is None:
        return img
    if same_grid(img, reference):
        img.CopyInformation(reference)
        return img
    if same_voxel_centres(img, reference):
        log.info("%s: same voxel grid as the image, stored in another axis order; reordered", name)
        out = sitk.Resample(img, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, img.GetPixelID())
        return out
    raise GeometryError(
        f"{name}: label map grid differs from the image's "
        f"(size {img.GetSize()} vs {reference.GetSize()}, spacing {_r(img.GetSpacing())} vs {_r(reference.GetSpacing())}, "
        f"origin {_r(img.GetOrigin())} vs {_r(reference.GetOrigin())}, "
        f"direction {_r(img.GetDirection())} vs {_r(reference.GetDirection())})"
    )


def _r(v) -> tuple:
    return tuple(round(float(x), 3) for x in v)
