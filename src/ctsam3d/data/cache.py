"""Preprocessing cache: each case in canonical orientation, compact and fast to sample.

Why native spacing: the sampler resamples every patch anyway (one affine that combines
patch placement, augmentation and the model's spacing), so the cache only has to make
the grid axis-aligned. Reorienting to identity direction is an axis permutation/flip —
lossless — while resampling OpenKBP (128³ at ~4–5 × 4–5 × 2.5 mm) to the paper's 1.5 mm
would inflate it about 20× (from ~45 MB to ~1 GB for 170 cases) and could no longer
travel with the working tree. ``spacing=`` resamples anyway when wanted (e.g. very fine
CT that would waste memory).

Layout of a cache folder::

    cache.json            summary: format version, spacing option, cases, structure counts
    cases/<id>.npz        compressed (zip/LZMA, read by np.load): ct int16 HU [z, y, x], label uint8 [z, y, x],
                          points int16 (N, 4) = (label id, z, y, x) sample voxels per structure
    cases/<id>_{ct,label,points}.npy   the same, uncompressed (``compress=False``): memory-mappable
    cases/<id>.json       spacing_zyx (mm), origin_lps (mm, of voxel [0, 0, 0]), shape_zyx,
                          structures {name: {id, voxels, bbox_zyx}}, known [names],
                          scan_faces_zyx [[z0, z1], [y0, y1], [x0, x1]]: whether each face of
                          the cropped volume is a face of the scan (true) or of the air crop
    failed.json           case id -> one-line reason, for cases that were skipped

Arrays have identity direction (axis x → L, y → P, z → S; index ``[z, y, x]``), so voxel
``[z, y, x]`` lies at ``origin_lps + (x, y, z) * spacing_xyz``. The volume is cropped to
the box of non-air voxels (``ct != -1024`` or labelled): the sampler pads with -1024 HU
and label 0, so the crop loses nothing. ``known`` lists the structures whose labels are
meaningful for the case: for a label map, those present; for one-mask-per-class data
(TotalSegmentator), every class file, even an empty one. Other structures are unknown,
never background.

A case's JSON is written last (temp file + ``os.replace``), so a case is complete exactly
when its JSON exists: preprocessing resumes by skipping those.
"""

from __future__ import annotations

import json
import logging
import os
import zipfile
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from .adapters import CaseSpec

__all__ = ["CachedCase", "Structure", "preprocess", "preprocess_case", "load_cache", "CACHE_VERSION"]

log = logging.getLogger(__name__)

CACHE_VERSION = 1
AIR_HU = -1024
POINTS_PER_STRUCTURE = 1024


@dataclass(frozen=True)
class Structure:
    """One labelled structure of a cached case.

    Attributes:
        name: catalogue name.
        label_id: value in the case's ``label`` array.
        voxels: voxel count.
        bbox_zyx: ``(z0, y0, x0, z1, y1, x1)`` voxel box, end exclusive.
    """

    name: str
    label_id: int
    voxels: int
    bbox_zyx: tuple[int, int, int, int, int, int]


@dataclass
class CachedCase:
    """A case loaded from the cache (canonical orientation, identity direction).

    Attributes:
        case_id: id of the case.
        ct: int16 HU array ``[z, y, x]``.
        label: uint8 label array ``[z, y, x]``.
        spacing_zyx: voxel size in mm, ``(z, y, x)``.
        origin_lps: LPS mm ``(x, y, z)`` of voxel ``[0, 0, 0]``.
        structures: name -> :class:`Structure`, for structures present in ``label``.
        known: names of structures whose labels are meaningful here (see module doc).
        points: label id -> ``(N, 3)`` int array of voxels ``(z, y, x)`` inside it.
        scan_faces: per axis ``(z, y, x)``, whether the array's low / high face is a face of the
            scan (the crop reached it: beyond it the scan has no data) rather than of the crop
            to non-air voxels (beyond it the scan held air). ``None`` for caches written before
            2026-12-05 10:20 UTC, which did not record it.
    """

    case_id: str
    ct: np.ndarray
    label: np.ndarray
    spacing_zyx: tuple[float, float, float]
    origin_lps: tuple[float, float, float]
    structures: dict[str, Structure]
    known: list[str]
    points: dict[int, np.ndarray] = field(default_factory=dict)
    scan_faces: tuple[tuple[bool, bool], ...] | None = None


def _faces(v) -> tuple[tuple[bool, bool], ...] | None:
    return None if v is None else tuple((bool(a), bool(b)) for a, b in v)


def _seed(case_id: str) -> int:
    return zlib.crc32(case_id.encode())


