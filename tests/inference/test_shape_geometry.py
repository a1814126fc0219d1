"""Geometry of 2D boxes, lassos and scribbles on the input grid (ctsam3d.inference.shapes)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk
from inference_fakes import make_volume

from ctsam3d.errors import ClickError
from ctsam3d.inference.shapes import (
    box2d_shape, densify_polyline, lasso_shape, parse_axis, region_clicks, slice_of_points,
)


@pytest.fixture
def ct():
    return make_volume("LPS", size=(40, 36, 28))[0]


def test_box2d_axial_inside_inclusive(ct):
    s = box2d_shape((5, 7, 10), (12, 3, 10), ct)
    assert (s.axis, s.index) == (2, 10)
    assert s.inside.shape == (36, 40)  # [j, i]
    rows, cols = np.nonzero(s.inside)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (3, 7, 5, 12)


@pytest.mark.parametrize("axis,a,b,shape,box", [
    (0, (4, 2, 3), (4, 9, 20), (28, 36), (3, 20, 2, 9)),  # sagittal: raster [k, j]
    (1, (2, 6, 3), (30, 6, 20), (28, 40), (3, 20, 2, 30)),  # coronal: raster [k, i]
])
def test_box2d_other_axes(ct, axis, a, b, shape, box):
    s = box2d_shape(a, b, ct)
    assert s.axis == axis and s.inside.shape == shape
    rows, cols = np.nonzero(s.inside)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == box


def test_world_points_same_as_index(ct):
    a, b = (5, 7, 10), (12, 3, 10)
    wa = ct.TransformIndexToPhysicalPoint(a)
    wb = ct.TransformIndexToPhysicalPoint(b)
    assert np.array_equal(box2d_shape(wa, wb, ct, "world").inside, box2d_shape(a, b, ct).inside)
    pts = [(5, 5, 9), (20, 6, 9), (14, 25, 9)]
    ras = [(-x, -y, z) for x, y, z in (ct.TransformIndexToPhysicalPoint(p) for p in pts)]
    assert np.array_equal(lasso_shape(ras, ct, "ras").inside, lasso_shape(pts, ct).inside)


def test_lasso_triangle_inside_and_contour(ct):
    s = lasso_shape([(5, 5, 9), (25, 5, 9), (5, 25, 9)], ct)
    assert (s.axis, s.index) == (2, 9)
    m = s.inside
    assert m[10, 10] and m[5, 5] and m[5, 25] and m[25, 5]  # inside, vertices ([j, i])
    assert not m[20, 20] and not m[4, 4]
    # area close to the triangle's (200 voxels) plus its contour
    assert 200 <= m.sum() <= 200 + 3 * 25


def test_axis_argument_disambiguates(ct):
    # the two corners share both j and k: a 1-voxel-high box on slice k=4 or j=6
    with pytest.raises(ClickError, match="several axes"):
        box2d_shape((2, 6, 4), (9, 6, 4), ct)
    s = box2d_shape((2, 6, 4), (9, 6, 4), ct, axis="k")
    assert (s.axis, s.index, int(s.inside.sum())) == (2, 4, 8)


@pytest.mark.parametrize("call,match", [
    (lambda ct: box2d_shape((1, 2, 3), (5, 6, 7), ct), "do not lie on one slice"),
    (lambda ct: box2d_shape((1, 2, 3), (5, 6, 3), ct, axis="i"), "not on one slice of axis i"),
    (lambda ct: box2d_shape((1, 2, 3), (50, 6, 3), ct), r"2D box point 2 .* outside the image"),
    (lambda ct: box2d_shape((1, 2, 3), (math.nan, 6, 3), ct), "finite"),
    (lambda ct: box2d_shape((1, 2, 3), (5, 6, 3), ct, axis=5), "axis must be"),
    (lambda ct: lasso_shape([(1, 2, 3), (5, 6, 3)], ct), "at least 3"),
    (lambda ct: lasso_shape([(1, 1, 3), (5, 5, 3), (9, 9, 3)], ct), "no area"),
    (lambda ct: lasso_shape("abc", ct), "list of points"),
    (lambda ct: lasso_shape([(1, 1, 3), (5, 5), (9, 1, 3)], ct), "three numbers"),
])
def test_bad_shapes_one_line(ct, call, match):
    with pytest.raises(ClickError, match=match) as e:
        call(ct)
    assert "\n" not in str(e.value)


def test_parse_axis_and_slice_of_points(ct):
    assert [parse_axis(a, "x") for a in (None, 0, "J", "k")] == [None, 0, 1, 2]
    assert slice_of_points(np.array([[1.2, 3, 4.4], [7, 5.4, 3.6]]), ct, None, "x") == (2, 4)


def test_densify_polyline_steps_and_keeps_vertices():
    pts = densify_polyline(np.array([[0, 0, 0], [10, 0, 0], [10, 3, 0]], float), 2.0)
    assert np.allclose(pts[0], 0) and any(np.allclose(p, [10, 0, 0]) for p in pts) and np.allclose(pts[-1], [10, 3, 0])
    assert np.all(np.linalg.norm(np.diff(pts, axis=0), axis=1) <= 2.0 + 1e-9)
    assert len(densify_polyline(np.array([[1.0, 2, 3]]), 2.0)) == 1


def test_region_clicks_round_one_long_several():
    disc = np.hypot(*np.indices((41, 41)) - 20) <= 15
    assert region_clicks(disc, (1, 1)) == [(20, 20)]
    bar = np.zeros((20, 120), bool)
    bar[5:15, 5:115] = True
    clicks = region_clicks(bar, (1, 1), max_clicks=3)
    assert len(clicks) == 3 and all(bar[c] for c in clicks)
    cols = sorted(c[1] for c in clicks)
    assert cols[1] - cols[0] >= 10 and cols[2] - cols[1] >= 10
    # anisotropic spacing: distances in mm
    assert region_clicks(bar, (1, 1), max_clicks=1) == region_clicks(bar, (1, 1.0), max_clicks=1)
    assert region_clicks(np.zeros((4, 4), bool), (1, 1)) == []


@pytest.mark.parametrize("direction, plane, itk_axis", [
    ("LPS", "axial", 2), ("LPS", "coronal", 1), ("LPS", "sagittal", 0),
    ("PLI", "axial", 2), ("PLI", "coronal", 0), ("PLI", "sagittal", 1),  # OpenKBP's storage
])
def test_axis_as_an_anatomical_plane(direction, plane, itk_axis):
    ct = make_volume(direction, size=(40, 36, 28))[0]
    assert parse_axis(plane, "x", ct) == itk_axis
    # a 1-voxel-wide box lies on two slices; the plane name says which one is meant
    corners = [[4, 6, 5], [4, 6, 5]]
    corners[1][[a for a in range(3) if a != itk_axis][0]] += 8
    s = box2d_shape(corners[0], corners[1], ct, axis=plane)
    assert s.axis == itk_axis and s.index == corners[0][itk_axis]


def test_plane_names_need_the_image(ct):
    with pytest.raises(ClickError, match="axis must be"):
        parse_axis("sagittal", "x")
    with pytest.raises(ClickError, match="'sagittal'"):
        parse_axis("transverse", "x", ct)
