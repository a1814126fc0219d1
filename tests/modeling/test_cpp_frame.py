"""The CPP input frame: U-grid arrays moved into V's grid (``to_v_frame``, ``cpp_inputs``) and
the ``cpp.frame`` config field (old configs load as ``"own"``)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch

from ctsam3d.errors import CheckpointError, InputError
from ctsam3d.modeling.config import ModelConfig
from ctsam3d.modeling.cpp_frame import cpp_inputs, frame_of, to_v_frame
from ctsam3d.modeling.presets import get_preset

SIZE = (6, 5, 4)  # z, y, x: not a cube, so axis mix-ups show


def _reference(a: np.ndarray, off) -> np.ndarray:
    """Voxel by voxel: V's voxel i = U's voxel i + off, 0 outside U."""
    out = np.zeros_like(a)
    for i in itertools.product(*(range(n) for n in a.shape)):
        j = tuple(p + o for p, o in zip(i, off))
        if all(0 <= q < n for q, n in zip(j, a.shape)):
            out[i] = a[j]
    return out


# faces, edges and corners at the lattice stride (3/4 of the side), and at other distances
STRIDE = tuple((3 * n) // 4 for n in SIZE)
OFFSETS = [tuple(d * s for d, s in zip(dirn, STRIDE)) for dirn in itertools.product((-1, 0, 1), repeat=3)]
OFFSETS += [(1, 0, 0), (0, -2, 0), (0, 0, 3), (5, -4, 3), (-5, 4, -3), (6, 0, 0), (0, 0, -4), (7, 7, 7)]


@pytest.mark.parametrize("off", OFFSETS, ids=[str(o) for o in OFFSETS])
def test_to_v_frame_matches_the_voxel_rule(off):
    a = np.random.default_rng(0).random(SIZE).astype(np.float32) + 1  # no zeros of its own
    got = to_v_frame(a, off)
    np.testing.assert_array_equal(got, _reference(a, off))
    # overlap size: the voxels kept are exactly those of U ∩ V
    overlap = int(np.prod([max(0, n - abs(o)) for n, o in zip(SIZE, off)]))
    assert int((got > 0).sum()) == overlap
    # torch, with leading (batch, channel) axes and an integer dtype: the same voxels
    t = torch.from_numpy(a)[None, None].repeat(2, 3, 1, 1, 1)
    gt = to_v_frame(t, off)
    assert gt.shape == t.shape and gt.dtype == t.dtype
    for b, c in itertools.product(range(2), range(3)):
        np.testing.assert_array_equal(gt[b, c].numpy(), got)
    m = (a > 1.5).astype(np.uint8)
    np.testing.assert_array_equal(to_v_frame(m, off), _reference(m, off))


def test_to_v_frame_round_trip_on_the_overlap():
    """Moving into V and back (offset negated) restores U on the overlap, zero elsewhere."""
    a = np.arange(np.prod(SIZE), dtype=np.float32).reshape(SIZE) + 1
    off = (3, -2, 1)
    back = to_v_frame(to_v_frame(a, off), tuple(-o for o in off))
    keep = back > 0
    np.testing.assert_array_equal(back[keep], a[keep])
    assert keep[3:, :3, 1:].all() and keep.sum() == 3 * 3 * 3


@pytest.mark.parametrize("bad", [(1, 2), (1.5, 0, 0), (1, 2, 3, 4)])
def test_to_v_frame_refuses_a_bad_offset(bad):
    with pytest.raises(InputError, match="offset"):
        to_v_frame(np.zeros(SIZE), bad)


def test_cpp_inputs_per_item_offsets_and_frames():
    g = torch.Generator().manual_seed(0)
    img_u = torch.rand((2, 2) + SIZE, generator=g)
    mask_u = (torch.rand((2, 1) + SIZE, generator=g) > 0.5).float()
    img_v = torch.rand((2, 2) + SIZE, generator=g)
    offs = torch.tensor([[4, 0, 0], [0, -3, 3]])
    own = cpp_inputs(img_u, mask_u, img_v, None, "own")
    assert all(a is b for a, b in zip(own, (img_u, mask_u, img_v)))
    iu, mu, iv = cpp_inputs(img_u, mask_u, img_v, offs, "v")
    assert iv is img_v
    for b in range(2):
        torch.testing.assert_close(iu[b], to_v_frame(img_u[b], offs[b].tolist()))
        torch.testing.assert_close(mu[b], to_v_frame(mask_u[b], offs[b].tolist()))
    with pytest.raises(InputError, match="offset"):
        cpp_inputs(img_u, mask_u, img_v, None, "v")
    with pytest.raises(InputError, match="2 pairs"):
        cpp_inputs(img_u, mask_u, img_v, offs[:1], "v")
    with pytest.raises(InputError, match="frame"):
        cpp_inputs(img_u, mask_u, img_v, offs, "u")


def test_frame_field_presets_and_old_configs():
    assert get_preset("ctsam3d-paper").cpp.frame == "own"
    assert get_preset("ctsam3d-lite").cpp.frame == "own"
    wb = get_preset("ctsam3d-lite-wb")
    assert wb.cpp.frame == "v"
    saved = json.loads(wb.to_json())
    assert saved["cpp"]["frame"] == "v"
    assert ModelConfig.from_dict(saved).cpp.frame == "v"
    del saved["cpp"]["frame"]  # a config.json written before the field existed
    assert ModelConfig.from_dict(saved).cpp.frame == "own"
    saved["cpp"]["frame"] = "u"
    with pytest.raises(CheckpointError, match="cpp.frame"):
        ModelConfig.from_dict(saved).validate()


def test_frame_of_models_without_a_cpp_config():
    class Bare(torch.nn.Module):
        pass

    assert frame_of(Bare()) == "own"
    m = Bare()
    m.config = get_preset("ctsam3d-lite-wb")
    assert frame_of(m) == "v"
