"""DICOM series discovery and reading (SimpleITK's GDCM series reader).

A folder may hold several series; the image series with the most slices is read, its files
sorted by position along the slice normal (GDCM's ordering). Non-image objects (SEG,
RTSTRUCT, SR, ...) are never chosen as the volume.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError

log = logging.getLogger(__name__)

#: Modalities that are not image volumes.
NON_IMAGE_MODALITIES = {"SEG", "RTSTRUCT", "RTPLAN", "RTRECORD", "SR", "PR", "KO", "REG", "DOC"}

#: Metadata keys set on images read from DICOM, so writers can find the source series.
META_DICOM_DIR = "ctsam3d:dicom_dir"
META_SERIES_UID = "ctsam3d:series_uid"


@dataclass(frozen=True)
class SeriesInfo:
    """One DICOM series: UID (may be empty), files sorted by position, modality, description."""

    uid: str
    files: tuple[str, ...]
    modality: str
    description: str

    def label(self) -> str:
        uid = self.uid or "(no SeriesInstanceUID)"
        desc = f" '{self.description}'" if self.description else ""
        return f"{self.modality or '?'} series {uid}{desc}, {len(self.files)} slices"


def _quiet_series_ids(folder: str) -> tuple[str, ...]:
    old = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        return tuple(sitk.ImageSeriesReader.GetGDCMSeriesIDs(folder))
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(old)


def read_tags(path: str, tags: tuple[str, ...] = ("0008|0060", "0008|103e", "0020|000e", "0008|0016")) -> dict[str, str]:
    """A few DICOM tags of one file (header only; missing tags are ``""``)."""
    r = sitk.ImageFileReader()
    r.SetFileName(path)
    r.SetImageIO("GDCMImageIO")
    r.ReadImageInformation()
    keys = set(r.GetMetaDataKeys())
    return {t: (r.GetMetaData(t).strip() if t in keys else "") for t in tags}


def modality_of(path: Path) -> str:
    """Upper-case Modality (0008,0060) of a DICOM file; ``""`` if unreadable or absent."""
    try:
        return read_tags(str(path), ("0008|0060",))["0008|0060"].upper()
    except RuntimeError:
        return ""


def is_dicom_file(path: Path) -> bool:
    """True if ``path`` looks like a DICOM file (``DICM`` preamble, or a .dcm that GDCM reads)."""
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError:
        return False
    if len(head) == 132 and head[128:132] == b"DICM":
        return True
    if path.suffix.lower() in (".dcm", ".ima", ".dicom"):
        try:
            read_tags(str(path))
            return True
        except RuntimeError:
            return False
    return False


def list_series(folder: Path) -> list[SeriesInfo]:
    """All series in ``folder`` (not recursive), image series first, most slices first."""
    out = []
    for uid in _quiet_series_ids(str(folder)):
        files = tuple(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))
        if not files:
            continue
        try:
            tags = read_tags(files[0])
        except RuntimeError:
            continue
        out.append(SeriesInfo(uid, files, tags["0008|0060"].upper(), tags["0008|103e"]))
    out.sort(key=lambda s: (s.modality in NON_IMAGE_MODALITIES, -len(s.files)))
    return out


def refuse_broken_links(entries, name: str) -> None:
    """InputError if a folder entry is a broken link or a link loop: GDCM's folder scan then
    silently misses other slices (118 of 128 read with one dangling link, 38 with a loop)."""
    for p in entries:
        if p.is_symlink() and not p.exists():
            raise InputError(
                f"{name}: {p.name} is a broken link (or a link loop), which makes the DICOM folder scan "
                "miss slices; remove it"
            )


def choose_series(folder: Path, name: str, *, announce: bool = True) -> SeriesInfo:
    """The image series with the most slices in ``folder``; logs the choice (``announce``:
    at info level, else debug: callers that look the series up again stay quiet).

    Raises:
        InputError: empty folder, no DICOM, or only non-image objects (SEG, RTSTRUCT, ...).
    """
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    if not entries:
        raise InputError(f"{name}: folder is empty; expected a DICOM series")
    refuse_broken_links(entries, name)
    series = list_series(folder)
    images = [s for s in series if s.modality not in NON_IMAGE_MODALITIES]
    if not series:
        sub = " (subfolders are not searched)" if any(p.is_dir() for p in entries) else ""
        raise InputError(f"{name}: folder holds no DICOM series{sub}")
    if not images:
        kinds = ", ".join(sorted({s.modality for s in series}))
        raise InputError(f"{name}: folder holds no DICOM image series, only {kinds}")
    chosen = images[0]
    level = logging.INFO if announce else logging.DEBUG
    if len(images) > 1:
        others = "; ".join(s.label() for s in images[1:])
        log.log(level, "%s: %d image series; using the one with most slices: %s (skipped: %s)",
                name, len(images), chosen.label(), others)
    else:
        log.log(level, "%s: using %s", name, chosen.label())
    return chosen


def series_of_file(path: Path) -> SeriesInfo:
    """The series (in the file's folder) that a single DICOM file belongs to."""
    tags = read_tags(str(path))
    refuse_broken_links(path.parent.iterdir(), str(path.parent))
    uid = tags["0020|000e"]
    me = path.resolve()
    files = tuple(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path.parent), uid)) if uid else ()
    if me not in {Path(f).resolve() for f in files}:
        # no (or an unmatched) Series Instance UID, e.g. anonymised files: find the file's group
        files = next(
            (s.files for s in list_series(path.parent) if me in {Path(f).resolve() for f in s.files}),
            (str(path),),
        )
    return SeriesInfo(uid, files, tags["0008|0060"].upper(), tags["0008|103e"])


