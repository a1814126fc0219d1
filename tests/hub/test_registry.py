"""Model registry: bundled entries with metadata (one default), installed models, the default rule."""

from __future__ import annotations

import json

import pytest

from ctsam3d.cli.main import main as cli_main
from ctsam3d.hub import paths, registry
from ctsam3d.modeling import build_model, get_preset, save_model


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """Two bundled lite models, an unregistered folder, a preset-named folder, an empty models home."""
    root = tmp_path / "weights"
    model = build_model(get_preset("ctsam3d-lite"))
    for folder in ("a-folder", "b-folder", "zz-new"):
        save_model(model, root / folder)
    save_model(model, root / "ctsam3d-paper")  # a preset's name and no entry: never a bundled model
    entries = (
        registry.Bundled("alpha", "a-folder", "head and neck", default=True),
        registry.Bundled("beta", "b-folder", "whole body"),
    )
    monkeypatch.setattr(registry, "WEIGHTS_ROOT", root)
    monkeypatch.setattr(registry, "BUNDLED", entries)
    monkeypatch.setenv(paths.HOME_ENV, str(tmp_path / "home"))
    return {"model": model, "entries": entries, "home": tmp_path / "home"}


def test_bundled_listed_with_metadata_and_one_default(machine):
    got = registry.list_models()
    assert [(e.name, e.source, e.preset, e.default) for e in got] == [
        ("alpha", "bundled", "ctsam3d-lite", True),
        ("beta", "bundled", "ctsam3d-lite", False),
        ("zz-new", "bundled", "ctsam3d-lite", False),
    ]
    assert got[1].anatomy == "whole body"
    assert got[2].anatomy.startswith("unknown")  # no record in its config.json


def test_default_switches_by_editing_one_entry(machine, monkeypatch):
    a, b = machine["entries"]
    monkeypatch.setattr(registry, "BUNDLED", (registry.Bundled(a.name, a.folder, a.anatomy),
                                              registry.Bundled(b.name, b.folder, b.anatomy, default=True)))
    assert registry.default_model().name == "beta"


def test_installed_release_becomes_default(machine):
    target = machine["home"] / "models" / registry.RELEASED_NAME
    save_model(machine["model"], target)
    save_model(machine["model"], machine["home"] / "models" / "my-model")
    (machine["home"] / "models" / ".downloads" / "x").mkdir(parents=True)  # the downloader's: not a model
    got = {e.name: e for e in registry.list_models()}
    assert got[registry.RELEASED_NAME].default and not got["alpha"].default
    assert got[registry.RELEASED_NAME].anatomy == registry.RELEASED_ANATOMY
    assert got["my-model"].source == "installed" and ".downloads" not in got
    assert registry.find_model("my-model").path == machine["home"] / "models" / "my-model"
    assert registry.find_model("ctsam3d-paper") is None  # a preset name is the untrained preset


def test_models_command(machine, capsys):
    assert cli_main(["models"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("alpha"))
    assert "bundled" in line and "*" in line and "head and neck" in line
    assert "ctsam3d download" in out and "untrained presets" in out
    assert "not listed: " in out and "named like the preset 'ctsam3d-paper'" in out
    assert cli_main(["models", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in doc["models"] if m["default"]] == ["alpha"]
    assert "ctsam3d-lite" in doc["untrained_presets"]


def test_shipped_registry_entries_exist():
    """Every entry of the shipped registry names a folder of the package; exactly one is default;
    an entry that bears a preset's name holds weights of that very preset."""
    assert sum(b.default for b in registry.BUNDLED) == 1
    names = [b.name for b in registry.BUNDLED]
    assert len(set(names)) == len(names)
    present = [b for b in registry.BUNDLED if (registry.WEIGHTS_ROOT / b.folder / registry.WEIGHTS_FILE).is_file()]
    if not present:
        pytest.skip("no bundled weights in this checkout")
    assert any(b.default for b in present)
    for b in present:
        config = json.loads((registry.WEIGHTS_ROOT / b.folder / registry.CONFIG_FILE).read_text())
        assert config.get("training"), f"{b.name}: no training record in its config.json"
        if registry.is_preset(b.name):
            assert config["preset"] == b.name


def test_entry_bearing_a_preset_name(machine, monkeypatch, capsys):
    """A BUNDLED entry may bear a preset's name (the shipped ``ctsam3d-lite-wb``): the name then
    finds that trained model and is not refused as untrained; ``--untrained`` still asks for the
    fresh preset. A bare folder named like a preset never claims the name."""
    from ctsam3d.errors import CheckpointError
    from ctsam3d.server.config import ServerConfig

    save_model(machine["model"], registry.WEIGHTS_ROOT / "wb-folder")
    monkeypatch.setattr(registry, "BUNDLED", machine["entries"] + (registry.Bundled("ctsam3d-lite-wb", "wb-folder", "whole body"),))
    entry = registry.find_model("ctsam3d-lite-wb")
    assert entry is not None and entry.path.name == "wb-folder" and entry.source == "bundled"
    assert not registry.is_untrained("ctsam3d-lite-wb") and registry.is_untrained("ctsam3d-lite-wb", untrained=True)
    assert registry.find_model("ctsam3d-paper") is None and registry.is_untrained("ctsam3d-paper")
    assert not registry.is_untrained("alpha", untrained=True)  # --untrained does nothing to a trained model's name
    ServerConfig(state_dir=machine["home"] / "state", model="ctsam3d-lite-wb")  # accepted without --untrained
    with pytest.raises(CheckpointError, match="untrained preset"):
        ServerConfig(state_dir=machine["home"] / "state", model="ctsam3d-lite")
    assert cli_main(["models"]) == 0
    out = capsys.readouterr().out
    assert next(ln for ln in out.splitlines() if ln.startswith("ctsam3d-lite-wb ")).split()[1] == "bundled"
    assert "ctsam3d-lite-wb: the name alone loads the trained model" in out and "ctsam3d-paper:" not in out
