"""Tiny synthetic CT datasets in every supported layout (written with SimpleITK).

A case is a small CT (default 20×24×28 voxels [z, y, x], anisotropic spacing, stored
P, L, I like OpenKBP unless ``direction="identity"``) with a body of 0 HU surrounded by air
(-1024 HU), a sphere (label 1, +80 HU) and a box (label 2, -60 HU).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

PLI = (0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, -1.0)  # i -> P, j -> L, k -> I (OpenKBP)
IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def make_case(seed: int = 0, shape_zyx=(20, 24, 28), spacing_xyz=(2.5, 3.0, 2.0), direction=PLI, labels=(1, 2)):
    """(ct, label) SimpleITK images on the same grid; ``labels`` selects which structures exist."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.arange(n) for n in shape_zyx], indexing="ij")
    ct = np.full(shape_zyx, -1024, np.int16)
    body = (z >= 1) & (z < shape_zyx[0] - 1) & (y >= 2) & (y < shape_zyx[1] - 2) & (x >= 2) & (x < shape_zyx[2] - 2)
    ct[body] = 0
    lab = np.zeros(shape_zyx, np.uint8)
    c = np.array(shape_zyx) // 2 + rng.integers(-2, 3, 3)
    if 1 in labels:
        sphere = ((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) <= 16
        ct[sphere] = 80
        lab[sphere] = 1
    if 2 in labels:
        box = (z >= 3) & (z < 7) & (y >= 4) & (y < 9) & (x >= 4) & (x < 10)
        ct[box] = -60
        lab[box] = 2
    ct = (ct + rng.normal(0, 5, shape_zyx) * body).astype(np.int16)
    out = []
    for arr in (ct, lab):
        img = sitk.GetImageFromArray(arr)
        img.SetSpacing(spacing_xyz)
        img.SetDirection(direction)
        img.SetOrigin((10.0, -20.0, 30.0))
        out.append(img)
    return out[0], out[1]


def write_pairs(root: Path, n: int = 3, **kw) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        ct, lab = make_case(seed=i, **kw)
        sitk.WriteImage(ct, str(root / f"pt_{i + 1}_ct.nii.gz"))
        sitk.WriteImage(lab, str(root / f"pt_{i + 1}_oars.nii.gz"))
    return root


def write_totalseg(root: Path) -> Path:
    names = {1: "liver", 2: "spleen"}
    for i, sid in enumerate(("s0001", "s0002")):
        ct, lab = make_case(seed=i)
        d = root / sid / "segmentations"
        d.mkdir(parents=True)
        sitk.WriteImage(ct, str(root / sid / "ct.nii.gz"))
        arr = sitk.GetArrayFromImage(lab)
        for lid, name in names.items():
            m = sitk.GetImageFromArray((arr == lid).astype(np.uint8))
            m.CopyInformation(lab)
            sitk.WriteImage(m, str(d / f"{name}.nii.gz"))
    (root / "meta.csv").write_text("image_id;split;age\ns0001;train;50\ns0002;val;60\n")
    return root


def write_nnunet(root: Path) -> Path:
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    for i, cid in enumerate(("case_001", "case_002")):
        ct, lab = make_case(seed=i)
        sitk.WriteImage(ct, str(root / "imagesTr" / f"{cid}_0000.nii.gz"))
        sitk.WriteImage(lab, str(root / "labelsTr" / f"{cid}.nii.gz"))
    meta = {
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, "liver": 1, "spleen": 2},
        "numTraining": 2,
        "file_ending": ".nii.gz",
    }
    (root / "dataset.json").write_text(json.dumps(meta))
    return root


def write_manifest(root: Path, kind: str = "csv") -> Path:
    data = root / "files"
    data.mkdir(parents=True)
    rows = []
    for i in range(2):
        ct, lab = make_case(seed=i)
        sitk.WriteImage(ct, str(data / f"img{i}.nii.gz"))
        sitk.WriteImage(lab, str(data / f"lab{i}.nii.gz"))
        rows.append({"case_id": f"m{i}", "image": f"files/img{i}.nii.gz", "label": f"files/lab{i}.nii.gz"})
    if kind == "csv":
        path = root / "manifest.csv"
        path.write_text("case_id,image,label\n" + "".join(f"{r['case_id']},{r['image']},{r['label']}\n" for r in rows))
    else:
        path = root / "manifest.json"
        for r in rows:
            r["names"] = {"1": "liver", "2": "spleen"}
        path.write_text(json.dumps(rows))
    return path
