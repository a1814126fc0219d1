"""Mapping names and ids between catalogues."""

from __future__ import annotations

import pytest

from ctsam3d.anatomy import get_catalogue, map_ids, map_names
from ctsam3d.errors import InputError

CASES = [
    # src, dst, names, expected
    ("totalseg_v1", "totalseg_v2", ["liver", "lung_upper_lobe_left", "vertebrae_L1"],
     {"liver": "liver", "lung_upper_lobe_left": "lung_upper_lobe_left", "vertebrae_L1": "vertebrae_L1"}),
    ("totalseg_v1", "totalseg_v2",
     ["heart_myocardium", "heart_atrium_left", "heart_ventricle_left", "heart_atrium_right", "heart_ventricle_right"],
     dict.fromkeys(
         ["heart_myocardium", "heart_atrium_left", "heart_ventricle_left", "heart_atrium_right", "heart_ventricle_right"],
         "heart")),
    ("totalseg_v1", "totalseg_v2", ["face", "pulmonary_artery"], {"face": None, "pulmonary_artery": None}),
    ("totalseg_v2", "totalseg_v1", ["heart", "pulmonary_vein", "spinal_cord", "aorta"],
     {"heart": None, "pulmonary_vein": None, "spinal_cord": None, "aorta": "aorta"}),
    ("totalseg_tissue_types", "ctsam3d_107", None,
     {"subcutaneous_fat": "subcutaneous_fat", "torso_fat": "visceral_fat", "skeletal_muscle": "skeletal_muscle"}),
    ("openkbp", "totalseg_v2", None,
     {"brainstem": None, "spinal_cord": "spinal_cord", "parotid_right": None, "parotid_left": None,
      "esophagus": "esophagus", "larynx": None, "mandible": None}),
    ("totalseg_v2", "flare22", ["Kidney Left"], {"kidney_left": "kidney_left"}),
]


@pytest.mark.parametrize("src, dst, names, expected", CASES)
def test_map_names(src, dst, names, expected):
    assert map_names(names, src, dst) == expected


def test_every_flare22_organ_exists_in_every_totalsegmentator_catalogue():
    for dst in ("totalseg_v1", "totalseg_v2", "ctsam3d_107"):
        assert None not in map_names(None, "flare22", dst).values()


def test_v1_to_v2_only_known_differences():
    missing = {k for k, v in map_names(None, "totalseg_v1", "totalseg_v2").items() if v is None}
    assert missing == {"face", "pulmonary_artery"}


def test_map_ids_converts_label_values():
    table = map_ids("totalseg_v2", "totalseg_v1")
    v1, v2 = get_catalogue("totalseg_v1"), get_catalogue("totalseg_v2")
    assert table[v2.id_of("aorta")] == v1.id_of("aorta") == 7
    assert v2.id_of("heart") not in table
    assert map_ids("totalseg_v1", "ctsam3d_107") == {i: i for i in range(1, 105)}
    merged = map_ids("totalseg_v1", "totalseg_v2")
    assert {merged[v1.id_of(n)] for n in ("heart_atrium_left", "heart_myocardium")} == {v2.id_of("heart")}


def test_unknown_source_name():
    with pytest.raises(InputError, match="not in catalogue totalseg_v1"):
        map_names(["heart"], "totalseg_v1", "totalseg_v2")
