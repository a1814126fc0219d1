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
    """Every entry of the shipped registry names a folder of the package; exactly one is default."""
    assert sum(b.default for b in registry.BUNDLED) == 1
    names = [b.name for b in registry.BUNDLED]
    assert len(set(names)) == len(names) and not any(registry.is_preset(n) for n in names)
    present = [b for b in registry.BUNDLED if (registry.WEIGHTS_ROOT / b.folder / registry.WEIGHTS_FILE).is_file()]
    if not present:
        pytest.skip("no bundled weights in this checkout")
    assert any(b.default for b in present)
