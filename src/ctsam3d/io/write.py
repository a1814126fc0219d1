"""Writing masks and label maps on the source image's exact grid, atomically.

Formats by file ending: ``.nii`` / ``.nii.gz`` (NIfTI), ``.nrrd``, ``.mha`` and ``.dcm``
(DICOM-SEG, only when the source is a DICOM series). Every write goes to a temporary file in
the output folder and is renamed into place (``os.replace``), so a failure never leaves a
partial output; the file then gets the mode a plain ``open()`` would give it (``0o666`` less
the umask; an overwritten file keeps its mode), not the temporary file's ``0o600``. An
existing output is refused (:class:`~ctsam3d.errors.OutputExistsError`) unless
``overwrite=True``. :func:`check_output` checks an output path (ending, folder writable,
DICOM source for ``.dcm``) before any computation.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import stat
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import GeometryError, InputError, OutputExistsError
from . import dicom
from .read import quiet_itk, read_header, read_volume, same_grid

log = logging.getLogger(__name__)

#: Output endings handled by SimpleITK.
ITK_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")
#: Output endings that mean DICOM-SEG.
SEG_SUFFIXES = (".dcm",)


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suf in ITK_SUFFIXES + SEG_SUFFIXES:
        if name.endswith(suf):
            return suf
    return path.suffix.lower()


def sidecar_path(path: str | Path) -> Path:
    """``<name>.json`` next to a label map ``<name>.nii.gz`` / ``.nrrd`` / ``.mha`` / ``.dcm``."""
    p = Path(path)
    suf = _suffix(p)
    stem = p.name[: -len(suf)] if suf and p.name.lower().endswith(suf) else p.stem
    return p.with_name(stem + ".json")


def _is_dicom_source(source) -> bool:
    """True if ``source`` (image, file or folder) can be the source of a DICOM-SEG."""
    if isinstance(source, sitk.Image):
        return dicom.META_DICOM_DIR in source.GetMetaDataKeys()
    p = Path(source)
    if p.is_dir():
        return True  # reading it checks that it holds a DICOM image series
    return p.is_file() and dicom.is_dicom_file(p)


#: Modalities whose image IODs make the Frame of Reference module mandatory (so a SEG must have one).
_FRAME_OF_REFERENCE_NEEDED = {"CT", "MR", "PT", "NM"}


def _first_source_file(source) -> str | None:
    if isinstance(source, sitk.Image):
        keys = source.GetMetaDataKeys()
        if dicom.META_DICOM_DIR not in keys:
            return None
        files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(
            source.GetMetaData(dicom.META_DICOM_DIR), source.GetMetaData(dicom.META_SERIES_UID))
        return files[0] if files else None
    p = Path(source)
    if p.is_dir():
        return dicom.choose_series(p, str(p), announce=False).files[0]
    return str(p)


def _dicom_seg_problem(source) -> str | None:
    """Why a DICOM-SEG cannot reference ``source`` (a DICOM image, file or folder), or None.
    Checked before any computation; an unreadable source is left to the reader to report."""
    try:
        first = _first_source_file(source)
        if first is None:
            return None
        tags = dicom.read_tags(first, ("0020|0052", "0008|0060"))
    except (RuntimeError, OSError, InputError):
        return None
    if not tags["0020|0052"] and tags["0008|0060"].upper() in _FRAME_OF_REFERENCE_NEEDED:
        return "its DICOM series has no Frame of Reference UID (0020,0052), which a DICOM-SEG must reference"
    return None


def _existing_ancestor(folder: Path) -> Path:
    while True:
        try:
            if folder.exists() or folder.is_symlink():
                return folder
        except OSError:
            return folder
        if folder.parent == folder:
            return folder
        folder = folder.parent


def check_writable(path: Path, name: str | None = None) -> None:
    """Refuse (InputError) an output whose folder cannot be created or written to.

    The nearest existing folder is probed by creating and removing a temporary file (permission
    bits, read-only file systems and full quotas all show up), so nothing is left behind.
    """
    name = name or str(path)
    folder = _existing_ancestor(path.parent if str(path.parent) else Path("."))
    if not folder.is_dir():
        raise InputError(f"{name}: cannot write here: {folder} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".ctsam3d-write-check-", dir=folder)
    except OSError as exc:
        raise InputError(f"{name}: cannot write to the folder {folder} ({exc.strerror or exc})") from None
    os.close(fd)
    os.unlink(probe)


def check_output(path: str | Path, *, overwrite: bool, source=None) -> Path:
    """Validate an output path before any work: known ending, not a folder, no existing file
    unless ``overwrite``, a folder we can write to, not the ``source`` itself, and for ``.dcm``
    (DICOM-SEG) a DICOM ``source`` (image, file or folder), when ``source`` is given."""
    p = Path(path)
    suf = _suffix(p)
    if suf not in ITK_SUFFIXES + SEG_SUFFIXES:
        raise InputError(
            f"{path}: unknown output format {suf or '(no ending)'!r}; use .nii.gz, .nii, .nrrd, .mha or .dcm (DICOM-SEG)"
        )
    if p.is_dir():
        raise InputError(f"{path}: is a folder; give an output file name")
    if source is not None and not isinstance(source, sitk.Image):
        with contextlib.suppress(OSError):
            if p.exists() and p.resolve() == Path(source).resolve():
                raise InputError(f"{path}: is the input image itself; write the mask to another file")
    if p.exists() and not overwrite:
        raise OutputExistsError(f"{path}: output exists; pass --overwrite (overwrite=True) to replace it")
    if suf in SEG_SUFFIXES and source is not None and not _is_dicom_source(source):
        shown = "the input image" if isinstance(source, sitk.Image) else str(source)
        raise InputError(
            f"{path}: DICOM-SEG output (.dcm) needs a DICOM series as input, and {shown} is not DICOM; "
            "write .nii.gz, .nrrd or .mha instead"
        )
    if suf in SEG_SUFFIXES and source is not None and (why := _dicom_seg_problem(source)):
        raise InputError(f"{path}: cannot write DICOM-SEG: {why}; write .nii.gz, .nrrd or .mha instead")
    check_writable(p, str(path))
    return p


_UMASK_LOCK = threading.Lock()


def default_file_mode() -> int:
    """The mode ``open()`` gives a new file: ``0o666`` less the process umask."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:  # no /proc: read the umask by setting it (briefly) and restoring it
        mask = os.umask(0o022)
        os.umask(mask)
    return 0o666 & ~mask


