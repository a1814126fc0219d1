"""Deepest points and Gaussian heatmaps (CPP targets, GPU click simulation)."""

from __future__ import annotations

import torch

from ctsam3d.data.heatmap import _closest_to_centroid, _deepest_set, deepest_points, gaussian_heatmap


def _masks():
    m = torch.zeros(3, 1, 20, 20, 20)
    m[0, 0, 2:12, 3:9, 4:18] = 1  # box: depth 3 (6 voxels thick)
    zz, yy, xx = torch.meshgrid(*[torch.arange(20)] * 3, indexing="ij")
    m[1, 0] = (((zz - 10) ** 2 + (yy - 9) ** 2 + (xx - 11) ** 2) <= 25).float()  # ball r=5
    return m  # item 2 empty


def test_deepest_points_box_ball_and_empty():
    pts, depth = deepest_points(_masks())
    assert depth.tolist() == [3, 3, 0]  # chessboard erosion: a ball of radius 5 survives 3 passes
    z, y, x = pts[0].tolist()
    assert 4 <= z <= 9 and 5 <= y <= 6 and 6 <= x <= 15
    assert pts[1].tolist() == [10, 9, 11]
    assert pts[2].tolist() == [0, 0, 0]


def test_batched_path_equals_cropped_path():
    """The batched erosion used on GPUs gives the same points as the per-item CPU path."""
    m = _masks()
    last, depth = _deepest_set(m, 10)
    pts = _closest_to_centroid(last)
    cpu_pts, cpu_depth = deepest_points(m)
    assert depth.tolist() == cpu_depth.tolist()
    assert pts[:2].tolist() == cpu_pts[:2].tolist()


def test_gaussian_heatmap_peaks_at_the_point():
    hm = gaussian_heatmap(torch.tensor([[3, 4, 5], [0, 0, 0]]), (8, 9, 10), 2.0, torch.tensor([True, False]))
    assert hm.shape == (2, 1, 8, 9, 10)
    assert hm[0, 0, 3, 4, 5] == 1.0 and hm[0].argmax().item() == (3 * 9 + 4) * 10 + 5
    assert hm[1].abs().max() == 0
