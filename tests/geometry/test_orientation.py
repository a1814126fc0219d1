"""Orientation codes in the "towards" convention."""

from __future__ import annotations

from itertools import permutations, product

import numpy as np
import pytest
import SimpleITK as sitk

from ctsam3d.geometry import direction_from_code, orientation_code, orientation_from_direction

from geometry_helpers import make_image, rotation

ALL_CODES = [
    "".join(letters)
    for perm in permutations(range(3))
    for signs in product((0, 1), repeat=3)
    for letters in [[("LPS", "RAI")[s][a] for a, s in zip(perm, signs)]]
]


@pytest.mark.parametrize(
    "direction, code",
    [
        ((1, 0, 0, 0, 1, 0, 0, 0, 1), "LPS"),
        ((-1, 0, 0, 0, -1, 0, 0, 0, 1), "RAS"),
        ((0, 1, 0, 1, 0, 0, 0, 0, -1), "PLI"),  # OpenKBP storage
        ((1, 0, 0, 0, 0, 1, 0, -1, 0), "LIP"),
    ],
)
def test_known_codes(direction, code):
    assert orientation_from_direction(direction) == code


def test_all_48_codes_round_trip_and_agree_with_simpleitk():
    assert len(set(ALL_CODES)) == 48
    for code in ALL_CODES:
        d = direction_from_code(code)
        assert orientation_from_direction(d) == code
        assert sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(d) == code


def test_oblique_gets_closest_code():
    base = np.asarray(direction_from_code("PLI")).reshape(3, 3)
    tilted = rotation((1.0, 1.0, 0.2), 20.0) @ base
    img = make_image(np.zeros((3, 3, 3), np.int16), (1, 1, 1), tilted)
    assert orientation_code(img) == "PLI"


@pytest.mark.parametrize("bad", ["LP", "LPX", "LLS"])
def test_bad_code(bad):
    with pytest.raises(ValueError):
        direction_from_code(bad)


@pytest.mark.parametrize(
    "code, axial, coronal, sagittal",
    [
        ("LPS", 0, 1, 2),  # DICOM order: k superior, j posterior, i left
        ("RAS", 0, 1, 2),  # NIfTI order: the same planes, flipped signs
        ("PLI", 0, 2, 1),  # OpenKBP: i posterior, j left, k inferior
        ("LSP", 1, 0, 2),  # a coronal acquisition: slices (k) along posterior
        ("ASL", 1, 2, 0),  # a sagittal acquisition: slices (k) along left
    ],
)
def test_array_axis_of_each_plane(code, axial, coronal, sagittal):
    from ctsam3d.geometry import array_axis_of_plane

    d = direction_from_code(code)
    assert [array_axis_of_plane(d, p) for p in ("axial", "coronal", "sagittal")] == [axial, coronal, sagittal]


def test_array_axis_of_plane_oblique_and_bad_name():
    from ctsam3d.geometry import array_axis_of_plane

    a = np.deg2rad(20)  # LPS rotated 20 degrees about the superior axis: still closest to LPS
    d = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]).ravel()
    assert array_axis_of_plane(d, "sagittal") == 2 and array_axis_of_plane(d, "axial") == 0
    with pytest.raises(ValueError, match="plane must be one of"):
        array_axis_of_plane(d, "transverse")