def publish(tmp: str | Path, path: Path) -> None:
    """Give ``tmp`` the mode a new ``path`` would get (or ``path``'s own, when it exists and is
    replaced), then rename it to ``path``."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        mode = default_file_mode()
    os.chmod(tmp, mode)
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_path(path: Path):
    """Yield a temporary path in ``path``'s folder; on success rename it to ``path``.

    The temporary name keeps the file ending so that writers pick the right format. On any
    error the temporary file is removed and nothing appears at ``path``. The published file
    gets the usual mode (umask honoured, see :func:`publish`).
    """
    suf = _suffix(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".part{suf}", dir=path.parent)
    except OSError as exc:
        raise InputError(f"{path}: cannot write ({exc.strerror or exc})") from None
    os.close(fd)
    try:
        yield Path(tmp)
        publish(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):  # disk full, quota, permissions changed meanwhile...
            raise InputError(f"{path}: cannot write ({exc.strerror or exc})") from None
        raise


@dataclass(frozen=True)
class _Grid:
    """The geometry of a source image read from its header only (no voxels)."""

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    def GetSize(self):  # noqa: N802 -- the SimpleITK names same_grid() uses
        return self.size

    def GetSpacing(self):  # noqa: N802
        return self.spacing

    def GetOrigin(self):  # noqa: N802
        return self.origin

    def GetDirection(self):  # noqa: N802
        return self.direction

    def GetMetaDataKeys(self):  # noqa: N802
        return ()


def _grid_of_file(path: Path) -> _Grid:
    """Geometry of a single-file volume from its header (as :func:`read_volume` would give it)."""
    h = read_header(path)
    if len(h.size) == 4 and h.size[3] == 1:
        d = tuple(v for r, row in enumerate(zip(*[iter(h.direction)] * 4)) if r < 3 for v in row[:3])
        return _Grid(tuple(h.size[:3]), tuple(h.spacing[:3]), tuple(h.origin[:3]), d)
    return _Grid(tuple(h.size), tuple(h.spacing), tuple(h.origin), tuple(h.direction))


def _resolve_source(source):
    """The source's geometry: the image itself, or (for a path) its validated header only; a
    DICOM series is read, as its slice spacing comes from the slice positions."""
    if source is None or isinstance(source, sitk.Image):
        return source
    p = Path(source)
    if p.is_file() and not dicom.is_dicom_file(p):
        from .validate import check_header

        check_header(read_header(p), str(source), max_memory=0)  # geometry only: no voxels read
        return _grid_of_file(p)
    return read_volume(source, what="source image")


def _dicom_files(source, source_img: sitk.Image | None) -> tuple[list[str], Path] | None:
    """The DICOM files (k order) behind the source, or None if it is not DICOM."""
    folder, uid = None, None
    if isinstance(source, (str, Path)):
        p = Path(source)
        if p.is_dir():
            series = dicom.choose_series(p, str(p), announce=False)
            return list(series.files), p
        if p.is_file() and dicom.is_dicom_file(p):
            series = dicom.series_of_file(p)
            return list(series.files), p.parent
    if source_img is not None and dicom.META_DICOM_DIR in source_img.GetMetaDataKeys():
        folder = Path(source_img.GetMetaData(dicom.META_DICOM_DIR))
        uid = source_img.GetMetaData(dicom.META_SERIES_UID)
        files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)
        return list(files), folder
    return None


def _on_source_grid(mask: sitk.Image, source_img: sitk.Image | None, path) -> sitk.Image:
    if source_img is None:
        return mask
    if not same_grid(mask, source_img):
        raise GeometryError(
            f"{path}: mask grid (size {mask.GetSize()}, spacing {mask.GetSpacing()}) differs from the "
            f"source image's (size {source_img.GetSize()}, spacing {source_img.GetSpacing()}); "
            "paste it onto the source grid first"
        )
    out = sitk.Image(mask)
    out.SetSpacing(source_img.GetSpacing())  # exact source geometry, no float drift
    out.SetOrigin(source_img.GetOrigin())
    out.SetDirection(source_img.GetDirection())
    return out


def _to_label_pixels(mask: sitk.Image, path) -> sitk.Image:
    arr = sitk.GetArrayViewFromImage(mask)
    if mask.GetNumberOfComponentsPerPixel() != 1 or mask.GetDimension() != 3:
        raise InputError(f"{path}: mask must be a 3D scalar image")
    lo, hi = (arr.min(), arr.max()) if arr.size else (0, 0)
    if lo < 0:
        raise InputError(f"{path}: mask has negative values (min {lo})")
    if np.issubdtype(arr.dtype, np.floating) and not np.array_equal(arr, np.round(arr)):
        raise InputError(f"{path}: mask has non-integer values; threshold probabilities first")
    ptype = sitk.sitkUInt8 if hi < 256 else (sitk.sitkUInt16 if hi < 65536 else sitk.sitkUInt32)
    return sitk.Cast(mask, ptype) if mask.GetPixelID() != ptype else mask


def _write(mask: sitk.Image, p: Path, source, names: dict[int, str]) -> None:
    source_img = _resolve_source(source)
    mask = _to_label_pixels(_on_source_grid(mask, source_img, p), p)
    suf = _suffix(p)
    if suf in SEG_SUFFIXES:
        found = _dicom_files(source, source_img)
        if found is None:
            raise InputError(f"{p}: DICOM-SEG output needs a DICOM series as source image")
        files, _folder = found
        with atomic_path(p) as tmp:
            from .dicom_seg import write_dicom_seg

            try:
                write_dicom_seg(sitk.GetArrayViewFromImage(mask), names, files, tmp, spacing_ijk=mask.GetSpacing())
            except InputError as exc:  # name the output, not the temporary file
                raise InputError(f"{p}: {exc}") from None
    else:
        with atomic_path(p) as tmp, quiet_itk():
            try:
                sitk.WriteImage(mask, str(tmp), useCompression=suf != ".nii")
            except RuntimeError as exc:  # ITK: disk full, I/O error, ...
                from .read import _itk_reason

                raise InputError(f"{p}: cannot write ({_itk_reason(exc)})") from None
    log.debug("wrote %s", p)  # the caller says what it wrote, once


def write_mask(
    mask: sitk.Image,
    path: str | Path,
    *,
    source: sitk.Image | str | Path | None = None,
    overwrite: bool = False,
    names: dict[int, str] | None = None,
) -> Path:
    """Write a binary mask (or small label map) on the source image's exact grid.

    Args:
        mask: 3D image of ids >= 0 (bool/0-1 for a mask), on the source image's grid.
        path: ``.nii.gz`` / ``.nii`` / ``.nrrd`` / ``.mha``, or ``.dcm`` for DICOM-SEG.
        source: the image the mask was drawn on (image, file or DICOM folder). The mask's grid
            must equal it; the written file gets its exact geometry. Needed for ``.dcm``.
        overwrite: replace an existing output.
        names: structure name per id, used for DICOM-SEG segment labels (default ``{1: "mask"}``).

    Returns:
        The written path.

    Raises:
        OutputExistsError, InputError, GeometryError.
    """
    p = check_output(path, overwrite=overwrite, source=source)
    _write(mask, p, source, dict(names or {1: "mask"}))
    return p


def write_label_map(
    labels: sitk.Image,
    path: str | Path,
    *,
    names: dict[int, str] | None = None,
    source: sitk.Image | str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a multi-class label map keeping its ids, plus a ``<name>.json`` sidecar ``{id: name}``.

    For DICOM-SEG output (``.dcm``) the names become the segment labels and no sidecar is
    written. Both files are written atomically; neither is written if either exists and
    ``overwrite`` is False.

    Returns:
        The label map's path.
    """
    p = check_output(path, overwrite=overwrite, source=source)
    names = {int(k): str(v) for k, v in (names or {}).items()}
    if _suffix(p) in SEG_SUFFIXES:
        _write(labels, p, source, names)
        return p
    side = sidecar_path(p)
    if side.exists() and not overwrite:
        raise OutputExistsError(f"{side}: output exists; pass --overwrite (overwrite=True) to replace it")
    _write(labels, p, source, names)
    with atomic_path(side) as tmp:
        tmp.write_text(json.dumps({str(k): names[k] for k in sorted(names)}, indent=1) + "\n", encoding="utf-8")
    return p


def read_sidecar(path: str | Path) -> dict[int, str] | None:
    """The ``{id: name}`` sidecar of a label map, or None if there is none.

    Raises:
        InputError: the sidecar exists but is not a JSON object of id -> name.
    """
    side = sidecar_path(path)
    if not side.is_file():
        return None
    try:
        raw = json.loads(side.read_text(encoding="utf-8"))
        return {int(k): str(v) for k, v in raw.items()}
    except (ValueError, AttributeError) as exc:
        raise InputError(f"{side}: not a JSON object of label id -> name ({exc})") from None
