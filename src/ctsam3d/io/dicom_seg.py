"""DICOM-SEG writing and reading with highdicom.

Segments get SNOMED CT codes when the structure name is known (e.g. ``liver`` -> Liver,
``kidney_left`` -> Kidney), else the generic code "Tissue"; the segment label is always the
structure name.
"""

from __future__ import annotations

import contextlib
import logging
import re
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .._version import __version__
from ..errors import GeometryError, InputError

log = logging.getLogger(__name__)

# Structure names (after dropping laterality / numbers) whose SNOMED code has another name
# in pydicom's code dictionary.
_CODE_ALIASES = {
    "urinary_bladder": "Bladder",
    "thyroid_gland": "Thyroid",
    "small_bowel": "SmallIntestine",
    "vertebrae": "Vertebra",
    "clavicula": "Clavicle",
    "brainstem": "BrainStem",
    "iliac_vena": "IliacVein",
    "lung_upper_lobe": "Lung",
    "lung_lower_lobe": "Lung",
    "lung_middle_lobe": "MiddleLobeOfRightLung",
    "portal_vein_and_splenic_vein": "PortalVein",
    "parotid": "ParotidGland",
    "heart_atrium": "Heart",
    "heart_ventricle": "Heart",
    "heart_myocardium": "Heart",
    "subcutaneous_fat": "Fat",
    "visceral_fat": "Fat",
    "torso_fat": "Fat",
    "costal_cartilages": "CostalCartilage",
    "atrial_appendage": "Heart",
}


#: Libraries whose info-level log lines are internal detail, not news for our users.
_CHATTY_LOGGERS = ("highdicom", "pydicom")


@contextlib.contextmanager
def quiet_libraries():
    """Raise the level of highdicom's / pydicom's loggers to WARNING for the duration (unless
    the user configured them, or ctsam3d debug logging is on), so their internal info lines
    (e.g. highdicom's per-frame notes) do not reach the CLI's output."""
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    changed = []
    for name in _CHATTY_LOGGERS:
        lg = logging.getLogger(name)
        if lg.level == logging.NOTSET:
            lg.setLevel(logging.WARNING)
            changed.append(lg)
    try:
        yield
    finally:
        for lg in changed:
            lg.setLevel(logging.NOTSET)


def _strip(name: str) -> str:
    base = re.sub(r"_(left|right)(_\d+)?$", "", name.lower())
    base = re.sub(r"_([lcts]\d+|s1|\d+)$", "", base)  # vertebrae_L1, rib_1
    return base


def segment_codes(name: str):
    """``(category, type)`` SNOMED codes for a structure name; generic Tissue when unknown."""
    from pydicom.sr.codedict import codes

    base = _strip(name)
    for candidate in (_CODE_ALIASES.get(base), "".join(w.capitalize() for w in base.split("_"))):
        if candidate:
            code = getattr(codes.SCT, candidate, None)
            if code is not None:
                return codes.SCT.AnatomicalStructure, code
    return codes.SCT.Tissue, codes.SCT.Tissue


def _fill_missing_uids(sources) -> None:
    """Give anonymised source datasets the UIDs a SEG must reference (in memory only).

    SOP Class / Instance UIDs come from the file meta header; a missing Study or Series
    Instance UID is derived deterministically from the Frame of Reference UID, so repeated
    writes agree. A warning says so: such a SEG cannot be matched to the source in a PACS.
    """
    import pydicom

    seed = str(getattr(sources[0], "FrameOfReferenceUID", "") or "ctsam3d")
    filled = set()
    for ds in sources:
        meta = getattr(ds, "file_meta", None)
        if not getattr(ds, "SOPClassUID", "") and meta is not None and getattr(meta, "MediaStorageSOPClassUID", ""):
            ds.SOPClassUID = meta.MediaStorageSOPClassUID
        if not getattr(ds, "SOPInstanceUID", "") and meta is not None and getattr(meta, "MediaStorageSOPInstanceUID", ""):
            ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        for key in ("StudyInstanceUID", "SeriesInstanceUID"):
            if not getattr(ds, key, ""):
                setattr(ds, key, pydicom.uid.generate_uid(entropy_srcs=[seed, key]))
                filled.add(key)
        if not getattr(ds, "SOPInstanceUID", ""):
            raise InputError(f"{getattr(ds, 'filename', 'source DICOM')}: has no SOP Instance UID")
    if filled:
        log.warning("source DICOM series has no %s (anonymised?); the DICOM-SEG references generated UIDs",
                    " / ".join(sorted(filled)))


def write_dicom_seg(
    labels_zyx: np.ndarray,
    names: dict[int, str],
    source_files: list[str] | tuple[str, ...],
    path: Path,
    spacing_ijk: tuple[float, float, float] | None = None,
) -> None:
    """Write a BINARY DICOM-SEG of a label map on the grid of a DICOM series.

    Args:
        labels_zyx: ``(k, rows, cols)`` label ids, ``labels_zyx[k]`` on ``source_files[k]``.
        names: structure name per label id (ids without a name get ``label_<id>``).
        source_files: the series' files, in the order of the label map's k axis.
        path: output file (written directly; callers handle atomic renaming).
        spacing_ijk: the series' voxel spacing (mm) as measured from slice positions; it
            replaces the sources' Spacing Between Slices where that disagrees (stale values).
    """
    try:
        with quiet_libraries():
            _write_dicom_seg(labels_zyx, names, source_files, path, spacing_ijk)
    except (ValueError, TypeError, AttributeError, KeyError) as exc:  # highdicom's refusals of the sources
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise InputError(f"cannot write a DICOM-SEG for this DICOM series ({reason})") from None


