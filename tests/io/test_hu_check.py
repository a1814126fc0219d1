"""Plausibility of CT Hounsfield units (ctsam3d.io.hu_check): the real CT fixture in HU passes;
the same CT as a scanner stores it before the rescale, normalised, z-scored or as 8-bit does not."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from ctsam3d.io.hu_check import NotHUWarning, check_hu, refuse_if_not_hu


@pytest.fixture(scope="module")
def hu():
    fixture = Path(__file__).resolve().parents[1] / "data" / "openkbp_pt_203_ct.nii.gz"  # the real CT fixture
    return sitk.GetArrayFromImage(sitk.ReadImage(str(fixture))).astype(np.float32)


CASES = [
    ("hu", lambda a: a, True, "hu"),
    ("stored 0..4095 (no rescale)", lambda a: a + 1024, False, "unsigned"),
    ("stored, padding -2000 outside the scan", lambda a: np.where(a <= -1024, -2000, a + 1024), False, "offset"),
    ("0..1 floats", lambda a: (a + 1024) / 4095, False, "normalised"),
    ("z-scores", lambda a: (a - a.mean()) / a.std(), False, "normalised"),
    ("8-bit", lambda a: np.clip((a + 1024) / 16, 0, 255).astype(np.uint8), False, "unsigned"),
    ("MR-like 0..1200", lambda a: np.clip(a + 200, 0, 1200), False, "unsigned"),
    ("HU with padding -3024", lambda a: np.where(a <= -1024, -3024, a), True, "hu"),
]


@pytest.mark.parametrize("name, make, plausible, kind", CASES, ids=[c[0] for c in CASES])
def test_rules(hu, name, make, plausible, kind):
    r = check_hu(make(hu))
    assert (r.plausible, r.kind) == (plausible, kind), r.reason
    assert bool(r.reason) != plausible


def test_shared_ct_crops_are_plausible(shared_data):
    """Crops of real CT inside the body (evaluation cases) are still HU."""
    for f in ("totalseg_examples/example_ct.nii.gz", "totalseg_examples/aorta_crop/ct_cropped.nii.gz",
              "totalseg_examples/pulmonary_crop/ct_cropped.nii.gz"):
        assert check_hu(sitk.ReadImage(str(shared_data / f))).plausible, f


def test_refusal_names_the_file(hu):
    from ctsam3d.errors import InputError

    with pytest.raises(InputError, match=r"^scan\.nii\.gz: no negative intensities \(0 \.\. 4095\)"):
        refuse_if_not_hu(hu + 1024, "scan.nii.gz")


def test_session_warns_and_carries_on(hu):
    from ctsam3d.inference.session import Session
    from ctsam3d.modeling import load_model

    img = sitk.GetImageFromArray(hu / 4095.0)
    s = Session(load_model())
    with pytest.warns(NotHUWarning, match="look normalised"):
        s.set_image(img)
    s.add_click((60, 60, 60))  # the API still runs
    with warnings.catch_warnings():
        warnings.simplefilter("error", NotHUWarning)
        s.set_image(sitk.GetImageFromArray(hu))  # HU: no warning


def test_info_names_hu_only_when_plausible(tmp_path, hu, capsys):
    from ctsam3d.cli.main import main

    raw = tmp_path / "raw.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray((hu + 1024).astype(np.int16)), str(raw))
    assert main(["info", "-i", str(raw)]) == 0
    out = capsys.readouterr().out
    assert "HU range" not in out and "value range: 0 .. 4095" in out and "not HU:" in out
    ok = tmp_path / "hu.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(hu.astype(np.int16)), str(ok))
    assert main(["info", "-i", str(ok), "--json"]) == 0
    import json

    doc = json.loads(capsys.readouterr().out)
    assert doc["intensity"] == {"hu_plausible": True, "kind": "hu", "reason": None}