def _read(path: Path, what: str):
    import SimpleITK as sitk

    if not path.is_file():
        raise InputError(f"{path}: {what} file is missing")
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable"
        raise InputError(f"{path}: cannot read {what} ({first[:160]})") from None
    if img.GetDimension() != 3:
        raise InputError(f"{path}: expected a 3D {what}, got {img.GetDimension()}D")
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{path}: expected a scalar {what}, got a multi-component image")
    return img


def _canonical(img, spacing: float | None, is_label: bool):
    """Identity-direction image: a lossless reorientation, or a resampling when asked/needed."""
    import SimpleITK as sitk

    if spacing is None:
        out = sitk.DICOMOrient(img, "LPS")
        if np.allclose(out.GetDirection(), np.eye(3).ravel(), atol=1e-4):
            return out
        spacing = float(min(img.GetSpacing()))  # oblique: resample at the finest spacing
    from ..geometry import to_canonical

    return to_canonical(img, spacing, is_label=is_label)


def _same_grid(a, b) -> bool:
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing(), rtol=1e-3, atol=1e-4)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=1e-2 * min(a.GetSpacing()) + 1e-3)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-3)
    )


def _label_array(spec: CaseSpec, ct_img) -> tuple[np.ndarray, dict[int, str], list[str]]:
    """Label array (original grid, [z, y, x] uint8), id -> name, and known names."""
    import SimpleITK as sitk

    if spec.label_files:
        if len(spec.label_files) > 255:
            raise InputError(f"{spec.case_id}: more than 255 structures do not fit a uint8 label map")
        lab = np.zeros(sitk.GetArrayViewFromImage(ct_img).shape, np.uint8)
        names = {}
        for i, (name, path) in enumerate(sorted(spec.label_files.items()), start=1):
            m = _read(path, "mask")
            if not _same_grid(m, ct_img):
                raise InputError(f"{path}: mask grid differs from the CT grid {spec.image}")
            lab[sitk.GetArrayViewFromImage(m) != 0] = i  # overlaps: the later class wins
            names[i] = name
        return lab, names, sorted(spec.label_files)
    if spec.label is None:
        raise InputError(f"{spec.case_id}: no label file")
    m = _read(Path(spec.label), "label map")
    if not _same_grid(m, ct_img):
        raise InputError(f"{spec.label}: label grid differs from the CT grid of {spec.image}")
    raw = sitk.GetArrayFromImage(m)
    if raw.dtype.kind == "f":
        if not np.all(np.mod(raw, 1) == 0):
            raise InputError(f"{spec.label}: label map has non-integer values")
        raw = raw.astype(np.int64)
    ids = [int(v) for v in np.unique(raw) if v != 0]
    names = dict(spec.names) if spec.names else {i: f"label_{i}" for i in ids}
    lab = np.zeros(raw.shape, np.uint8)
    for i in ids:
        if i in names:
            if not 0 < i < 256:
                raise InputError(f"{spec.label}: label id {i} does not fit uint8")
            lab[raw == i] = i
    known = sorted(names[i] for i in ids if i in names)
    return lab, names, known


