"""Left-right mirror averaging in PatchRunner (Session(mirror=...)): what it computes, when it
is on, and that the feature cache keeps both encodings."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from inference_fakes import BrightComponentModel

from ctsam3d.examples import example_case
from ctsam3d.geometry import normalize_windows
from ctsam3d.inference.lattice import Lattice
from ctsam3d.inference.patch_cache import FeatureCache
from ctsam3d.inference.runner import PatchRunner, Timer
from ctsam3d.inference.session import Session


@pytest.fixture(scope="module")
def lite():
    from ctsam3d.modeling import load_model

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_model("ctsam3d-lite").eval()


@pytest.fixture(scope="module")
def ct():
    return sitk.ReadImage(str(example_case().ct))


def _runner(model, ct, mirror):
    lattice = Lattice.for_image(ct, model.config.spacing_mm, tuple(model.config.patch_size))
    return PatchRunner(model, ct, lattice, FeatureCache(4), tuple(model.config.hu_window), mirror=mirror)


def test_mirror_is_the_mean_logit_of_the_patch_and_its_mirror(lite, ct):
    """Computed by hand from the model's encode/decode: decode(x, prompt) and
    decode(flip(x), flip(prompt)) flipped back, averaged as logits."""
    plain, mirrored = _runner(lite, ct, False), _runner(lite, ct, True)
    start = plain.lattice.patch_start_around((20, 40, 40))
    d, h, w = plain.lattice.patch_size
    pos, neg = [(d // 2, h // 2, w // 3)], [(d // 2, h // 3, w // 2)]
    prev = np.zeros((d, h, w), np.float32)
    prev[d // 2 - 3 : d // 2 + 3, h // 2 - 5 : h // 2 + 2, w // 3 - 4 : w // 3 + 6] = 0.8
    p0, _ = plain.segment([start], [pos], [neg], [prev], Timer())
    p1, q1 = mirrored.segment([start], [pos], [neg], [prev], Timer())

    with torch.inference_mode():
        x = torch.from_numpy(normalize_windows(plain.crop(start), plain.windows))[None]
        prompt = lite.render_prompt([pos], [neg], torch.from_numpy(prev)[None, None])
        la, qa = lite.decode(lite.encode(x), prompt)
        lb, qb = lite.decode(lite.encode(x.flip(-1)), prompt.flip(-1))
        expect = torch.sigmoid(0.5 * (la + lb.flip(-1)))[0, 0].numpy()
    np.testing.assert_allclose(p1[0], expect, atol=2e-5)
    np.testing.assert_allclose(p0[0], torch.sigmoid(la)[0, 0].numpy(), atol=2e-5)
    assert q1[0] == pytest.approx(0.5 * float(qa[0, 0] + qb[0, 0]), abs=1e-5)
    assert not np.allclose(p0[0], p1[0], atol=1e-3)  # random weights are not mirror-symmetric


def test_mirror_of_a_mirror_symmetric_case_is_the_plain_decode():
    """A model that is itself mirror-equivariant (the test double) gives the same mask with
    and without mirror averaging: the averaging flips clicks, previous mask and image together."""
    img = np.full((40, 40, 40), -1000, np.int16)
    img[10:30, 12:28, 5:18] = 200  # a bright block, off the patch's x centre
    ct = sitk.GetImageFromArray(img)
    ct.SetSpacing((1.5, 1.5, 1.5))
    masks = []
    for mirror in (False, True):
        s = Session(BrightComponentModel(), expansion=False, refine=False, mirror=mirror)
        s.set_image(ct)
        s.add_click((10, 20, 20))  # (i, j, k): inside the block
        masks.append(sitk.GetArrayFromImage(s.result()))
    assert masks[0].sum() > 0
    np.testing.assert_array_equal(masks[0], masks[1])


def test_cache_entry_without_mirror_features_is_encoded_again(lite, ct):
    plain = _runner(lite, ct, False)
    start = plain.lattice.patch_start_around((20, 40, 40))
    plain.encode([start], Timer())
    assert plain.cache.get(start).mirrored is None
    mirrored = PatchRunner(lite, ct, plain.lattice, plain.cache, plain.hu_window, mirror=True)
    mirrored.encode([start], Timer())
    item = plain.cache.get(start)
    assert item.mirrored is not None and len(item.mirrored) == len(item.features)
    assert mirrored.counts["encoded"] == 1
    mirrored.encode([start], Timer())  # now a hit
    assert mirrored.counts["encoded"] == 1


@pytest.mark.parametrize(
    "exact, mirror, expected",
    [(False, None, True), (True, None, False), (False, False, False), (True, True, True)],
)
def test_session_default(exact, mirror, expected):
    from inference_fakes import FakeConfig

    cfg = FakeConfig()
    if exact:
        cfg.reference_exact = True
    s = Session(BrightComponentModel(cfg), mirror=mirror)
    assert s.mirror is expected
