"""CPP pairs drawn as inference asks for them (``cpp_directions: touching``, lattice shift), and
image channels per HU window."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from dataset_helpers import write_pairs

from ctsam3d.data import PatchSampler, SamplerConfig, load_cache, open_dataset, preprocess
from ctsam3d.data.sampler import NEIGHBOURS
from ctsam3d.inference.expansion import touching_directions


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    d = tmp_path_factory.mktemp("cpp_pairs")
    write_pairs(d / "pairs", 3)
    preprocess(open_dataset(d / "pairs"), d / "cache", progress=False)
    return load_cache(d / "cache")


def test_touching_directions_follow_the_inference_rule():
    s = PatchSampler.__new__(PatchSampler)  # only .config is used
    s.config = SamplerConfig(cpp_face_margin=2, cpp_face_voxels=4)
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = np.zeros((16, 16, 16), bool)
        lo = rng.integers(0, 12, 3)
        hi = lo + rng.integers(2, 8, 3)
        m[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = True
        ours = {tuple(int(v) for v in d[::-1]) for d in s.touching(torch.from_numpy(m)[None, None].float())}
        assert ours == set(touching_directions(m, margin=2, min_voxels=4))


def test_touching_pairs_are_shifted_by_the_lattice_stride_towards_a_touched_face(cases):
    cfg = SamplerConfig(cpp=True, cpp_shift=(0.75, 0.75), cpp_directions="touching")
    s = PatchSampler(cases, (16, 16, 16), 4.0, augment=None, config=cfg)
    seen = 0
    for seed in range(6):
        rng = np.random.default_rng(seed)
        ci, name = s.draw(rng)
        vol = s.volumes[ci]
        sid = vol.case.structures[name].label_id
        center = s._center(vol, sid, rng)
        from ctsam3d.data.affine import patch_to_world

        p2w = patch_to_world(center, s.spacing, s.patch_size)
        tgt = (s._sample(vol, p2w, "label") == sid).float()
        dirs = s.touching(tgt)
        img, tv, ok, off = s._neighbour(vol, sid, p2w, np.random.default_rng(seed), tgt)
        if not len(dirs):
            assert not ok
            continue
        if not ok:
            continue
        seen += 1
        # V is one of the touched directions at exactly 12 voxels (0.75 x 16): its label equals
        # the label sampled there directly
        matches = []
        for d in dirs:
            shift = np.eye(4)
            shift[:3, 3] = d * 12
            lab = s._sample(vol, p2w @ shift, "label")
            matches.append(torch.equal((lab == sid).float(), tv) and off == [int(v) for v in (d * 12)[::-1]])
        assert any(matches)  # ... and the returned offset is that shift, as (dz, dy, dx)
    assert seen > 0


def test_unknown_direction_rule_refused(cases):
    s = PatchSampler(cases, (16, 16, 16), 4.0, augment=None, config=SamplerConfig(cpp=True, cpp_directions="all"))
    with pytest.raises(ValueError, match="cpp_directions"):
        s.sample(np.random.default_rng(0), 1)


def test_one_image_channel_per_window(cases):
    wins = [(-125.0, 225.0), (-1000.0, 1000.0)]
    two = PatchSampler(cases, (16, 16, 16), 4.0, wins, augment=None, config=SamplerConfig(cpp=True))
    one = PatchSampler(cases, (16, 16, 16), 4.0, wins[0], augment=None, config=SamplerConfig(cpp=True))
    a, b = two.sample(np.random.default_rng(5), 3), one.sample(np.random.default_rng(5), 3)
    assert a["image"].shape == (3, 2, 16, 16, 16) and b["image"].shape == (3, 1, 16, 16, 16)
    assert a["image_v"].shape[1] == 2
    torch.testing.assert_close(a["image"][:, :1], b["image"])  # channel 0: the same window, same draws
    hu = a["image"][:, :1] * 350.0 - 125.0  # inside the soft-tissue window both channels agree on HU
    inside = (a["image"][:, :1] > 0) & (a["image"][:, :1] < 1)
    torch.testing.assert_close((a["image"][:, 1:] * 2000.0 - 1000.0)[inside], hu[inside], atol=0.05, rtol=0)
    assert len(NEIGHBOURS) == 26


def test_cpp_offset_moves_u_onto_v(cases):
    """``cpp_offset``: V's voxel i is U's voxel i + offset — U's image moved into V's grid
    (modeling.cpp_frame.to_v_frame) equals V's image on the overlap (no augmentation)."""
    from ctsam3d.modeling.cpp_frame import to_v_frame

    cfg = SamplerConfig(cpp=True, cpp_shift=(0.75, 0.75), cpp_directions="touching")
    s = PatchSampler(cases, (16, 16, 16), 4.0, [(-1000.0, 1000.0)], augment=None, config=cfg)
    checked = 0
    for seed in range(20):
        b = s.sample(np.random.default_rng(seed), 6)
        assert b["cpp_offset"].shape == (6, 3) and b["cpp_offset"].dtype == torch.long
        assert (b["cpp_offset"][~b["cpp_valid"]] == 0).all()
        for i in np.flatnonzero(b["cpp_valid"].numpy()):
            off = b["cpp_offset"][i].tolist()
            assert max(abs(v) for v in off) == 12 and set(abs(v) for v in off) <= {0, 12}
            moved = to_v_frame(b["image"][i], off)
            inside = to_v_frame(torch.ones_like(b["image"][i]), off) > 0
            torch.testing.assert_close(moved[inside], b["image_v"][i][inside], atol=1e-4, rtol=0)
            checked += 1
        if checked >= 3:
            break
    assert checked >= 3
