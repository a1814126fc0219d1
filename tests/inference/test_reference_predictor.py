"""ReferencePredictor: the released viewer's click rules, with a recording test double.

(The golden agreement of the whole path is tests/inference/test_reference_pipeline.py.)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from ctsam3d.errors import InputError
from ctsam3d.geometry.reference_grid import ReferenceGrid, normalize_reference, sample_reference_block
from ctsam3d.inference.reference_predictor import ReferencePredictor


@dataclass
class _Config:
    spacing_mm: float = 1.5
    patch_size: tuple[int, int, int] = (16, 16, 16)
    hu_window: tuple[float, float] = (-125.0, 225.0)
    reference_exact: bool = True


class _Recorder(torch.nn.Module):
    """Returns sigmoid(logit) = 0.3 + 0.4 * (positive map): an unthresholded previous mask shows."""

    def __init__(self):
        super().__init__()
        self.config = _Config()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.prompts, self.images = [], []

    def encode(self, image):
        self.images.append(image.clone())
        return [image]

    def render_prompt(self, pos, neg, prev):
        out = torch.zeros((1, 3, *self.config.patch_size))
        for ch, clicks in ((0, pos[0]), (1, neg[0])):
            for z, y, x in clicks:
                out[0, ch, z, y, x] = 1.0
        if prev is not None:
            out[:, 2:] = prev
        self.prompts.append((list(pos[0]), list(neg[0]), None if prev is None else prev.clone()))
        return out

    def decode(self, feats, prompt):
        p = 0.3 + 0.4 * prompt[:, :1]
        return torch.logit(p), torch.full((1, 1), -0.25)


def _ct():
    arr = np.random.default_rng(0).integers(-300, 300, (20, 30, 40)).astype(np.int16)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((2.0, 2.0, 2.5))
    img.SetOrigin((-10.0, 5.0, 30.0))
    img.SetDirection((1, 0, 0, 0, -1, 0, 0, 0, 1))
    return img


def test_needs_a_reference_exact_model():
    m = _Recorder()
    m.config.reference_exact = False
    with pytest.raises(InputError, match="reference-exact"):
        ReferencePredictor(m)


def test_viewer_rules(caplog):
    m, ct = _Recorder(), _ct()
    pred = ReferencePredictor(m)
    pred.set_image(ct)
    grid = ReferenceGrid.of(ct, 1.5)
    centre = np.asarray(grid.block_origin((7, 9, 11)))  # RAI voxel (z, y, x) = (7, 9, 11)
    with caplog.at_level(logging.WARNING):
        step = pred.add_click(centre + 0.2, positive=False)  # negative first click -> positive
    assert "recorded as positive" in caplog.text
    assert step.positive and step.recentred and step.voxel_zyx == (8, 8, 8)  # on voxel size // 2
    np.testing.assert_array_equal(  # the snapped patch: an exact int16 block copy, normalised as released
        m.images[-1][0, 0].numpy(),
        normalize_reference(sample_reference_block(ct, grid, (-1, 1, 3), (16, 16, 16)), (-125, 225)))
    assert m.prompts[-1][2] is None and step.quality == -0.25  # zeros before the first click; raw quality

    step = pred.add_click(centre + np.array([3.0, 0.0, 0.0]), positive=False)  # x + 2 voxels
    assert step.voxel_zyx == (8, 8, 10) and not step.recentred
    pos, neg, prev = m.prompts[-1]
    assert pos == [(8, 8, 8)] and neg == [(8, 8, 10)]
    assert float(prev.min()) == pytest.approx(0.3) and float(prev.max()) == pytest.approx(0.7)  # unthresholded

    n = len(m.prompts)
    step = pred.add_click(centre + np.array([0.0, 0.0, 30.0]), positive=False)  # 20 voxels up: outside
    assert step.ignored and len(m.prompts) == n  # a negative click outside is ignored

    far = centre + np.array([0.0, 30.0, 0.0])
    step = pred.add_click(far, positive=True)  # positive outside: new patch centred on it
    assert step.recentred and step.voxel_zyx == (8, 8, 8)
    pos, neg, prev = m.prompts[-1]
    assert pos == [(8, 8, 8)] and neg == [] and prev is None  # earlier clicks and previous mask dropped
    assert np.allclose(step.patch.index_to_world((8, 8, 8)), far, atol=0.75 + 1e-6)


def test_off_grid_patch_reinterpolates():
    m, ct = _Recorder(), _ct()
    pred = ReferencePredictor(m)
    pred.set_image(ct)
    grid = ReferenceGrid.of(ct, 1.5)
    centre = np.asarray(grid.block_origin((7, 9, 11))) + 0.4
    snapped = pred.set_patch(centre)
    off = pred.set_patch(centre, snap=False)
    assert np.allclose(np.subtract(off.origin_lps, snapped.origin_lps), 0.4, atol=1e-4)
    assert pred.input.dtype == np.float32
