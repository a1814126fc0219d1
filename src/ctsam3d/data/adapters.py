"""Dataset adapters: list the cases of a dataset on disk as :class:`CaseSpec` records.

Adapters only look at file names and small metadata files (``meta.csv``,
``dataset.json``, a manifest); they never read images, so listing a dataset is fast and
needs no SimpleITK. Reading, checking and converting a case is the preprocessing step
(:mod:`ctsam3d.data.cache`), where a corrupt case is reported and skipped.

Supported layouts (``format``):

* ``"totalseg"``: TotalSegmentator, ``<root>/sXXXX/ct.nii.gz`` and
  ``<root>/sXXXX/segmentations/<class>.nii.gz`` (one binary mask per class, the file
  stem is the class name); optional ``<root>/meta.csv`` (``;``-separated, columns
  ``image_id`` and ``split``) selects a split.
* ``"nnunet"``: nnU-Net v2 raw, ``imagesTr/<case>_0000<ending>``,
  ``labelsTr/<case><ending>`` and ``dataset.json`` (``labels {name: id}``,
  ``file_ending``).
* ``"pairs"``: a folder of ``<case>_ct<ext>`` + ``<case>_<suffix><ext>`` files (suffix
  ``oars``, ``label``, ``labels``, ``seg`` or ``mask``), as in ``openkbp/train``; label ids
  are named through the anatomy catalogue (``catalogue="openkbp"`` by default) or a
  ``names`` mapping.
* ``"manifest"``: a CSV (columns ``case_id,image,label[,split]``) or JSON (a list of
  ``{"case_id", "image", "label", "split"?, "names"?}``) file; relative paths are
  relative to the manifest.

A structure that is absent from a case's label map is *unknown* for that case, not
background: :class:`CaseSpec.names` only says what the ids mean; which ones are present
is measured during preprocessing.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError

__all__ = ["CaseSpec", "open_dataset", "FORMATS", "catalogue_names"]

log = logging.getLogger(__name__)

FORMATS = ("auto", "totalseg", "nnunet", "pairs", "manifest")
_NII = (".nii.gz", ".nii", ".nrrd", ".mha", ".mhd")
_PAIR_LABEL_SUFFIXES = ("oars", "labels", "label", "seg", "mask")


@dataclass(frozen=True)
class CaseSpec:
    """One case of a dataset, as files on disk.

    Attributes:
        case_id: unique id within the dataset (used as the cache file name).
        image: path of the CT volume (any SimpleITK-readable file).
        label: path of an integer label map on the CT's grid, or None when the labels come
            as one binary file per structure (``label_files``).
        names: label id -> structure name for ``label`` (ids not listed are ignored).
        label_files: structure name -> binary mask path (TotalSegmentator layout).
        split: ``"train"``, ``"val"``, ``"test"`` or ``""`` (unknown).
    """

    case_id: str
    image: Path
    label: Path | None = None
    names: dict[int, str] = field(default_factory=dict)
    label_files: dict[str, Path] = field(default_factory=dict)
    split: str = ""


def catalogue_names(catalogue: str) -> dict[int, str]:
    """Label id -> structure name of a catalogue of :mod:`ctsam3d.anatomy` (e.g. ``"openkbp"``).

    Raises:
        InputError: unknown catalogue.
    """
    from ..anatomy import get_catalogue

    return dict(get_catalogue(catalogue).labels)


def _strip_ext(name: str) -> tuple[str, str] | None:
    for ext in _NII:
        if name.endswith(ext):
            return name[: -len(ext)], ext
    return None


def _detect(root: Path) -> str:
    if root.is_file():
        return "manifest"
    if (root / "imagesTr").is_dir() and (root / "dataset.json").is_file():
        return "nnunet"
    if any((d / "segmentations").is_dir() for d in root.iterdir() if d.is_dir()):
        return "totalseg"
    return "pairs"


def _norm_split(value: str) -> str:
    v = value.strip().lower()
    return {"training": "train", "validation": "val", "valid": "val", "testing": "test"}.get(v, v)


def _totalseg(root: Path, split: str | None) -> list[CaseSpec]:
    splits: dict[str, str] = {}
    meta = root / "meta.csv"
    if meta.is_file():
        with meta.open(newline="") as fh:
            for row in csv.DictReader(fh, delimiter=";"):
                if "image_id" not in row:
                    raise InputError(f"{meta}: expected a ';'-separated CSV with an 'image_id' column")
                splits[row["image_id"].strip()] = _norm_split(row.get("split") or "")
    cases = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        seg_dir = d / "segmentations"
        if not seg_dir.is_dir():
            continue
        image = next((d / f"ct{e}" for e in _NII if (d / f"ct{e}").is_file()), d / "ct.nii.gz")
        files = {}
        for f in sorted(seg_dir.iterdir()):
            stem = _strip_ext(f.name)
            if stem:
                files[stem[0]] = f
        cases.append(CaseSpec(d.name, image, None, {}, files, splits.get(d.name, "")))
    return cases


def _nnunet(root: Path) -> list[CaseSpec]:
    dj = root / "dataset.json"
    try:
        meta = json.loads(dj.read_text(encoding="utf-8"))
        labels = {int(v): str(k) for k, v in meta["labels"].items() if int(v) != 0}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(f"{dj}: not a valid nnU-Net v2 dataset.json ({exc})") from None
    ending = meta.get("file_ending", ".nii.gz")
    cases = []
    for img in sorted((root / "imagesTr").glob(f"*_0000{ending}")):
        cid = img.name[: -len(f"_0000{ending}")]
        cases.append(CaseSpec(cid, img, root / "labelsTr" / f"{cid}{ending}", labels, {}, "train"))
    if not cases:
        raise InputError(f"{root / 'imagesTr'}: no '<case>_0000{ending}' images found")
    return cases


def _pairs(root: Path, names: dict[int, str]) -> list[CaseSpec]:
    files = {}
    for f in root.iterdir():
        s = _strip_ext(f.name)
        if s:
            files[s[0]] = f
    cases = []
    for stem, path in sorted(files.items(), key=lambda kv: _natural(kv[0])):
        m = re.fullmatch(r"(.+?)[_-](ct|image|img)", stem)
        if not m:
            continue
        cid = m.group(1)
        label = next((files[f"{cid}_{s}"] for s in _PAIR_LABEL_SUFFIXES if f"{cid}_{s}" in files), None)
        if label is None:
            label = root / f"{cid}_oars.nii.gz"  # missing: reported when the case is preprocessed
        cases.append(CaseSpec(cid, path, label, dict(names)))
    if not cases:
        raise InputError(f"{root}: no '<case>_ct.nii.gz' image files found (format 'pairs')")
    return cases


def _natural(s: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def _manifest(path: Path, names: dict[int, str]) -> list[CaseSpec]:
    base = path.parent
    try:
        if path.suffix.lower() == ".json":
            rows = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(rows, dict):
                rows = rows.get("cases", [])
        else:
            with path.open(newline="") as fh:
                rows = list(csv.DictReader(fh))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read manifest ({exc})") from None
    cases = []
    for i, row in enumerate(rows):
        try:
            image = base / str(row["image"]).strip()
            label = base / str(row["label"]).strip()
        except (KeyError, TypeError):
            raise InputError(f"{path}: row {i + 1} needs 'image' and 'label' entries") from None
        stem = _strip_ext(image.name)
        cid = str(row.get("case_id") or (stem[0] if stem else image.stem))
        row_names = row.get("names")
        nm = {int(k): str(v) for k, v in row_names.items()} if isinstance(row_names, dict) else dict(names)
        cases.append(CaseSpec(cid, image, label, nm, {}, _norm_split(str(row.get("split") or ""))))
    return cases


def open_dataset(
    path: str | Path,
    format: str = "auto",
    *,
    split: str | None = None,
    catalogue: str = "openkbp",
    names: dict[int, str] | None = None,
) -> list[CaseSpec]:
    """List the cases of a dataset.

    Args:
        path: dataset folder, or a manifest file (``.csv`` / ``.json``).
        format: one of :data:`FORMATS`; ``"auto"`` guesses from the layout.
        split: keep only cases of this split (``"train"``, ``"val"``, ``"test"``); cases
            without split information are kept. None keeps all.
        catalogue: anatomy catalogue naming the label ids of ``pairs``/``manifest`` data.
        names: explicit label id -> name mapping (overrides ``catalogue``).

    Returns:
        The cases, sorted by id (natural order for ``pairs``).

    Raises:
        InputError: the path is missing, or the layout's metadata is unusable.
    """
    root = Path(path)
    if not root.exists():
        raise InputError(f"{root}: dataset path does not exist")
    if format not in FORMATS:
        raise InputError(f"format {format!r}: expected one of {', '.join(FORMATS)}")
    fmt = _detect(root) if format == "auto" else format
    if fmt != "manifest" and not root.is_dir():
        raise InputError(f"{root}: expected a folder for format {fmt!r}")
    if fmt == "totalseg":
        cases = _totalseg(root, split)
    elif fmt == "nnunet":
        cases = _nnunet(root)
    else:
        nm = dict(names) if names else catalogue_names(catalogue)
        cases = _pairs(root, nm) if fmt == "pairs" else _manifest(root, nm)
    if split is not None:
        want = _norm_split(split)
        cases = [c for c in cases if c.split in ("", want)]
    ids = [c.case_id for c in cases]
    if len(set(ids)) != len(ids):
        raise InputError(f"{root}: case ids are not unique")
    log.debug("%s: %d cases (format %s)", root, len(cases), fmt)
    return cases
