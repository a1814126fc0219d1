"""heatmap_peaks: 3³ non-maximum suppression, threshold, ordering, plateaus."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ctsam3d.errors import InputError
from ctsam3d.modeling import heatmap_peaks
from ctsam3d.modeling.prompts import render_click_maps


def _heat(points_values, size=(32, 32, 32)):
    maps, _ = render_click_maps([[p for p, _ in points_values]], [[]], size)
    h = torch.zeros(size)
    for p, v in points_values:
        one, _ = render_click_maps([[p]], [[]], size)
        h = torch.maximum(h, v * one[0, 0])
    return h


@pytest.mark.parametrize(
    "points, threshold, max_peaks, expected",
    [
        ([((5, 5, 5), 0.9), ((20, 20, 20), 0.7)], 0.5, 5, [(5, 5, 5), (20, 20, 20)]),
        ([((5, 5, 5), 0.6), ((20, 20, 20), 0.9)], 0.5, 5, [(20, 20, 20), (5, 5, 5)]),  # strongest first
        ([((5, 5, 5), 0.9), ((20, 20, 20), 0.4)], 0.5, 5, [(5, 5, 5)]),  # threshold
        ([((5, 5, 5), 0.9), ((20, 20, 20), 0.8), ((5, 25, 5), 0.7)], 0.1, 2, [(5, 5, 5), (20, 20, 20)]),
        ([((0, 0, 31), 0.9)], 0.5, 3, [(0, 0, 31)]),  # corner
        ([((5, 5, 5), 0.9)], 0.95, 3, []),
    ],
)
def test_peaks(points, threshold, max_peaks, expected):
    assert heatmap_peaks(_heat(points), threshold, max_peaks) == expected


def test_plateau_gives_one_peak_and_numpy_input():
    h = np.zeros((10, 10, 10), np.float32)
    h[4:6, 4:6, 4:6] = 1.0
    peaks = heatmap_peaks(h, 0.5, 5)
    assert len(peaks) == 1 and all(4 <= c <= 5 for c in peaks[0])


def test_bad_heatmap_shape():
    with pytest.raises(InputError):
        heatmap_peaks(np.zeros((1, 4, 4, 4)), 0.5, 3)
