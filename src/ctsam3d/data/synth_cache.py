"""Write synthetic CT variants and pseudo-structure cases as an ordinary training cache.

Both pipelines produce the layout of :mod:`ctsam3d.data.cache` through its own case writer
(:func:`~ctsam3d.data.cache.preprocess_case`), so training reads them unchanged:

* :func:`synthesize_cache`: for each label map (canonical orientation, geometry kept;
  axes finer than ``min_spacing`` mm are subsampled by an integer stride) and each
  variant ``v``: :func:`ctsam3d.data.synthetic.synthesize_variant`, case id
  ``<labelmap stem>_v###`` (e.g. ``torso_labels_v003``);
* :func:`pseudo_cache`: for each real CT, :func:`ctsam3d.data.pseudo.pseudo_structures`,
  case id ``<case>_pseudo``; only ``pseudo_###`` names, never the CT's real labels.

Every variant is seeded by ``(seed, label map name, variant)``, so a run is reproducible
and independent of ``workers``. Resumable: a case whose ``cases/<id>.json`` exists is
skipped. All inputs are checked before anything is written.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import zlib
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

from ..errors import InputError
from .adapters import CaseSpec

__all__ = ["load_labelmap", "synthesize_cache", "pseudo_cache", "list_ct_files", "HELD_OUT"]

log = logging.getLogger(__name__)

#: evaluation cases that must never become training data
HELD_OUT = ("aorta_crop", "pulmonary_crop")


def _check_not_held_out(path: Path) -> None:
    parts = set(Path(path).resolve().parts) | set(Path(path).parts)
    for h in HELD_OUT:
        if h in parts:
            raise InputError(f"{path}: {h} is a held-out evaluation case; never train on it")


def _stem(path: Path) -> str:
    name = Path(path).name
    for suf in (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd"):
        if name.lower().endswith(suf):
            return name[: -len(suf)]
    return Path(path).stem


def load_labelmap(path: str | Path, names: dict[int, str] | None = None, catalogue: str | None = None, min_spacing: float = 0.0):
    """Read a label map in canonical orientation, checked.

    Names come from ``names``, else the ``<name>.json`` sidecar, else the known label maps
    (:func:`ctsam3d.data.synthetic.labelmap_names`), else ``catalogue``.

    Returns:
        ``(label uint8 [z, y, x], names {id: name}, spacing_zyx mm, origin_lps (x, y, z) mm)``
        with identity direction; axes with spacing below ``min_spacing`` are subsampled by
        the stride ``ceil(min_spacing / spacing)`` (origin unchanged).

    Raises:
        InputError: missing/unreadable/not 3D/non-integer file, ids > 255, no names, held-out data.
    """
    import SimpleITK as sitk

    from ..io import read_label, read_sidecar
    from .synthetic import labelmap_names

    p = Path(path)
    _check_not_held_out(p)
    img = read_label(p)  # the package's checks: missing/truncated/not 3D/negative/non-integer
    img = sitk.DICOMOrient(img, "LPS")
    if not np.allclose(img.GetDirection(), np.eye(3).ravel(), atol=1e-4):
        raise InputError(f"{p}: oblique label maps are not supported (direction {img.GetDirection()})")
    raw = sitk.GetArrayFromImage(img)
    if raw.max() > 255:
        raise InputError(f"{p}: label ids must be 0..255, found up to {raw.max()}")
    lab = raw.astype(np.uint8)
    if not lab.any():
        raise InputError(f"{p}: label map is empty")
    if names is None:
        names = read_sidecar(p) or labelmap_names(p)
    if names is None and catalogue:
        from .adapters import catalogue_names

        names = catalogue_names(catalogue)
    if names is None:
        raise InputError(f"{p}: unknown label ids; give a <name>.json sidecar {{id: name}} or --catalogue")
    sp = np.asarray(img.GetSpacing(), float)[::-1]
    stride = [int(np.ceil(min_spacing / s - 1e-6)) if s < min_spacing else 1 for s in sp]
    lab = np.ascontiguousarray(lab[:: stride[0], :: stride[1], :: stride[2]])
    return lab, dict(names), sp * stride, tuple(float(v) for v in img.GetOrigin())


def _write_case(out: Path, cid: str, ct: np.ndarray, lab: np.ndarray, names, spacing_zyx, origin_lps, ct_src, source: dict) -> None:
    """One case through the cache writer: temporary NIfTI files -> preprocess_case."""
    import SimpleITK as sitk

    from .cache import preprocess_case

    with tempfile.TemporaryDirectory(prefix=f".{cid}.", dir=out) as td:
        lab_img = sitk.GetImageFromArray(lab)
        if ct_src is None:  # synthetic CT on the canonical grid (identity direction)
            ct_img = sitk.GetImageFromArray(ct)
            ct_img.SetSpacing(tuple(float(v) for v in spacing_zyx[::-1]))
            ct_img.SetOrigin(tuple(float(v) for v in origin_lps))
            ct_path = Path(td) / "ct.nii"
            sitk.WriteImage(ct_img, str(ct_path))
            lab_img.CopyInformation(ct_img)
        else:
            ct_path = Path(ct_src)
            lab_img.CopyInformation(sitk.ReadImage(str(ct_path)))
        lab_path = Path(td) / "label.nii"
        sitk.WriteImage(lab_img, str(lab_path))
        spec = CaseSpec(cid, ct_path, lab_path, names=dict(names), split="train")
        preprocess_case(spec, out)
    jp = out / "cases" / f"{cid}.json"  # record the real provenance instead of the temp paths
    meta = json.loads(jp.read_text(encoding="utf-8"))
    meta["source"] = source
    tmp = out / "cases" / f".{cid}.src.json"
    tmp.write_text(json.dumps(meta, indent=1), encoding="utf-8")
    os.replace(tmp, jp)


def _synth_job(out: str, path: str, stem: str, v: int, seed: int, names, min_spacing: float, catalogue) -> tuple[str, str | None]:
    cid = f"{stem}_v{v:03d}"
    try:
        import SimpleITK as sitk

        from .synthetic import synthesize_variant

        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
        lab, nm, sp, origin = load_labelmap(path, names, catalogue, min_spacing)
        rng = np.random.default_rng([seed, zlib.crc32(stem.encode()), v])
        ct, lab2, info = synthesize_variant(lab, nm, sp, rng)
        src = {"kind": "synthetic", "labelmap": str(path), "variant": v, "seed": seed, "min_spacing": min_spacing, **info}
        _write_case(Path(out), cid, ct, lab2, nm, sp, origin, None, src)
        return cid, None
    except InputError as exc:
        return cid, str(exc)
    except Exception as exc:  # noqa: BLE001 - one case failing does not stop the others
        return cid, f"{path} v{v}: {type(exc).__name__}: {exc}".splitlines()[0]


def _pseudo_job(out: str, path: str, cid: str, seed: int, n_max: int) -> tuple[str, str | None]:
    try:
        import SimpleITK as sitk

        from .pseudo import pseudo_structures

        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
        img = sitk.ReadImage(path)
        ct = sitk.GetArrayFromImage(img)
        sp = np.asarray(img.GetSpacing(), float)[::-1]
        rng = np.random.default_rng([seed, zlib.crc32(cid.encode())])
        lab, names = pseudo_structures(ct, sp, rng, n_max=n_max)
        if not names:
            raise InputError(f"{path}: no pseudo-structure found (empty or all-air CT?)")
        src = {"kind": "pseudo", "image": str(path), "seed": seed, "n_structures": len(names)}
        _write_case(Path(out), cid, None, lab, names, None, None, path, src)
        return cid, None
    except InputError as exc:
        return cid, str(exc)
    except Exception as exc:  # noqa: BLE001
        return cid, f"{path}: {type(exc).__name__}: {exc}".splitlines()[0]


def _run(jobs: list[tuple], fn, out: Path, workers: int, progress: bool, desc: str) -> dict[str, str]:
    from tqdm import tqdm

    from .cache import _write_summary

    out.mkdir(parents=True, exist_ok=True)
    (out / "cases").mkdir(exist_ok=True)
    todo = [j for j in jobs if not (out / "cases" / f"{j[0]}.json").is_file()]
    failed: dict[str, str] = {}
    bar = tqdm(total=len(todo), desc=desc, unit="case", disable=not progress or not todo)

    def done(cid, err):
        bar.update(1)
        if err:
            failed[cid] = err
            bar.write(f"skipped {cid}: {err}")

    if workers <= 1:
        for cid, args in todo:
            done(*fn(str(out), *args))
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futs = [pool.submit(fn, str(out), *args) for cid, args in todo]
            for f in as_completed(futs):
                done(*f.result())
    bar.close()
    # the summary covers every case in the folder (a cache may be filled by several calls)
    ids = sorted({cid for cid, _ in jobs} | {p.stem for p in (out / "cases").glob("*.json") if not p.name.startswith(".")})
    _write_summary(out, [CaseSpec(cid, Path(cid)) for cid in ids], failed, None)
    return failed


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: output exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "cache.json").is_file():
        raise InputError(f"{out}: output folder is not empty and not a ctsam3d cache")


def synthesize_cache(
    labelmaps: list[str | Path],
    out_dir: str | Path,
    *,
    variants: int = 24,
    seed: int = 0,
    workers: int = 1,
    min_spacing: float = 1.5,
    catalogue: str | None = None,
    progress: bool = True,
) -> dict[str, str]:
    """Write ``variants`` synthetic CTs per label map into a cache folder (see module doc).

    Returns:
        case id -> reason, for variants that failed.

    Raises:
        InputError: a bad label map or output folder (checked before anything is written).
    """
    if variants < 1:
        raise InputError(f"--variants must be >= 1, got {variants}")
    out = Path(out_dir)
    _check_out(out)
    jobs, stems = [], set()
    for p in labelmaps:
        lab, names, _, _ = load_labelmap(p, None, catalogue, min_spacing)  # validate all first
        stem = _stem(Path(p))
        if stem in stems:
            raise InputError(f"{p}: two label maps share the name {stem!r}")
        stems.add(stem)
        jobs += [(f"{stem}_v{v:03d}", (str(p), stem, v, seed, names, min_spacing, catalogue)) for v in range(variants)]
    return _run(jobs, _synth_job, out, workers, progress, "synthesize")


def list_ct_files(paths: list[str | Path], max_cases: int | None = None) -> list[tuple[str, Path]]:
    """(case id, CT path) from CT files and/or dataset folders (:func:`ctsam3d.data.open_dataset`).

    Raises:
        InputError: missing path, held-out data, nothing found.
    """
    from .adapters import open_dataset

    out: list[tuple[str, Path]] = []
    for p in map(Path, paths):
        _check_not_held_out(p)
        if p.is_dir():
            out += [(c.case_id, Path(c.image)) for c in open_dataset(p, "auto")]
        elif p.is_file():
            out.append((_stem(p), p))
        else:
            raise InputError(f"{p}: no such CT file or dataset folder")
    if not out:
        raise InputError(f"{' '.join(map(str, paths))}: no CT found")
    return out[:max_cases] if max_cases else out


def pseudo_cache(
    sources: list[str | Path],
    out_dir: str | Path,
    *,
    max_cases: int | None = None,
    n_max: int = 40,
    seed: int = 0,
    workers: int = 1,
    progress: bool = True,
) -> dict[str, str]:
    """Write one pseudo-structure case per real CT into a cache folder (see module doc).

    Returns:
        case id -> reason, for CTs that failed.
    """
    out = Path(out_dir)
    _check_out(out)
    cts = list_ct_files(sources, max_cases)
    jobs = [(f"{cid}_pseudo", (str(path), f"{cid}_pseudo", seed, n_max)) for cid, path in cts]
    return _run(jobs, _pseudo_job, out, workers, progress, "pseudo")
