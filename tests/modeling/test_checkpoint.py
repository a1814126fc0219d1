"""save -> load bit-identical, strict key/shape checks, presets, config JSON."""

from __future__ import annotations

import json

import pytest
import torch

from ctsam3d.errors import CheckpointError
from ctsam3d.modeling import ModelConfig, PRESETS, build_model, get_preset, load_model, save_model
from ctsam3d.modeling import checkpoint as ckpt

torch.set_num_threads(1)


def _lite(seed=0):
    torch.manual_seed(seed)
    return build_model(get_preset("ctsam3d-lite"))


def _run(model):
    g = torch.Generator().manual_seed(5)
    image = torch.rand((1, 1, *model.config.patch_size), generator=g)
    with torch.inference_mode():
        feats = model.encode(image)
        prompt = model.render_prompt([[(20, 30, 40)]], [[(5, 5, 5)]])
        logits, q = model.decode(feats, prompt)
        heat = model.cpp(image, (logits > 0).float(), image.flip(3))
    return logits, q, heat


def test_save_load_bit_identical(tmp_path):
    model = _lite().eval()
    model.config.structures = ["brainstem", "mandible"]
    model.config.training = {"dataset": "openkbp/train", "cases": 170}
    before = _run(model.optimize_for_inference())
    save_model(model, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    loaded = load_model(tmp_path / "m")
    assert loaded.config == model.config
    for a, b in zip(before, _run(loaded)):
        assert torch.equal(a, b)
    # also via the .safetensors path
    again = load_model(tmp_path / "m" / "model.safetensors")
    assert torch.equal(_run(again)[0], before[0])


def test_config_json_roundtrip_and_fields(tmp_path):
    cfg = get_preset("ctsam3d-lite")
    data = json.loads(cfg.to_json())
    for key in ("preset", "spacing_mm", "patch_size", "hu_window", "reference_exact", "structures",
                "training", "package_version", "encoder", "decoder"):
        assert key in data
    assert ModelConfig.from_dict(data) == cfg


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(bogus=1), "unknown config key"),
        (lambda d: d.pop("preset"), "missing config key"),
        (lambda d: d["decoder"].update(up_channels=[32, 16, 8, 8, 1]), "levels"),
        (lambda d: d.update(patch_size=[60, 64, 64]), "divisible"),
    ],
)
def test_bad_config_refused(tmp_path, mutate, message):
    save_model(_lite(), tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    mutate(data)
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=message):
        load_model(tmp_path)


def test_other_preset_weights_refused(tmp_path):
    """Weights of one network under another network's config: refused, naming a key."""
    save_model(_lite(), tmp_path)
    cfg = get_preset("ctsam3d-lite")
    cfg.encoder.dims = (16, 32, 64, 96)
    (tmp_path / "config.json").write_text(cfg.to_json())
    with pytest.raises(CheckpointError, match="shape"):
        load_model(tmp_path)


def test_expect_preset(tmp_path):
    save_model(_lite(), tmp_path)
    with pytest.raises(CheckpointError, match="expected 'ctsam3d-paper'"):
        load_model(tmp_path, expect_preset="ctsam3d-paper")


def test_corrupt_weights_refused(tmp_path):
    save_model(_lite(), tmp_path)
    w = tmp_path / "model.safetensors"
    w.write_bytes(w.read_bytes()[: len(w.read_bytes()) // 2])
    with pytest.raises(CheckpointError, match="safetensors"):
        load_model(tmp_path)


def test_missing_and_extra_keys_named():
    model = _lite()
    state = dict(model.state_dict())
    key = next(iter(state))
    del state[key]
    with pytest.raises(CheckpointError, match="missing"):
        ckpt.load_state_strict(model, state, "x")
    state = dict(model.state_dict(), extra_weight=torch.zeros(1))
    with pytest.raises(CheckpointError, match="extra_weight"):
        ckpt.load_state_strict(model, state, "x")


def test_preset_name_gives_untrained_model_with_warning():
    with pytest.warns(UserWarning, match="untrained"):
        model = load_model("ctsam3d-lite")
    assert model.config.preset == "ctsam3d-lite" and not model.training


def test_no_bundled_weights_message(tmp_path, monkeypatch):
    from ctsam3d.hub import registry

    monkeypatch.setattr(registry, "WEIGHTS_ROOT", tmp_path / "none")
    with pytest.raises(CheckpointError, match="no bundled weights"):
        load_model()


def test_unknown_path_or_preset():
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_model("ctsam3d-huge")


def test_registry_presets_build_and_validate():
    assert set(PRESETS) == {"ctsam3d-paper", "ctsam3d-lite", "ctsam3d-lite-wb"}
    for name in PRESETS:
        cfg = get_preset(name)
        cfg.validate()
        assert cfg.preset == name


def test_lite_weights_small():
    n_bytes = sum(t.numel() * t.element_size() for t in _lite().state_dict().values())
    assert n_bytes <= 25e6


def test_bundled_models_load_by_name(tmp_path, monkeypatch):
    """Bundled models load by their registry name (a weights folder without an entry by its folder
    name). The bundled ``ctsam3d-lite-wb`` bears its preset's name: the name loads the folder's
    trained weights and ``untrained=True`` the fresh preset; a folder named like a preset without
    an entry (``ctsam3d-lite``) is not a model, the name stays the untrained preset (issue 19), and
    the unknown-name message lists only names that load a trained model."""
    from ctsam3d.hub import registry

    root = tmp_path / "weights"
    save_model(_lite(), root / "ctsam3d-lite-wb")  # a 1-window lite network: told apart from the fresh 2-window preset
    save_model(_lite(), root / "ctsam3d-lite")
    save_model(_lite(), root / "extra-model")
    (root / "half").mkdir()  # no weights: not a model
    monkeypatch.setattr(registry, "WEIGHTS_ROOT", root)
    monkeypatch.chdir(tmp_path)  # no such relative path here
    assert list(ckpt.bundled_models()) == ["ctsam3d-lite-wb", "extra-model"]
    m = load_model("ctsam3d-lite-wb")
    assert m.config.preset == "ctsam3d-lite" and not m.training and m.model_name == "ctsam3d-lite-wb"
    assert load_model().model_name == "ctsam3d-lite-wb"
    with pytest.warns(UserWarning, match="untrained"):
        fresh = load_model("ctsam3d-lite-wb", untrained=True)
    assert fresh.config.preset == "ctsam3d-lite-wb" and fresh.config.in_channels == 2
    assert fresh.model_name == "ctsam3d-lite-wb (untrained)"
    with pytest.warns(UserWarning, match="untrained"):
        assert load_model("ctsam3d-lite").model_name == "ctsam3d-lite (untrained)"
    assert load_model("extra-model").model_name == "extra-model"
    with pytest.raises(CheckpointError, match="untrained=True takes a preset name"):
        load_model("extra-model", untrained=True)
    with pytest.raises(CheckpointError) as err:
        load_model("ctsam3d-lite-thorax")
    msg = str(err.value)
    assert "not a model name (ctsam3d-lite-wb, extra-model;" in msg
    assert "untrained preset (" in msg and "ctsam3d-lite," in msg.split("untrained preset")[1]


def test_shipped_models_load_and_fit_the_package_budget():
    """Every model shipped in the package loads strictly and all of them stay under 25 MB."""
    models = ckpt.bundled_models()
    if not models:
        pytest.skip("no bundled weights in this checkout")
    total = sum(f.stat().st_size for d in models.values() for f in d.iterdir())
    assert total <= 25e6
    for name in models:
        m = load_model(name)
        assert m.config.preset.startswith("ctsam3d-lite") and m.model_name == name
