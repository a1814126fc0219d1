"""Training on several caches: config, loading, source-balanced draws, a tiny run."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))

from synth_helpers import write_labelmap  # noqa: E402
from train_helpers import make_cache, tiny_config  # noqa: E402

from ctsam3d.data import PatchSampler  # noqa: E402
from ctsam3d.data.synth_cache import synthesize_cache  # noqa: E402
from ctsam3d.errors import InputError  # noqa: E402
from ctsam3d.training.config import config_from_dict  # noqa: E402
from ctsam3d.training.loop import _load_train_cases, train  # noqa: E402


@pytest.fixture(scope="module")
def two_caches(tmp_path_factory):
    root = tmp_path_factory.mktemp("multi")
    real = make_cache(root, n=2)
    synth = root / "synth"
    failed = synthesize_cache([write_labelmap(root / "lm" / "tiny.nii.gz")], synth, variants=2, min_spacing=0, progress=False)
    assert not failed
    return real, synth


def test_config_accepts_string_or_list(two_caches, tmp_path):
    real, synth = two_caches
    one = config_from_dict(tiny_config(real, tmp_path))
    assert one.data.train_caches() == [str(real)]
    two = config_from_dict(tiny_config(real, tmp_path, data={"train_cache": [str(real), str(synth)], "train_weights": [1, 3]}))
    assert two.data.train_caches() == [str(real), str(synth)] and two.data.train_weights == [1.0, 3.0]
    with pytest.raises(InputError, match="train_weights"):
        config_from_dict(tiny_config(real, tmp_path, data={"train_cache": [str(real), str(synth)], "train_weights": [1]}))
    with pytest.raises(InputError, match="train_cache"):
        config_from_dict(tiny_config(real, tmp_path, data={"train_cache": [str(real), 3]}))


def test_sampler_draws_from_every_cache_by_weight(two_caches, tmp_path):
    real, synth = two_caches
    cfg = config_from_dict(tiny_config(real, tmp_path, data={"train_cache": [str(real), str(synth)]}))
    cases, groups = _load_train_cases(cfg)
    assert sorted(set(groups)) == [0, 1] and len(cases) == 4
    s = PatchSampler(cases, (16, 16, 16), 4.0, groups=groups)
    rng = np.random.default_rng(0)
    src = [groups[s.draw(rng)[0]] for _ in range(400)]
    assert 0.35 < np.mean(src) < 0.65  # equal per cache by default
    batch = PatchSampler(cases, (16, 16, 16), 4.0, groups=groups).sample(np.random.default_rng(1), 8)
    assert {c.startswith("tiny_v") for c in batch["case_ids"]} == {True, False}
    only_synth = PatchSampler(cases, (16, 16, 16), 4.0, groups=groups, group_weights=[0, 1])
    assert all(groups[only_synth.draw(rng)[0]] == 1 for _ in range(50))


def test_tiny_training_run_on_two_caches(two_caches, tmp_path):
    real, synth = two_caches
    cfg = config_from_dict(tiny_config(real, tmp_path / "run", total_steps=2, data={"train_cache": [str(real), str(synth)]}))
    out = train(cfg)
    assert out["step"] == 2 and all(np.isfinite(out["losses"]))
    assert {"liver", "aorta"} <= set(out["model"].config.structures)


def test_exported_structures_leave_out_pseudo_names(two_caches, tmp_path):
    """Generic pseudo-structures train the model but are not anatomy it can be asked for."""
    import json

    real, _ = two_caches
    lm = write_labelmap(tmp_path / "lm" / "gen.nii.gz")
    lm.with_name("gen.json").write_text(json.dumps({"1": "liver", "2": "pseudo_001", "3": "pseudo_002"}))
    pseudo = tmp_path / "pseudo"
    assert not synthesize_cache([lm], pseudo, variants=1, min_spacing=0, progress=False)
    cfg = config_from_dict(tiny_config(real, tmp_path / "run", total_steps=1, data={"train_cache": [str(real), str(pseudo)]}))
    out = train(cfg)
    names = out["model"].config.structures
    assert "liver" in names and not any(n.startswith("pseudo_") for n in names)