def preprocess_case(spec: CaseSpec, out_dir: str | Path, *, spacing: float | None = None, compress: bool = True) -> dict:
    """Convert one case into the cache (see the module doc for the layout).

    Args:
        spec: the case.
        out_dir: cache folder (``cases/`` is created inside).
        spacing: None keeps the native spacing (lossless reorientation); a number resamples
            to that isotropic spacing in mm.
        compress: write one compressed ``.npz`` (transport) instead of memory-mappable ``.npy``.

    Returns:
        The case's metadata dict (as written to ``cases/<id>.json``).

    Raises:
        InputError: missing/corrupt image or label, grids that differ, bad label values.
    """
    import SimpleITK as sitk

    cases_dir = Path(out_dir) / "cases"
    cases_dir.mkdir(parents=True, exist_ok=True)
    ct_img = _read(Path(spec.image), "CT image")
    lab_orig, names, known = _label_array(spec, ct_img)
    lab_img = sitk.GetImageFromArray(lab_orig)
    lab_img.CopyInformation(ct_img)
    ct_c = _canonical(ct_img, spacing, is_label=False)
    lab_c = _canonical(lab_img, spacing, is_label=True)
    ct = np.clip(np.rint(sitk.GetArrayFromImage(ct_c).astype(np.float32)), AIR_HU, 32767).astype(np.int16)
    lab = sitk.GetArrayFromImage(lab_c).astype(np.uint8)
    spacing_xyz = np.asarray(ct_c.GetSpacing(), float)
    origin = np.asarray(ct_c.GetOrigin(), float)

    keep = (ct != AIR_HU) | (lab != 0)
    if not keep.any():
        raise InputError(f"{spec.image}: the CT contains only air (-1024 HU)")
    nz = [np.flatnonzero(keep.any(axis=tuple(a for a in range(3) if a != ax))) for ax in range(3)]
    lo = np.array([n[0] for n in nz])
    hi = np.array([n[-1] + 1 for n in nz])
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    ct, lab = np.ascontiguousarray(ct[box]), np.ascontiguousarray(lab[box])
    scan_faces = [[bool(a == 0), bool(b == n)] for a, b, n in zip(lo, hi, keep.shape)]
    origin = origin + lo[::-1] * spacing_xyz  # crop start (z,y,x) -> (x,y,z) mm

    rng = np.random.default_rng(_seed(spec.case_id))
    structures, pts = {}, []
    for i in sorted(int(v) for v in np.unique(lab) if v != 0):
        vox = np.argwhere(lab == i)
        take = vox if len(vox) <= POINTS_PER_STRUCTURE else vox[rng.choice(len(vox), POINTS_PER_STRUCTURE, replace=False)]
        pts.append(np.concatenate([np.full((len(take), 1), i), take], axis=1))
        b = vox.min(0).tolist() + (vox.max(0) + 1).tolist()
        structures[names[i]] = {"id": i, "voxels": int(len(vox)), "bbox_zyx": [int(v) for v in b]}
    points = np.concatenate(pts).astype(np.int16) if pts else np.zeros((0, 4), np.int16)

    cid = spec.case_id
    if compress:
        tmp = cases_dir / f".{cid}.tmp.npz"
        _save_npz_lzma(tmp, ct=ct, label=lab, points=points)
        os.replace(tmp, cases_dir / f"{cid}.npz")
    else:
        for key, arr in (("ct", ct), ("label", lab), ("points", points)):
            tmp = cases_dir / f".{cid}_{key}.tmp.npy"
            np.save(tmp, arr)
            os.replace(tmp, cases_dir / f"{cid}_{key}.npy")
    meta = {
        "case_id": cid,
        "shape_zyx": [int(v) for v in ct.shape],
        "spacing_zyx": [float(v) for v in spacing_xyz[::-1]],
        "origin_lps": [float(v) for v in origin],
        "structures": structures,
        "known": known,
        "scan_faces_zyx": scan_faces,
        "split": spec.split,
        "compressed": compress,
        "source": {"image": str(spec.image), "label": str(spec.label) if spec.label else None},
    }
    tmp = cases_dir / f".{cid}.tmp.json"
    tmp.write_text(json.dumps(meta, indent=1), encoding="utf-8")
    os.replace(tmp, cases_dir / f"{cid}.json")
    return meta


