"""Contrast-phase augmentation: make an unenhanced training patch look contrast-enhanced.

The real torso CT behind the whole-body model and the HU tables its synthetic CT is drawn
from (``hu_stats.json``) are unenhanced (aorta 44 HU, liver 46 HU). Users' chest and abdomen
CTs are mostly contrast-enhanced (the held-out TotalSegmentator DICOM: aorta 151 HU, portal vein
133, liver 93, spleen 80), and a model that never saw enhancement segments only a compact piece
of such a liver from one click (docs/model_card.md, Limitations). This augmentation adds, with
probability ``p_contrast``, a per-structure HU offset to the voxels of a patch's labelled
structures, drawn for one of two phases:

============================ ===================== =====================
structures (catalogue names) arterial (HU added)   portal-venous (HU added)
============================ ===================== =====================
arteries, pulmonary artery   150 – 300             80 – 150
heart                        100 – 250             60 – 130
central veins                0 – 60                80 – 130
portal and splenic vein      20 – 80               90 – 140
kidneys                      80 – 160              100 – 160
spleen                       40 – 90               50 – 80
pancreas                     40 – 90               30 – 60
thyroid                      60 – 120              50 – 100
liver                        5 – 25                40 – 70
adrenal glands               20 – 50               20 – 50
bowel and stomach wall       10 – 40               15 – 40
muscles                      5 – 15                5 – 15
============================ ===================== =====================

(typical enhancement over unenhanced CT; textbook ranges, not fitted to any evaluation case).
One offset is drawn per group and patch, so left and right organs enhance alike. The offset map
is softened by a 3-voxel box filter (the CT is sampled trilinearly, the labels by nearest
neighbour, so a hard step would mark label edges the CT does not have). Structures not named
here, unlabelled tissue, pseudo-structures and head-and-neck organs at risk get nothing.

*Bolus gradient* (``gradient`` > 0): enhancement is not uniform along a vessel or across an
organ — the bolus reaches the aortic arch before the abdominal aorta, a CT angiogram's arch may
be 400 HU above an abdominal aorta of 150 HU, and arterial-phase organs enhance unevenly. With a
gradient ``g`` the patch's offset map is multiplied by ``1 + a · t``, ``a`` drawn uniformly from
``[0, g]`` and ``t`` a linear ramp from −1 to 1 across the patch along a random direction: one
structure then shows a smooth HU trend along it (with ``g = 0.6`` an arterial aorta offset of
300 HU spans 120–480 HU) and the model learns that a structure's HU may drift along it.

Shapes: ``hu`` and ``labels`` ``(1, 1, D, H, W)`` (or ``(D, H, W)``), labels integer ids;
``names`` maps those ids to catalogue names.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["ENHANCEMENT", "group_of", "apply_contrast", "bolus_ramp"]

# group -> ((arterial lo, hi), (portal lo, hi)) HU added
ENHANCEMENT: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "artery": ((150.0, 300.0), (80.0, 150.0)),
    "heart": ((100.0, 250.0), (60.0, 130.0)),
    "vein": ((0.0, 60.0), (80.0, 130.0)),
    "portal_vein": ((20.0, 80.0), (90.0, 140.0)),
    "kidney": ((80.0, 160.0), (100.0, 160.0)),
    "spleen": ((40.0, 90.0), (50.0, 80.0)),
    "pancreas": ((40.0, 90.0), (30.0, 60.0)),
    "thyroid": ((60.0, 120.0), (50.0, 100.0)),
    "liver": ((5.0, 25.0), (40.0, 70.0)),
    "adrenal": ((20.0, 50.0), (20.0, 50.0)),
    "bowel": ((10.0, 40.0), (15.0, 40.0)),
    "muscle": ((5.0, 15.0), (5.0, 15.0)),
}

_EXACT = {
    "aorta": "artery", "pulmonary_artery": "artery", "brachiocephalic_trunk": "artery",
    "heart": "heart", "inferior_vena_cava": "vein", "superior_vena_cava": "vein",
    "portal_vein_and_splenic_vein": "portal_vein", "spleen": "spleen", "pancreas": "pancreas",
    "thyroid_gland": "thyroid", "liver": "liver", "stomach": "bowel", "duodenum": "bowel",
    "small_bowel": "bowel", "colon": "bowel", "esophagus": "bowel",
}
_PREFIX = (
    ("iliac_artery", "artery"), ("subclavian_artery", "artery"), ("common_carotid_artery", "artery"),
    ("heart_", "heart"), ("atrial_appendage", "heart"), ("iliac_vena", "vein"),
    ("brachiocephalic_vein", "vein"), ("pulmonary_vein", "vein"), ("kidney", "kidney"),
    ("adrenal_gland", "adrenal"), ("autochthon", "muscle"), ("iliopsoas", "muscle"),
    ("gluteus", "muscle"),
)


def group_of(name: str) -> str | None:
    """The enhancement group of a catalogue structure name (None: not enhanced)."""
    n = name.lower()
    if n in _EXACT:
        return _EXACT[n]
    for prefix, group in _PREFIX:
        if n.startswith(prefix):
            return group
    return None


def apply_contrast(hu: torch.Tensor, labels: torch.Tensor, names: dict[int, str], p: float,
                   rng: np.random.Generator, gradient: float = 0.0) -> torch.Tensor:
    """With probability ``p``, ``hu`` plus a contrast phase's offsets on its labelled structures.

    ``gradient``: the largest relative bolus gradient (module docstring); 0 draws nothing more, so
    the random stream of a run without it is unchanged. Draws nothing from ``rng`` when ``p <= 0``.
    """
    if p <= 0 or rng.random() >= p:
        return hu
    phase = int(rng.random() < 0.5)  # 0 arterial, 1 portal-venous
    offsets = {g: float(rng.uniform(*ranges[phase])) for g, ranges in ENHANCEMENT.items()}
    present = torch.unique(labels).tolist()
    shape = hu.shape
    lab = labels.reshape(1, 1, *labels.shape[-3:])
    add = torch.zeros(lab.shape, dtype=hu.dtype, device=hu.device)
    for lid in present:
        group = group_of(names.get(int(lid), "")) if lid else None
        if group is not None:
            add = torch.where(lab == lid, torch.as_tensor(offsets[group], dtype=hu.dtype, device=hu.device), add)
    if not bool(add.any()):
        return hu
    if gradient > 0:
        add = add * bolus_ramp(lab.shape[-3:], float(rng.uniform(0.0, gradient)), rng).to(add)
    add = F.avg_pool3d(add, 3, stride=1, padding=1, count_include_pad=False)
    return hu + add.reshape(shape)


def bolus_ramp(shape_dhw, amplitude: float, rng: np.random.Generator) -> torch.Tensor:
    """``1 + amplitude · t`` on a ``(D, H, W)`` grid, ``t`` linear from −1 to 1 across the grid
    along a random unit direction (``(1, 1, D, H, W)`` float32; ``amplitude`` ≤ 1 keeps it ≥ 0)."""
    u = rng.normal(size=3)
    while np.linalg.norm(u) < 1e-6:
        u = rng.normal(size=3)
    u = u / np.linalg.norm(u)
    axes = [torch.linspace(-1.0, 1.0, int(n)) if int(n) > 1 else torch.zeros(1) for n in shape_dhw]
    d, h, w = torch.meshgrid(*axes, indexing="ij")
    proj = float(u[0]) * d + float(u[1]) * h + float(u[2]) * w
    t = proj / float(np.abs(u).sum())  # the grid's corners reach ±1
    return (1.0 + amplitude * t).reshape(1, 1, *t.shape)
