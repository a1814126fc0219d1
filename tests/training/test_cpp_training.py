"""CPP net training: weighted heatmap loss, CPP-only runs, validation and threshold calibration."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_helpers import make_cache, tiny_config  # noqa: E402

from ctsam3d.training.config import config_from_dict  # noqa: E402
from ctsam3d.training.cpp_validation import CppValidationSet, calibrate_threshold  # noqa: E402
from ctsam3d.training.loop import build_model_config, train  # noqa: E402
from ctsam3d.training.losses import cpp_loss  # noqa: E402


DESC = [round(1.0 - 0.1 * i, 1) for i in range(10)]  # 1.0 ... 0.1


@pytest.mark.parametrize(
    "peaks, hits, expected",
    [
        (DESC, [1] * 6 + [0] * 4, 0.5),  # clean split: just above the misses
        (DESC, [1, 0, 1, 1, 1, 1, 0, 0, 0, 0], 0.5),  # one miss costs two hits
        (DESC, [1, 1, 0, 0, 0, 1, 0, 0, 0, 0], None),  # never better than nothing
        (DESC, [0] * 10, None),  # a net that never peaks on the structure
        ([0.9, 0.85] + list(np.linspace(0.5, 0.1, 39)), [1, 1] + [0] * 39, None),  # 2 of 41 fire: < 10 %
        ([], [], None),
    ],
)
def test_calibrate_threshold(peaks, hits, expected):
    got = calibrate_threshold(np.array(peaks), np.array(hits, bool))
    assert got == (pytest.approx(expected) if expected is not None else None)


def test_weighted_loss_does_not_reward_an_empty_heatmap():
    """A 64³ patch's Gaussian target (σ 3 voxels) covers ~0.2 % of it: plain MSE scores an
    all-zero heatmap almost perfect (the collapse the former starter model's CPP net showed); weighted
    towards the blob it is a poor answer. Invalid items never count."""
    z = torch.arange(64.0)
    g = torch.exp(-((z[:, None, None] - 32) ** 2 + (z[None, :, None] - 30) ** 2 + (z[None, None, :] - 33) ** 2) / 18)
    target = torch.stack([g, g])[:, None]
    empty = torch.zeros_like(target)
    ok = torch.tensor([True, True])
    assert cpp_loss(empty, target, ok) < 1e-3
    assert cpp_loss(empty, target, ok, pos_weight=200) > 50 * cpp_loss(empty, target, ok)
    assert cpp_loss(target, target, ok, pos_weight=200) == 0
    half_bad = torch.stack([g, torch.zeros_like(g)])[:, None]
    assert cpp_loss(half_bad, target, torch.tensor([True, False]), pos_weight=200) == 0


class _StubModel(torch.nn.Module):
    """CPP heatmap = 1 on the given voxels: on the structure (``good``) or far from it."""

    def __init__(self, good: bool) -> None:
        super().__init__()
        self.good = good
        self.p = torch.nn.Parameter(torch.zeros(()))

    def cpp(self, image_u, mask_u, image_v):
        h = torch.zeros_like(image_v)
        if self.good:
            return self.target_v.clone()[: len(image_v)] * 0.7
        h[..., 0, 0, 0] = 0.9
        return h


def test_cpp_validation_scores_hits_and_misses(tmp_path):
    from ctsam3d.data import load_cache

    cases = load_cache(make_cache(tmp_path, n=2))
    vs = CppValidationSet(cases, (32, 32, 32), 2.0, (-125.0, 225.0), pairs=8, seed=0)
    assert len(vs) > 0
    good = _StubModel(True)
    good.target_v = vs.target_v
    res = vs.evaluate(good, batch_size=len(vs))
    assert res["cpp_hit"] == 1.0 and res["cpp_threshold"] == pytest.approx(0.7) and res["cpp_fire"] == 1.0
    bad = vs.evaluate(_StubModel(False), batch_size=len(vs))
    assert bad["cpp_hit"] == 0.0 and np.isnan(bad["cpp_threshold"]) and bad["cpp_fire"] == 0.0


def test_cpp_only_run_changes_only_the_cpp_net(tmp_path):
    cache = make_cache(tmp_path, n=2)
    cfg = config_from_dict(tiny_config(cache, tmp_path / "run", total_steps=3, train_parts="cpp",
                                       optim={"lr": 5e-2, "warmup_steps": 1}))
    from ctsam3d.modeling.ctsam3d import build_model

    torch.manual_seed(cfg.seed)
    before = build_model(build_model_config(cfg)).state_dict()
    out = train(cfg)
    after = out["model"].state_dict()
    changed = {k for k in before if before[k].is_floating_point() and not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("cpp_predictor.") for k in changed)
    assert out["val"] is not None and "cpp_hit" in out["val"] and "dice@1" not in out["val"]
    thr = out["val"]["cpp_threshold"]
    exported = out["model"].config.cpp.peak_threshold
    assert exported == (thr if np.isfinite(thr) else None)  # None: sessions continue masks instead


def test_cpp_only_needs_pairs(tmp_path):
    from ctsam3d.errors import InputError

    with pytest.raises(InputError, match="train_parts"):
        config_from_dict(tiny_config(tmp_path, tmp_path / "x", train_parts="decoder"))
    with pytest.raises(InputError, match="sampler.cpp"):
        config_from_dict(tiny_config(tmp_path, tmp_path / "x", train_parts="cpp", sampler={"cpp": False}))


class _BeyondModel(torch.nn.Module):
    """Heatmap = the structure in V outside the U ∩ V overlap (0.7), so its top peak is a hit
    beyond the overlap wherever the structure continues there."""

    def __init__(self, vs) -> None:
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(()))
        from ctsam3d.modeling.cpp_frame import to_v_frame

        seen = torch.stack([to_v_frame(torch.ones(vs.mask.shape[1:]), o) for o in vs.offset.tolist()])
        self.heat = vs.target_v * (seen == 0) * 0.7

    def cpp(self, image_u, mask_u, image_v):
        return self.heat[: len(image_v)]


def test_cpp_validation_hit_beyond_the_overlap_and_continuation(tmp_path):
    from ctsam3d.data import load_cache
    from ctsam3d.data.sampler import SamplerConfig
    from ctsam3d.modeling.cpp_frame import to_v_frame

    cases = load_cache(make_cache(tmp_path, n=2))
    rule = SamplerConfig(cpp=True, cpp_shift=(0.75, 0.75), cpp_directions="touching")
    vs = CppValidationSet(cases, (16, 16, 16), 4.0, (-125.0, 225.0), pairs=64, seed=0, config=rule)
    assert len(vs) > 0 and vs.offset.shape == (len(vs), 3)
    res = vs.evaluate(_BeyondModel(vs), batch_size=len(vs))
    outside = [bool((vs.target_v[b, 0] * (to_v_frame(torch.ones(16, 16, 16), o) == 0)).sum() > 0)
               for b, o in enumerate(vs.offset.tolist())]
    assert res["cpp_hit_beyond"] == pytest.approx(np.mean(outside))
    # touching pairs hold U's mask on the face towards V, so continuation always has a click;
    # with ground-truth masks it lands on the structure
    assert res["cpp_hit_continuation"] == 1.0


def test_cpp_validation_command_prints_the_figures(tmp_path, capsys):
    import json

    from ctsam3d.modeling import save_model
    from ctsam3d.modeling.ctsam3d import build_model
    from ctsam3d.training.cpp_validation import main

    cache = make_cache(tmp_path, n=2)
    mcfg = build_model_config(config_from_dict(tiny_config(cache, tmp_path / "run")))
    mcfg.cpp.frame = "v"
    save_model(build_model(mcfg), tmp_path / "model")
    assert main(["--model", str(tmp_path / "model"), "--cache", str(cache), "--draws", "16", "--seed", "1"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["frame"] == "v" and res["draws"] == 16 and res["pairs"] <= 16
    assert {"cpp_hit", "cpp_hit_beyond", "cpp_hit_continuation", "cpp_threshold", "model_fire", "model_precision"} <= set(res)
    assert main(["--model", str(tmp_path / "missing"), "--cache", str(cache)]) == 1


def test_cpp_validation_pairs_drawn_in_chunks_are_the_one_batch_draws(tmp_path):
    from ctsam3d.data import PatchSampler, load_cache
    from ctsam3d.data.sampler import SamplerConfig
    from ctsam3d.training import cpp_validation

    cases = load_cache(make_cache(tmp_path, n=2))
    assert cpp_validation.CHUNK < 40
    vs = CppValidationSet(cases, (16, 16, 16), 4.0, (-125.0, 225.0), pairs=40, seed=3)
    b = PatchSampler(cases, (16, 16, 16), 4.0, (-125.0, 225.0), augment=None,
                     config=SamplerConfig(cpp=True)).sample(np.random.default_rng(3), 40)
    ok = b["cpp_valid"]
    assert len(vs) == int(ok.sum()) > 0
    for name, key in (("image", "image"), ("mask", "target"), ("image_v", "image_v"), ("target_v", "target_v"),
                      ("offset", "cpp_offset")):
        assert torch.equal(getattr(vs, name), b[key][ok]), name
    assert vs.structures == [s for s, k in zip(b["structures"], ok.tolist()) if k]