def check_pixel_spacing(series: SeriesInfo, name: str) -> None:
    """GeometryError if the series' Pixel Spacing (0028,0030) is zero, negative or not a number:
    GDCM then silently reads the slices as 1 mm apart in-plane."""
    from ..errors import GeometryError

    try:
        raw = read_tags(series.files[0], ("0028|0030",))["0028|0030"]
    except RuntimeError:
        return
    if not raw:
        return
    try:
        values = [float(v) for v in raw.split("\\")]
    except ValueError:
        values = [float("nan")]
    if len(values) != 2 or not all(np.isfinite(v) and v > 0 for v in values):
        raise GeometryError(
            f"{name}: Pixel Spacing (0028,0030) '{raw.strip()}' mm is invalid (must be two numbers > 0)"
        )


def series_header(series: SeriesInfo):
    """Header geometry of a series from its first file, with the slice count as size[2]."""
    r = sitk.ImageFileReader()
    r.SetFileName(series.files[0])
    r.SetImageIO("GDCMImageIO")
    r.ReadImageInformation()
    size = list(r.GetSize())
    if len(series.files) > 1:
        size = [size[0], size[1], len(series.files)]
    return r, tuple(size)


def read_series(series: SeriesInfo, folder: Path) -> sitk.Image:
    """Read the series' voxels (files already sorted by position) and tag the image's source."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list(series.files))
    reader.MetaDataDictionaryArrayUpdateOn()
    img = reader.Execute()
    _warn_uneven_slices(reader, img, str(folder))
    img.SetMetaData(META_DICOM_DIR, str(folder))
    img.SetMetaData(META_SERIES_UID, series.uid)
    return img


def _warn_uneven_slices(reader: sitk.ImageSeriesReader, img: sitk.Image, name: str) -> None:
    """Warn when slice positions are not evenly spaced (missing slices): ITK then assumes the
    mean spacing, so distances along the slice axis would be wrong. Refuse slices that share a
    position (several volumes in one series, e.g. time points or echoes): ITK would stack them
    1 mm apart without a word."""
    from ..errors import GeometryError

    n = img.GetSize()[2]
    if n < 2:
        return
    try:
        pos = np.array(
            [[float(v) for v in reader.GetMetaData(k, "0020|0032").split("\\")] for k in range(n)]
        )
    except (RuntimeError, ValueError):
        return
    normal = np.asarray(img.GetDirection(), dtype=np.float64).reshape(3, 3)[:, 2]
    steps = np.diff(pos @ normal)
    same = int(np.count_nonzero(np.abs(steps) < 1e-4))
    if same:
        raise GeometryError(
            f"{name}: {same + 1 if same == n - 1 else same} of its {n} slices share a position with "
            "another slice (several volumes in one series, e.g. time points or echoes?); "
            "a single 3D volume is needed"
        )
    if n < 3:
        return
    median = float(np.median(np.abs(steps)))
    if median > 0 and float(np.max(np.abs(np.abs(steps) - median))) > 0.1 * median:
        log.warning(
            "%s: slice spacing is uneven (%.3g to %.3g mm; missing slices?); the volume assumes %.3g mm",
            name, float(np.min(np.abs(steps))), float(np.max(np.abs(steps))), img.GetSpacing()[2],
        )
