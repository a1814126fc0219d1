"""Training and inference give the CPP net the same input for the same pair.

One CT on a grid that is both a cached training case and a session's lattice (identity
direction, the model's spacing): patch U at a lattice start, its touching neighbour V drawn by
the training sampler (``cpp_offset``), then

* training: :class:`~ctsam3d.training.step.InteractiveStep` (``parts="cpp"``) on that pair;
* inference: :meth:`~ctsam3d.inference.runner.PatchRunner.cpp` with U and V at their lattice
  starts (``start_v = start_u + cpp_offset``) and U's mask cropped from the label;

and a spy model records what reaches ``model.cpp`` in each case: identical, for a ``"v"`` and an
``"own"`` frame model.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from ctsam3d.data.affine import patch_to_world
from ctsam3d.data.cache import CachedCase, Structure
from ctsam3d.data.heatmap import gaussian_heatmap
from ctsam3d.data.sampler import PatchSampler, SamplerConfig
from ctsam3d.inference.lattice import Lattice
from ctsam3d.inference.patch_cache import FeatureCache
from ctsam3d.inference.runner import PatchRunner, Timer
from ctsam3d.modeling.cpp_frame import to_v_frame
from ctsam3d.modeling.presets import get_preset
from ctsam3d.training.config import LossConfig
from ctsam3d.training.step import InteractiveStep

SPACING, N = 4.0, 16
ORIGIN = (10.0, -20.0, 30.0)
WINDOWS = [(-125.0, 225.0), (-1000.0, 1000.0)]


class SpyModel(torch.nn.Module):
    def __init__(self, frame: str) -> None:
        super().__init__()
        self.config = get_preset("ctsam3d-lite-wb")
        self.config.patch_size, self.config.spacing_mm, self.config.cpp.frame = (N, N, N), SPACING, frame
        self.p = torch.nn.Parameter(torch.zeros(()))
        self.seen: list[tuple[torch.Tensor, ...]] = []

    def encode(self, image):
        return [image]

    def cpp(self, image_u, mask_u, image_v):
        self.seen.append(tuple(t.detach().clone() for t in (image_u, mask_u, image_v)))
        return torch.zeros_like(image_v[:, :1]) + self.p


def _volume():
    """A noisy bent tube (label 1) in a soft-tissue body, 40³ voxels of 4 mm."""
    rng = np.random.default_rng(0)
    z, y, x = np.meshgrid(*(np.arange(40),) * 3, indexing="ij")
    ct = np.full((40, 40, 40), -1024.0)
    ct[2:38, 3:37, 3:37] = 20.0
    tube = (y - 20 - 0.2 * z) ** 2 + (x - 18) ** 2 <= 9
    ct[tube] = 180.0
    ct = (ct + rng.normal(0, 30, ct.shape)).astype(np.int16)
    lab = tube.astype(np.uint8)
    return ct, lab


@pytest.fixture(scope="module")
def pair():
    ct, lab = _volume()
    pts = np.argwhere(lab == 1)
    case = CachedCase("c", ct, lab, (SPACING,) * 3, ORIGIN,
                      {"tube": Structure("tube", 1, int(lab.sum()), (*pts.min(0), *(pts.max(0) + 1)))}, ["tube"], {1: pts})
    cfg = SamplerConfig(cpp=True, cpp_shift=(0.75, 0.75), cpp_directions="touching")
    sampler = PatchSampler([case], (N,) * 3, SPACING, WINDOWS, augment=None, config=cfg)
    start_u = (12, 16, 10)  # z, y, x: the tube leaves U through its +z and -z faces
    center = np.asarray(ORIGIN) + SPACING * (np.asarray(start_u[::-1]) + (N - 1) / 2)
    p2w = patch_to_world(center, SPACING, (N,) * 3)
    vol = sampler.volumes[0]
    target_u = (sampler._sample(vol, p2w, "label") == 1).float()
    image_u = sampler._to_unit(sampler._sample(vol, p2w, "ct"))
    image_v, target_v, ok, off = sampler._neighbour(vol, 1, p2w, np.random.default_rng(1), target_u)
    assert ok and max(abs(v) for v in off) == 12
    pts_v = torch.tensor([[8, 8, 8]])
    batch = {"image": image_u, "target": target_u, "image_v": image_v, "cpp_offset": torch.tensor([off]),
             "cpp_valid": torch.tensor([True]), "heatmap_v": gaussian_heatmap(pts_v, (N,) * 3, 3.0, torch.tensor([True]))}
    img = sitk.GetImageFromArray(ct)
    img.SetSpacing((SPACING,) * 3)
    img.SetOrigin(ORIGIN)
    lab_img = sitk.GetImageFromArray(lab)
    lab_img.CopyInformation(img)
    return batch, img, lab, start_u, off


@pytest.mark.parametrize("frame", ["v", "own"])
def test_training_and_inference_build_the_same_cpp_input(pair, frame):
    batch, img, lab, start_u, off = pair
    # training
    train_model = SpyModel(frame)
    InteractiveStep(train_model, LossConfig(), parts="cpp")(batch, 1, np.random.default_rng(0))
    (t_img_u, t_mask_u, t_img_v), = train_model.seen
    # inference, on the session lattice of the same CT
    inf_model = SpyModel(frame)
    lattice = Lattice.for_image(img, SPACING, N)
    assert np.allclose(lattice.origin_lps, ORIGIN)  # the lattice is the cached case's grid
    runner = PatchRunner(inf_model, img, lattice, FeatureCache(), WINDOWS[0])
    start_v = tuple(u + o for u, o in zip(start_u, off))
    z, y, x = start_u
    mask_u = lab[z : z + N, y : y + N, x : x + N] > 0
    runner.cpp([start_u], [mask_u], [start_v], Timer())
    (i_img_u, i_mask_u, i_img_v), = inf_model.seen
    torch.testing.assert_close(i_mask_u, t_mask_u, atol=0, rtol=0)
    torch.testing.assert_close(i_img_u, t_img_u, atol=1e-5, rtol=0)
    torch.testing.assert_close(i_img_v, t_img_v, atol=1e-5, rtol=0)
    assert t_mask_u.sum() > 0 and t_img_u.shape == (1, 2, N, N, N)
    if frame == "v":  # U's mask in V's grid is V's label on the overlap, zero outside it
        inside = to_v_frame(torch.ones(N, N, N), off) > 0
        vz, vy, vx = start_v
        lab_v = torch.from_numpy(lab[vz : vz + N, vy : vy + N, vx : vx + N].astype(np.float32))
        assert torch.equal(t_mask_u[0, 0][inside], lab_v[inside]) and t_mask_u[0, 0][~inside].sum() == 0
        assert (t_img_u[0][:, ~inside] == 0).all()
