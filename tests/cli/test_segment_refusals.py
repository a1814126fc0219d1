"""``ctsam3d segment`` refuses what would give meaningless masks (issue 19): an untrained preset
without ``--untrained``, a volume not in Hounsfield units without ``--allow-non-hu``; an empty
mask is said to be empty."""

from __future__ import annotations

from pathlib import Path

import pytest
import SimpleITK as sitk

from ctsam3d.cli.main import main
from ctsam3d.hub.registry import default_model, find_model


@pytest.fixture(scope="module")
def raw_ct(tmp_path_factory):
    """The real CT fixture stored as scanners store it before the rescale: HU + 1024 (0..4095)."""
    fixture = Path(__file__).resolve().parents[1] / "data" / "openkbp_pt_203_ct.nii.gz"
    out = tmp_path_factory.mktemp("raw") / "raw_ct.nii.gz"
    sitk.WriteImage(sitk.ReadImage(str(fixture)) + 1024, str(out))
    return out


def test_untrained_preset_refused_without_flag(tmp_path, fixture_ct, capsys):
    out = tmp_path / "m.nii.gz"
    rc = main(["segment", "-q", "-i", str(fixture_ct), "-o", str(out), "--click", "60,60,60", "--model", "ctsam3d-lite"])
    err = capsys.readouterr().err
    assert rc == 2 and "untrained preset" in err and "--untrained" in err and err.count("\n") == 1
    assert not out.exists()


def test_not_hu_refused_then_allowed_with_a_warning(tmp_path, raw_ct, capsys, caplog):
    out = tmp_path / "m.nii.gz"
    rc = main(["segment", "-q", "-i", str(raw_ct), "-o", str(out), "--click", "60,60,60"])
    err = capsys.readouterr().err
    assert rc == 2 and "not CT Hounsfield units" in err and "--allow-non-hu" in err and err.count("\n") == 1
    assert not out.exists()
    rc = main(["segment", "-q", "-i", str(raw_ct), "-o", str(out), "--click", "60,60,60", "--allow-non-hu",
               "--no-expansion"])
    assert rc == 0 and out.is_file() and "will not be meaningful" in caplog.text


def test_empty_mask_is_reported(tmp_path, fixture_ct, caplog, monkeypatch):
    from ctsam3d.inference.session import Session

    def empty(self, object_id=None):
        img = sitk.Image(self.image.GetSize(), sitk.sitkUInt8)
        img.CopyInformation(self.image)
        return img

    monkeypatch.setattr(Session, "result", empty)
    out = tmp_path / "m.nii.gz"
    rc = main(["segment", "-q", "-i", str(fixture_ct), "-o", str(out), "--click", "60,60,60", "--no-expansion"])
    err = caplog.text
    default = default_model()
    assert default is not None and default.name == "ctsam3d-lite-wb"
    assert rc == 0 and "the mask is empty (0 voxels)" in err and f"model {default.name} " in err
    assert f"trained on {default.anatomy}" in err
    assert not sitk.GetArrayFromImage(sitk.ReadImage(str(out))).any()


def test_bundled_model_named_like_its_preset_is_not_refused():
    """``--model ctsam3d-lite-wb`` is the bundled trained model (the preset's name, claimed by the
    registry entry); with ``--untrained`` the same name gives the fresh preset."""
    from ctsam3d.cli.segment_cmd import _load_model

    if find_model("ctsam3d-lite-wb") is None:
        pytest.skip("ctsam3d-lite-wb weights not bundled in this checkout")
    model, _ = _load_model("ctsam3d-lite-wb", "cpu", quiet=True)
    assert model.model_name == "ctsam3d-lite-wb" and model.config.training and model.config.in_channels == 2
    fresh, _ = _load_model("ctsam3d-lite-wb", "cpu", quiet=True, untrained=True)
    assert fresh.model_name == "ctsam3d-lite-wb (untrained)" and not fresh.config.training


def test_demo_refuses_untrained_preset_too(tmp_path, capsys):
    rc = main(["demo", "-q", "-o", str(tmp_path / "d"), "--model", "ctsam3d-lite"])
    err = capsys.readouterr().err
    assert rc == 2 and "untrained preset" in err and not (tmp_path / "d").exists()
