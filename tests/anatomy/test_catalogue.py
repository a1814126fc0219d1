"""Shipped catalogues: sizes, ids, lookups and errors."""

from __future__ import annotations

import json

import pytest

from ctsam3d.anatomy import get_catalogue, list_catalogues
from ctsam3d.errors import InputError

SIZES = {
    "totalseg_v2": 117,
    "totalseg_v1": 104,
    "ctsam3d_107": 107,
    "flare22": 13,
    "openkbp": 7,
    "totalseg_tissue_types": 3,
}


@pytest.mark.parametrize("name, size", SIZES.items())
def test_sizes_and_contiguous_ids(name, size):
    cat = get_catalogue(name)
    assert len(cat) == size
    assert sorted(cat.labels) == list(range(1, size + 1))
    assert len(set(cat.names)) == size


def test_all_catalogues_listed():
    assert set(list_catalogues()) == set(SIZES)


@pytest.mark.parametrize(
    "catalogue, name, label_id",
    [
        ("totalseg_v2", "liver", 5),
        ("totalseg_v2", "costal_cartilages", 117),
        ("totalseg_v2", "vertebrae_S1", 26),
        ("totalseg_v1", "liver", 5),
        ("totalseg_v1", "aorta", 7),
        ("totalseg_v1", "face", 93),
        ("ctsam3d_107", "skeletal_muscle", 105),
        ("ctsam3d_107", "subcutaneous_fat", 106),
        ("ctsam3d_107", "visceral_fat", 107),
        ("flare22", "liver", 1),
        ("flare22", "kidney_left", 13),
        ("openkbp", "brainstem", 1),
        ("openkbp", "mandible", 7),
    ],
)
def test_known_ids(catalogue, name, label_id):
    cat = get_catalogue(catalogue)
    assert cat.id_of(name) == label_id
    assert cat.name_of(label_id) == name


def test_ctsam3d_is_v1_plus_three_tissues():
    v1, c = get_catalogue("totalseg_v1"), get_catalogue("ctsam3d_107")
    assert {i: c.labels[i] for i in v1.labels} == v1.labels


def test_lookup_is_case_and_space_insensitive():
    cat = get_catalogue("totalseg_v2")
    assert cat.id_of("Kidney Left") == cat.id_of("kidney_left") == cat.id_of("KIDNEY-LEFT")
    assert cat.canonical("vertebrae l1") == "vertebrae_L1"
    assert "Liver" in cat and "livr" not in cat


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda: get_catalogue("totalseg_v2").id_of("livr"), "did you mean liver"),
        (lambda: get_catalogue("openkbp").id_of("pancreas"), "not in catalogue openkbp"),
        (lambda: get_catalogue("flare22").name_of(14), "label id 14"),
        (lambda: get_catalogue("totalseg_v3"), "unknown catalogue"),
    ],
    ids=["typo", "absent", "bad id", "bad catalogue"],
)
def test_clear_errors(call, words):
    with pytest.raises(InputError, match=words) as info:
        call()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("alias, name", [("total", "totalseg_v2"), ("V1", "totalseg_v1"), ("CT-SAM3D", "ctsam3d_107"), ("FLARE", "flare22")])
def test_aliases(alias, name):
    assert get_catalogue(alias).name == name


@pytest.mark.parametrize("ours, key", [("totalseg_v2", "total"), ("totalseg_v1", "total_v1"), ("totalseg_tissue_types", "tissue_types")])
def test_ids_match_totalsegmentator_class_map(shared_data, ours, key):
    class_map = json.loads((shared_data / "totalseg_examples" / "totalseg_class_map.json").read_text())
    assert get_catalogue(ours).labels == {int(k): v for k, v in class_map[key].items()}
