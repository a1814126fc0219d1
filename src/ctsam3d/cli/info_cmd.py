"""``ctsam3d info -i FILE_OR_DICOM_DIR``: geometry, HU range and labels of a volume.

The range is called "HU range" only when the values are plausibly CT Hounsfield units
(:mod:`ctsam3d.io.hu_check`); otherwise "value range" and a "not HU:" line with the reason
(JSON: ``"intensity": {"hu_plausible", "kind", "reason"}``).

Prints size, spacing, orientation code ("towards" convention: identity = LPS), direction,
origin (LPS mm), pixel type and HU range; for a label map (integer pixels with few values,
``--label``, or a DICOM-SEG) the labels present with voxel counts and names when known
(the JSON sidecar ``<name>.json``, the SEG's segment labels, or ``--catalogue``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk

NAME = "info"
HELP = "Print geometry, HU range and labels of a volume or DICOM folder"

#: An integer image with at most this many distinct values (all >= 0) is shown as a label map.
MAX_LABELS = 256


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--input", required=True, help="volume file (.nii.gz, .nrrd, .mha, DICOM-SEG) or DICOM folder")
    parser.add_argument("--label", action="store_true", help="treat the input as a label map")
    parser.add_argument("--catalogue", help="name labels from a catalogue (totalseg_v2, totalseg_v1, ctsam3d_107, flare22, openkbp)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


#: Voxels per slab when scanning a volume (bounds the temporary memory of counting to ~0.1 GB).
SLAB_VOXELS = 1 << 23


def _slabs(arr: np.ndarray):
    step = max(1, SLAB_VOXELS // max(1, arr[0].size)) if arr.ndim and arr.shape[0] else 1
    for z in range(0, arr.shape[0], step):
        yield arr[z : z + step]


def _value_range(arr: np.ndarray) -> tuple[float, float]:
    """``(min, max)`` computed slab by slab (no full-size temporary)."""
    if arr.size == 0:
        return 0.0, 0.0
    lo = min(float(b.min()) for b in _slabs(arr))
    hi = max(float(b.max()) for b in _slabs(arr))
    return lo, hi


def _label_counts(arr: np.ndarray, value_range: tuple[float, float] | None = None) -> dict[int, int] | None:
    """``{label: voxels}`` for a non-negative integer array with few values, else None.

    Counted slab by slab: a whole-volume ``bincount`` would make an 8-byte copy of every voxel.
    """
    if not np.issubdtype(arr.dtype, np.integer) or arr.size == 0:
        return None
    lo, hi = value_range if value_range is not None else _value_range(arr)
    lo, hi = int(lo), int(hi)
    if lo < 0 or hi >= 1 << 20:
        return None
    counts = np.zeros(hi + 1, dtype=np.int64)
    for block in _slabs(arr):
        counts += np.bincount(block.ravel(), minlength=hi + 1)
        if np.count_nonzero(counts) > MAX_LABELS:
            return None
    present = np.flatnonzero(counts)
    return {int(i): int(counts[i]) for i in present}


def describe(path: str, *, as_label: bool = False, catalogue: str | None = None) -> dict:
    """Everything ``info`` prints, as a dict (sizes ``(i, j, k)``, mm, LPS)."""
    from ..anatomy import get_catalogue
    from ..geometry import orientation_code
    from ..io import read_sidecar, read_volume
    from ..io import dicom
    from ..io.read import as_label_image

    p = Path(path)
    names: dict[int, str] = {}
    kind = "image"
    if p.is_file() and dicom.is_dicom_file(p) and dicom.modality_of(p) == "SEG":
        from ..io.dicom_seg import read_dicom_seg

        img, names = read_dicom_seg(p)
        kind, as_label = "DICOM-SEG", True
    else:
        img = read_volume(path)
    if dicom.META_DICOM_DIR in img.GetMetaDataKeys():
        kind = "DICOM series"
    arr = sitk.GetArrayViewFromImage(img)
    value_range = _value_range(arr)
    counts = _label_counts(arr, value_range)
    if as_label and counts is None:
        img = as_label_image(img, str(path))
        arr = sitk.GetArrayViewFromImage(img)
        counts = _label_counts(arr)
    info = {
        "file": str(path),
        "kind": kind,
        "size": list(img.GetSize()),
        "spacing": [float(s) for s in img.GetSpacing()],
        "orientation": orientation_code(img),
        "direction": [float(v) for v in img.GetDirection()],
        "origin": [float(v) for v in img.GetOrigin()],
        "pixel_type": img.GetPixelIDTypeAsString(),
        "range": [value_range[0], value_range[1]],
    }
    if counts is not None and (as_label or len(counts) <= MAX_LABELS):
        if not names:
            names = read_sidecar(path) or {} if p.is_file() else {}
        cat = get_catalogue(catalogue) if catalogue else None
        info["labels"] = [
            {
                "id": i,
                "voxels": n,
                "name": names.get(i) or (cat.labels.get(i) if cat else None) or ("background" if i == 0 else None),
            }
            for i, n in counts.items()
        ]
    else:  # an image: is it plausibly CT in HU? (issue 19: any range used to be called "HU range")
        from ..io.hu_check import check_hu

        info["intensity"] = check_hu(img).to_json()
    return info


def _fmt(v: float) -> str:
    return f"{v:.6g}"


def _print_text(info: dict, out) -> None:
    d = np.asarray(info["direction"]).reshape(3, 3)
    rows = ["[" + " ".join(f"{x + 0.0: .4f}".rstrip("0").rstrip(".") for x in r) + "]" for r in d]
    lines = [
        ("file", info["file"]),
        ("kind", ("label map" if info["kind"] == "image" else info["kind"] + " label map")
         if "labels" in info else info["kind"]),
        ("size", " x ".join(str(s) for s in info["size"]) + " voxels (i, j, k)"),
        ("spacing", " x ".join(_fmt(s) for s in info["spacing"]) + " mm"),
        ("orientation", info["orientation"]),
        ("direction", " ".join(rows) + "  (columns: i, j, k axes in LPS)"),
        ("origin", "(" + ", ".join(_fmt(v) for v in info["origin"]) + ") mm LPS"),
        ("pixel type", info["pixel_type"]),
        ("HU range" if info.get("intensity", {}).get("hu_plausible") else "value range",
         f"{_fmt(info['range'][0])} .. {_fmt(info['range'][1])}"),
    ]
    if info.get("intensity") and not info["intensity"]["hu_plausible"]:
        lines.append(("not HU", info["intensity"]["reason"]))
    for k, v in lines:
        print(f"{k + ':':13}{v}", file=out)
    if "labels" in info:
        present = [x for x in info["labels"] if x["id"] != 0]
        print(f"{'labels:':13}{len(present)} present", file=out)
        print(f"  {'id':>5}  {'voxels':>10}  name", file=out)
        for x in info["labels"]:
            print(f"  {x['id']:>5}  {x['voxels']:>10}  {x['name'] or '-'}", file=out)


def run(args: argparse.Namespace) -> int:
    if not getattr(args, "verbose", False):
        sitk.ProcessObject.SetGlobalWarningDisplay(False)
    info = describe(args.input, as_label=args.label, catalogue=args.catalogue)
    try:
        if args.json:
            json.dump(info, sys.stdout, indent=1)
            print()
        else:
            _print_text(info, sys.stdout)
        sys.stdout.flush()
    except BrokenPipeError:
        # the reader went away (``ctsam3d info ... | head``): stop quietly. stdout now points
        # at /dev/null so that Python's own flush at exit does not report the pipe again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 141  # 128 + SIGPIPE, the status of a command stopped by a closed pipe
    return 0
