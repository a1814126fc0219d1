"""Region / family of structure names: every catalogue name gets a known region, and the
anatomy is right for the names the model card groups by."""

import pytest

from ctsam3d.anatomy import get_catalogue
from ctsam3d.anatomy.regions import FAMILIES, REGIONS, classify, family_of, region_of


@pytest.mark.parametrize(
    "name, region, family",
    [
        ("liver", "abdomen", "organ"),
        ("Kidney_Left", "abdomen", "organ"),
        ("pancreas", "abdomen", "gland"),
        ("lung_middle_lobe_right", "thorax", "lung"),
        ("heart", "thorax", "organ"),
        ("aorta", "thorax", "vessel"),
        ("inferior_vena_cava", "abdomen", "vessel"),
        ("iliac_artery_left", "pelvis", "vessel"),
        ("rib_left_11", "thorax", "rib"),
        ("costal_cartilages", "thorax", "rib"),
        ("vertebrae_T12", "spine", "vertebra"),
        ("vertebrae_C3", "head and neck", "vertebra"),
        ("sacrum", "pelvis", "vertebra"),
        ("spinal_cord", "spine", "nerve"),
        ("brainstem", "head and neck", "nerve"),
        ("parotid_left", "head and neck", "gland"),
        ("larynx", "head and neck", "airway/GI tube"),
        ("mandible", "head and neck", "bone"),
        ("humerus_right", "upper limb and shoulder", "bone"),
        ("autochthon_left", "spine", "muscle"),
        ("gluteus_maximus_left", "pelvis", "muscle"),
        ("urinary_bladder", "pelvis", "organ"),
        ("something_new", "other", "other"),
    ],
)
def test_classify(name, region, family):
    assert classify(name) == (region, family)
    assert region_of(name) == region and family_of(name) == family


@pytest.mark.parametrize("catalogue", ["openkbp", "totalseg_v2", "flare22", "ctsam3d_107"])
def test_every_catalogue_name_is_placed(catalogue):
    names = list(get_catalogue(catalogue).names)
    placed = [classify(n) for n in names]
    assert all(r in REGIONS and f in FAMILIES for r, f in placed)
    # tissue classes (fat, face, generic muscle) may be "other"; organs must not be
    unplaced = [n for n, (r, _) in zip(names, placed) if r == "other"]
    assert set(unplaced) <= {"skeletal_muscle", "subcutaneous_fat", "visceral_fat"}, unplaced
