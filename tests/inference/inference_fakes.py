"""Session test helpers: a test-double model and synthetic CTs stored in any orientation.

The test double segments the bright connected component under a positive click (and keeps
the previous mask), so a session's *geometry* (crop, merge, paste, orientation, clicks in
index vs world space) can be checked exactly without trained weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
import torch
from scipy import ndimage




@dataclass
class FakeConfig:
    spacing_mm: float = 1.5
    patch_size: tuple[int, int, int] = (32, 32, 32)
    hu_window: tuple[float, float] = (-125.0, 225.0)


class BrightComponentModel(torch.nn.Module):
    """Model double: mask = bright (> 0.5 after the HU window) components under positive clicks,
    plus the previous mask, minus components under negative clicks. CPP: a peak at the
    innermost bright voxel of the neighbour patch."""

    def __init__(self, config: FakeConfig | None = None):
        super().__init__()
        self.config = config or FakeConfig()
        self.dummy = torch.nn.Parameter(torch.zeros(1))
        self.calls = {"encode": 0, "decode": 0, "cpp": 0}

    def encode(self, image):
        self.calls["encode"] += image.shape[0]
        return [image.clone()]

    def render_prompt(self, pos_zyx, neg_zyx, prev_mask):
        b = len(pos_zyx)
        d, h, w = self.config.patch_size
        out = torch.zeros((b, 3, d, h, w))
        for i in range(b):
            for ch, clicks in ((0, pos_zyx[i]), (1, neg_zyx[i])):
                for z, y, x in clicks:
                    out[i, ch, z, y, x] = 1.0
        if prev_mask is not None:
            out[:, 2:3] = prev_mask
        return out

    def decode(self, features, prompt):
        self.calls["decode"] += prompt.shape[0]
        image = features[0][:, 0].numpy()
        logits = np.full(image.shape, -10.0, np.float32)
        for i in range(image.shape[0]):
            labels, _ = ndimage.label(image[i] > 0.5)
            pos_ids = set(np.unique(labels[prompt[i, 0].numpy() > 0])) - {0}
            neg_ids = set(np.unique(labels[prompt[i, 1].numpy() > 0])) - {0}
            fg = np.isin(labels, list(pos_ids)) | (prompt[i, 2].numpy() > 0.5)
            fg &= ~np.isin(labels, list(neg_ids))
            logits[i][fg] = 10.0
        quality = torch.ones((image.shape[0], 1))
        return torch.from_numpy(logits[:, None]), quality

    def cpp(self, image_u, mask_u, image_v):
        self.calls["cpp"] += image_v.shape[0]
        out = torch.zeros_like(image_v)
        for i in range(image_v.shape[0]):
            bright = image_v[i, 0].numpy() > 0.5
            if bright.any():
                dt = ndimage.distance_transform_edt(bright)
                z, y, x = np.unravel_index(int(np.argmax(dt)), dt.shape)
                out[i, 0, z, y, x] = 1.0
        return out


# direction matrices (columns = LPS unit vectors of index axes i, j, k)
def _rot(axis, deg):
    a = np.deg2rad(deg)
    c, s = np.cos(a), np.sin(a)
    if axis == "z":
        return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


DIRECTIONS = {
    "LPS": np.eye(3),
    "RAS": np.diag([-1.0, -1.0, 1.0]),
    "PLI": np.array([[0, 1, 0], [1, 0, 0], [0, 0, -1]], float),  # i -> P, j -> L, k -> I (OpenKBP)
    "oblique": _rot("z", 25) @ _rot("x", 15),
}


def make_volume(
    direction: str = "LPS",
    *,
    size=(40, 36, 28),
    spacing=(1.3, 1.1, 2.2),
    shapes=(("sphere", (8.0, -6.0, 12.0), 13.0),),
    origin_lps=None,
) -> tuple[sitk.Image, sitk.Image]:
    """(CT, label) with bright shapes at fixed *world* positions, stored in ``direction``.

    ``shapes``: ("sphere", centre LPS, radius mm) or ("cylinder", (x, y, z0, z1), radius mm)
    (a cylinder along the z (S) axis). CT: -100 HU background, 200 HU inside (the window midpoint, 50 HU, is halfway); label: 1 inside.
    The volume is centred on the world origin unless ``origin_lps`` is given.
    """
    m = DIRECTIONS[direction]
    size = np.asarray(size)
    sp = np.asarray(spacing, float)
    if origin_lps is None:
        origin_lps = -(m * sp) @ ((size - 1) / 2.0)
    k, j, i = np.meshgrid(*(np.arange(n) for n in size[::-1]), indexing="ij")
    ijk = np.stack([i, j, k], -1).astype(float)
    lps = ijk @ (m * sp).T + np.asarray(origin_lps)
    inside = np.zeros(tuple(size[::-1]), bool)
    for kind, where, radius in shapes:
        if kind == "sphere":
            inside |= np.linalg.norm(lps - np.asarray(where), axis=-1) <= radius
        else:
            x, y, z0, z1 = where
            r = np.hypot(lps[..., 0] - x, lps[..., 1] - y)
            inside |= (r <= radius) & (lps[..., 2] >= z0) & (lps[..., 2] <= z1)
    ct = sitk.GetImageFromArray(np.where(inside, 200, -100).astype(np.int16))
    lab = sitk.GetImageFromArray(inside.astype(np.uint8))
    for im in (ct, lab):
        im.SetSpacing(tuple(float(v) for v in sp))
        im.SetOrigin(tuple(float(v) for v in origin_lps))
        im.SetDirection(tuple(float(v) for v in m.reshape(-1)))
    return ct, lab


def nearest_index(image: sitk.Image, lps) -> tuple[int, int, int]:
    """Integer ITK index of the voxel nearest to an LPS point."""
    return tuple(int(v) for v in image.TransformPhysicalPointToIndex(tuple(float(x) for x in lps)))


def dice(a: sitk.Image, b: sitk.Image) -> float:
    x = sitk.GetArrayFromImage(a) > 0
    y = sitk.GetArrayFromImage(b) > 0
    s = x.sum() + y.sum()
    return 1.0 if s == 0 else 2.0 * float((x & y).sum()) / float(s)
