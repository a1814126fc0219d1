"""Body region and structure family of a structure name, for per-region figures (model card,
evaluation summaries).

Names are the catalogues' canonical names (:mod:`ctsam3d.anatomy.catalogue`: TotalSegmentator
v2, OpenKBP, FLARE22, ctsam3d_107), lower case with ``_``. The mapping is a short ordered list of
name patterns; the first match wins, so specific patterns come before general ones. A name no
pattern matches is ``("other", "other")``: a new catalogue shows up in the tables as "other"
instead of failing.

Regions: ``head and neck``, ``thorax``, ``abdomen``, ``pelvis``, ``spine`` (vertebrae, sacrum,
spinal cord and the back muscles along it, which cross every region), ``upper limb and
shoulder``. Families: ``organ``, ``lung``, ``vessel``, ``bone``, ``rib`` (ribs and costal
cartilage: thin, curved, many), ``vertebra``, ``muscle``, ``nerve`` (brainstem, spinal cord),
``airway/GI tube``, ``gland``, ``other``.
"""

from __future__ import annotations

import re

__all__ = ["REGIONS", "FAMILIES", "region_of", "family_of", "classify"]

REGIONS = ("head and neck", "thorax", "abdomen", "pelvis", "spine", "upper limb and shoulder", "other")
FAMILIES = ("organ", "lung", "vessel", "bone", "rib", "vertebra", "muscle", "nerve", "airway/GI tube", "gland", "other")

# (pattern, region, family); first match wins.
_RULES: tuple[tuple[str, str, str], ...] = (
    (r"^(brainstem|brain_stem)$", "head and neck", "nerve"),
    (r"^spinal_cord$", "spine", "nerve"),
    (r"^(brain|skull|face|mandible|eye.*|lens.*|optic.*|cochlea.*)$", "head and neck", "bone"),
    (r"^(parotid.*|submandibular.*|thyroid.*)$", "head and neck", "gland"),
    (r"^(larynx|pharynx.*|oral_cavity|lips)$", "head and neck", "airway/GI tube"),
    (r"^vertebrae_c\d+$", "head and neck", "vertebra"),
    (r"^vertebrae_[tl]\d+$", "spine", "vertebra"),
    (r"^(vertebrae_s1|sacrum)$", "pelvis", "vertebra"),
    (r"^autochthon_.*$", "spine", "muscle"),
    (r"^(common_carotid_artery_.*|subclavian_artery_.*|brachiocephalic_.*)$", "thorax", "vessel"),
    (r"^(aorta|pulmonary_artery|pulmonary_vein|superior_vena_cava|atrial_appendage_.*)$", "thorax", "vessel"),
    (r"^(inferior_vena_cava|portal_vein_and_splenic_vein)$", "abdomen", "vessel"),
    (r"^iliac_(artery|vena)_.*$", "pelvis", "vessel"),
    (r"^heart.*$", "thorax", "organ"),
    (r"^lung_.*$", "thorax", "lung"),
    (r"^(esophagus|trachea)$", "thorax", "airway/GI tube"),
    (r"^(rib_.*|costal_cartilages?|sternum)$", "thorax", "rib"),
    (r"^(humerus_.*|scapula_.*|clavicula_.*)$", "upper limb and shoulder", "bone"),
    (r"^(femur_.*|hip_.*)$", "pelvis", "bone"),
    (r"^(gluteus_.*|iliopsoas_.*)$", "pelvis", "muscle"),
    (r"^(urinary_bladder|prostate|rectum)$", "pelvis", "organ"),
    (r"^adrenal_gland_.*$", "abdomen", "gland"),
    (r"^(pancreas)$", "abdomen", "gland"),
    (r"^(stomach|duodenum|small_bowel|colon)$", "abdomen", "airway/GI tube"),
    (r"^(spleen|liver|gallbladder|kidney_.*)$", "abdomen", "organ"),
    (r"^(skeletal_muscle)$", "other", "muscle"),
)
_COMPILED = tuple((re.compile(p), r, f) for p, r, f in _RULES)


def classify(name: str) -> tuple[str, str]:
    """``(region, family)`` of a structure name (case-insensitive); ``("other", "other")`` when
    no rule matches."""
    key = str(name).strip().lower().replace(" ", "_").replace("-", "_")
    for pattern, region, family in _COMPILED:
        if pattern.match(key):
            return region, family
    return "other", "other"


def region_of(name: str) -> str:
    """Body region of a structure name (one of :data:`REGIONS`)."""
    return classify(name)[0]


def family_of(name: str) -> str:
    """Structure family of a structure name (one of :data:`FAMILIES`)."""
    return classify(name)[1]