def _save_npz_lzma(path: Path, **arrays: np.ndarray) -> None:
    """Like ``np.savez_compressed`` but LZMA instead of deflate (~20 % smaller CT; ``np.load``
    reads it unchanged, ~10 ms per 128³ case)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_LZMA) as zf:
        for key, arr in arrays.items():
            with zf.open(f"{key}.npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.ascontiguousarray(arr), allow_pickle=False)


def _worker(spec: CaseSpec, out_dir: str, spacing, compress: bool) -> tuple[str, str | None]:
    try:
        import SimpleITK as sitk

        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
        preprocess_case(spec, out_dir, spacing=spacing, compress=compress)
        return spec.case_id, None
    except InputError as exc:
        return spec.case_id, str(exc)
    except Exception as exc:  # noqa: BLE001 - any failure stops only this case
        return spec.case_id, f"{spec.image}: {type(exc).__name__}: {exc}".splitlines()[0]


def preprocess(
    cases: list[CaseSpec],
    out_dir: str | Path,
    *,
    spacing: float | None = None,
    workers: int = 1,
    compress: bool = True,
    progress: bool = True,
) -> dict[str, str]:
    """Build (or complete) a cache folder from a list of cases.

    Cases whose ``cases/<id>.json`` exists are skipped (resumable). A case that fails is
    logged as a warning and recorded in ``failed.json``; it never stops the others.

    Args:
        cases: from :func:`ctsam3d.data.open_dataset`.
        out_dir: cache folder, created if missing.
        spacing: see :func:`preprocess_case`.
        workers: parallel processes (1 = in this process).
        compress: see :func:`preprocess_case`.
        progress: show a tqdm bar on stderr.

    Returns:
        case id -> reason, for the cases that failed in this call.
    """
    from tqdm import tqdm

    out = Path(out_dir)
    (out / "cases").mkdir(parents=True, exist_ok=True)
    todo = [c for c in cases if not (out / "cases" / f"{c.case_id}.json").is_file()]
    if len(todo) < len(cases):
        log.info("%s: %d of %d cases already done, skipping them", out, len(cases) - len(todo), len(cases))
    failed: dict[str, str] = {}
    bar = tqdm(total=len(todo), desc="preprocess", unit="case", disable=not progress or not todo)

    def done(cid: str, err: str | None) -> None:
        bar.update(1)
        if err:
            failed[cid] = err
            bar.write(f"skipped {cid}: {err}")
            log.warning("skipped case %s: %s", cid, err)

    if workers <= 1:
        for c in todo:
            done(*_worker(c, str(out), spacing, compress))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futs = [pool.submit(_worker, c, str(out), spacing, compress) for c in todo]
            for f in as_completed(futs):
                done(*f.result())
    bar.close()
    _write_summary(out, cases, failed, spacing)
    return failed


def _write_summary(out: Path, cases: list[CaseSpec], failed: dict[str, str], spacing) -> None:
    old_failed = {}
    if (out / "failed.json").is_file():
        old_failed = json.loads((out / "failed.json").read_text(encoding="utf-8"))
    ids = [c.case_id for c in cases if (out / "cases" / f"{c.case_id}.json").is_file()]
    all_failed = {k: v for k, v in {**old_failed, **failed}.items() if k not in ids}
    counts: dict[str, int] = {}
    for cid in ids:
        for name in json.loads((out / "cases" / f"{cid}.json").read_text(encoding="utf-8"))["structures"]:
            counts[name] = counts.get(name, 0) + 1
    summary = {
        "format": "ctsam3d-cache",
        "version": CACHE_VERSION,
        "spacing": spacing,
        "cases": ids,
        "structure_cases": dict(sorted(counts.items())),
    }
    for name, obj in (("cache.json", summary), ("failed.json", all_failed)):
        tmp = out / f".{name}.tmp"
        tmp.write_text(json.dumps(obj, indent=1), encoding="utf-8")
        os.replace(tmp, out / name)


def load_cache(cache_dir: str | Path, *, case_ids: list[str] | None = None, mmap: bool = True) -> list[CachedCase]:
    """Load the cases of a cache folder.

    Args:
        cache_dir: folder written by :func:`preprocess`.
        case_ids: only these cases (default: all complete cases, from their JSON files).
        mmap: memory-map uncompressed ``.npy`` arrays (compressed ``.npz`` are decompressed
            into memory, ~10 ms per 128³ case).

    Returns:
        The cases, in the order of ``case_ids`` or sorted by id.

    Raises:
        InputError: the folder is not a cache, or a listed case is missing.
    """
    d = Path(cache_dir) / "cases"
    if not d.is_dir():
        raise InputError(f"{cache_dir}: not a ctsam3d cache (no 'cases' folder); run 'ctsam3d preprocess'")
    ids = case_ids if case_ids is not None else sorted(p.stem for p in d.glob("*.json") if not p.name.startswith("."))
    out = []
    for cid in ids:
        jp = d / f"{cid}.json"
        if not jp.is_file():
            raise InputError(f"{jp}: case {cid!r} is not in the cache")
        meta = json.loads(jp.read_text(encoding="utf-8"))
        if meta.get("compressed", True) and (d / f"{cid}.npz").is_file():
            with np.load(d / f"{cid}.npz") as z:
                ct, lab, points = z["ct"], z["label"], z["points"]
        else:
            mode = "r" if mmap else None
            ct, lab, points = (np.load(d / f"{cid}_{k}.npy", mmap_mode=mode) for k in ("ct", "label", "points"))
            points = np.asarray(points)
        structures = {
            n: Structure(n, int(s["id"]), int(s["voxels"]), tuple(int(v) for v in s["bbox_zyx"]))  # type: ignore[arg-type]
            for n, s in meta["structures"].items()
        }
        pts = {int(i): points[points[:, 0] == i, 1:].astype(np.int64) for i in np.unique(points[:, 0])} if len(points) else {}
        out.append(
            CachedCase(
                cid,
                ct,
                lab,
                tuple(meta["spacing_zyx"]),  # type: ignore[arg-type]
                tuple(meta["origin_lps"]),  # type: ignore[arg-type]
                structures,
                list(meta["known"]),
                pts,
                _faces(meta.get("scan_faces_zyx")),
            )
        )
    if not out:
        raise InputError(f"{cache_dir}: the cache holds no cases")
    return out