def _write_dicom_seg(labels_zyx, names, source_files, path, spacing_ijk) -> None:
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    if labels_zyx.shape[0] != len(source_files):
        raise GeometryError(
            f"mask has {labels_zyx.shape[0]} slices but the DICOM series has {len(source_files)}"
        )
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in source_files]
    _fill_missing_uids(sources)
    ids = [int(v) for v in np.unique(labels_zyx) if v != 0]
    empty = not ids
    if empty:  # an empty mask still makes a valid SEG with one empty segment
        ids = sorted(names)[:1] or [1]
    algo = hd.AlgorithmIdentificationSequence(
        name="ctsam3d",
        family=codes.cid7162.ArtificialIntelligence,
        version=__version__,
    )
    descriptions = []
    for number, label_id in enumerate(ids, start=1):
        name = names.get(label_id, f"label_{label_id}")
        category, ptype = segment_codes(name)
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=name[:64],
                segmented_property_category=category,
                segmented_property_type=ptype,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC,
                algorithm_identification=algo,
                tracking_id=f"label {label_id}",
                tracking_uid=hd.UID(),
            )
        )
    lut = np.zeros(int(labels_zyx.max()) + 1 if labels_zyx.size else 1, dtype=np.uint16)
    for number, label_id in enumerate(ids, start=1):
        if label_id < len(lut):
            lut[label_id] = number
    pixels = lut[labels_zyx].astype(np.uint16)
    # One binary plane per segment: (frames, rows, cols, segments).
    planes = np.stack([pixels == n for n in range(1, len(ids) + 1)], axis=-1).astype(np.uint8)
    if spacing_ijk is not None:
        # highdicom copies the sources' pixel measures; a stale Spacing Between Slices (some
        # writers put 1) would make readers stack the SEG's frames at the wrong distance.
        measured = float(spacing_ijk[2])
        for ds in sources:
            if "SpacingBetweenSlices" in ds and abs(float(ds.SpacingBetweenSlices) - measured) > 1e-3 * measured:
                log.debug("%s: Spacing Between Slices %s replaced by the measured %.6g mm",
                          getattr(ds, "filename", "source"), ds.SpacingBetweenSlices, measured)
                ds.SpacingBetweenSlices = f"{measured:.6g}"
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=planes,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=max(int(getattr(sources[0], "SeriesNumber", 0) or 0), 0) + 1000,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="ctsam3d",
        manufacturer_model_name="CT-SAM3D",
        software_versions=__version__,
        device_serial_number="0",
        omit_empty_frames=not empty,
        series_description="ctsam3d segmentation",
    )
    seg.save_as(str(path))


def _check_seg_memory(path: Path, name: str, max_memory) -> None:
    """Refuse a SEG whose frames would not fit in memory, from its header (before decoding)."""
    import pydicom

    from .memory import check_memory

    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
        frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
        voxels = int(ds.Rows) * int(ds.Columns) * frames
    except Exception:  # unreadable headers are reported by highdicom below
        return
    # frames count every segment's planes; highdicom unpacks them to a byte per pixel, stacks
    # them per position and segment, then combines (the estimate's pipeline allowance covers it)
    check_memory(voxels, "8-bit unsigned integer", name, limit=max_memory)


def read_dicom_seg(
    path: str | Path, *, reference: sitk.Image | None = None, max_memory: int | str | None = None
) -> tuple[sitk.Image, dict[int, str]]:
    """Read a DICOM-SEG into a label image (segment number = label id) and ``{id: label}``.

    With ``reference``, the segmentation is placed onto the reference grid (nearest
    neighbour; its voxel centres must lie on the reference's lattice).

    Raises:
        InputError: unreadable file, overlapping segments.
        GeometryError: segmentation frames not on the reference grid.
    """
    import highdicom as hd

    name = str(path)
    _check_seg_memory(Path(path), name, max_memory)
    try:
        with quiet_libraries():
            seg = hd.seg.segread(str(path))
            names = {int(d.SegmentNumber): str(d.SegmentLabel) for d in seg.SegmentSequence}
            vol = seg.get_volume(combine_segments=True)
    except Exception as exc:  # highdicom raises ValueError/RuntimeError/AttributeError variants
        raise InputError(f"{name}: cannot read DICOM-SEG ({str(exc).splitlines()[0][:200]})") from None
    arr = np.asarray(vol.array)
    img = sitk.GetImageFromArray(arr.astype(np.uint16 if arr.max(initial=0) > 255 else np.uint8))
    sp = np.asarray(vol.spacing, dtype=np.float64)
    d = np.asarray(vol.direction, dtype=np.float64)
    img.SetSpacing(tuple(float(s) for s in sp[::-1]))
    img.SetDirection(tuple(float(v) for v in d[:, ::-1].ravel()))
    img.SetOrigin(tuple(float(v) for v in vol.position))
    if reference is None:
        return img, names
    from ..geometry.coords import index_to_lps, lps_to_index

    size = np.asarray(img.GetSize(), dtype=np.float64) - 1
    pts = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], dtype=np.float64) * size
    pts = np.vstack([pts, np.eye(3)])
    idx = lps_to_index(reference, index_to_lps(img, pts))
    if np.max(np.abs(idx - np.rint(idx))) > 1e-2:
        raise GeometryError(f"{name}: DICOM-SEG frames are not on the grid of the image")
    out = sitk.Resample(img, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, img.GetPixelID())
    return out, names
