"""``ctsam3d segment``: clicks in, mask on the input grid out; clear errors.

Uses the untrained ``ctsam3d-lite`` preset (``--untrained``; seeded, so two loads give the same weights):
the tests check the wiring and the geometry of the output, not accuracy.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from ctsam3d.cli.main import main
from ctsam3d.examples import example_case
from ctsam3d.inference.session import Session
from ctsam3d.modeling import load_model

CLICK = (63, 63, 25)  # brainstem of the bundled example (ITK index)


@pytest.fixture(scope="module")
def ct_path():
    return example_case().ct


def _lite(seed=0):
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_model("ctsam3d-lite")


def _cli(*args) -> int:
    torch.manual_seed(0)  # same untrained weights as _lite()
    return main(["segment", "-q", "--model", "ctsam3d-lite", "--untrained", *map(str, args)])


def _session_mask(ct_path, clicks, **kw):
    s = Session(_lite(), **kw)
    s.set_image(ct_path)
    for point, positive in clicks:
        s.add_click(point, positive=positive)
    return sitk.GetArrayFromImage(s.result())


def test_segment_writes_the_session_mask_on_the_input_grid(tmp_path, ct_path):
    out = tmp_path / "mask.nrrd"
    rc = _cli("-i", ct_path, "-o", out, "--click", "63,63,25", "--negative", "40,60,25",
              "--click", "63,60,30", "--no-expansion")
    assert rc == 0 and out.is_file()
    mask = sitk.ReadImage(str(out))
    ct = sitk.ReadImage(str(ct_path))
    assert mask.GetSize() == ct.GetSize()
    np.testing.assert_allclose(mask.GetDirection(), ct.GetDirection())
    np.testing.assert_allclose(mask.GetOrigin(), ct.GetOrigin())
    np.testing.assert_allclose(mask.GetSpacing(), ct.GetSpacing())
    expected = _session_mask(
        ct_path, [((63, 63, 25), True), ((40, 60, 25), False), ((63, 60, 30), True)], expansion=False
    )
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mask), expected)


def test_world_clicks_equal_index_clicks(tmp_path, ct_path):
    ct = sitk.ReadImage(str(ct_path))
    lps = ct.TransformIndexToPhysicalPoint(CLICK)
    a, b = tmp_path / "a.nii.gz", tmp_path / "b.nii.gz"
    assert _cli("-i", ct_path, "-o", a, "--click", ",".join(map(str, CLICK)), "--no-expansion") == 0
    assert _cli("-i", ct_path, "-o", b, "--world", "--click=" + ",".join(f"{v:.6f}" for v in lps),
                "--no-expansion") == 0
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(a))),
                                  sitk.GetArrayFromImage(sitk.ReadImage(str(b))))


def test_expansion_budget_option(tmp_path, ct_path):
    out = tmp_path / "m.nii.gz"
    assert _cli("-i", ct_path, "-o", out, "--click", "63,63,25", "--max-patches", "1") == 0
    expected = _session_mask(ct_path, [((63, 63, 25), True)], max_patches=1)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out))), expected)


@pytest.mark.parametrize(
    "flag, refine, mirror",
    [((), True, True), (("--no-refine",), False, True), (("--no-mirror",), True, False)],
)
def test_refine_and_mirror_options_reach_the_session(tmp_path, ct_path, monkeypatch, flag, refine, mirror):
    import ctsam3d.inference.session as session_module

    seen = []
    real = session_module.Session.__init__

    def spy(self, *a, **kw):
        real(self, *a, **kw)
        seen.append((self.refinement.enabled, self.mirror))

    monkeypatch.setattr(session_module.Session, "__init__", spy)
    out = tmp_path / "m.nii.gz"
    assert _cli("-i", ct_path, "-o", out, "--click", "63,63,25", "--no-expansion", *flag) == 0
    assert seen == [(refine, mirror)]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--click", "63,63"], "expected three comma-separated numbers"),
        (["--click", "a,b,c"], "expected three comma-separated numbers"),
        (["--click", "500,63,25"], "outside the image"),
        (["--click", "nan,63,25"], "finite"),
        (["--negative", "63,63,25"], "first click must be positive"),
        ([], "no clicks"),
        (["--click", "63,63,25", "-d", "tpu"], "unknown device"),
        (["--click", "63,63,25", "--max-patches", "-1"], "--max-patches"),
    ],
)
def test_bad_arguments_give_one_line_and_status_2(tmp_path, ct_path, capsys, args, message):
    out = tmp_path / "m.nii.gz"
    rc = _cli("-i", ct_path, "-o", out, "--no-expansion", *args)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("ctsam3d: error:") and message in err[0], err
    assert not out.exists()


def test_existing_output_needs_overwrite(tmp_path, ct_path, capsys):
    out = tmp_path / "m.nii.gz"
    out.write_bytes(b"keep")
    assert _cli("-i", ct_path, "-o", out, "--click", "63,63,25", "--no-expansion") == 2
    assert "--overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"keep"
    assert _cli("-i", ct_path, "-o", out, "--click", "63,63,25", "--no-expansion", "--overwrite") == 0
    assert sitk.ReadImage(str(out)).GetSize() == (128, 128, 128)


def test_missing_input_and_bad_output_format(tmp_path, capsys):
    assert _cli("-i", tmp_path / "nope.nii.gz", "-o", tmp_path / "m.nii.gz", "--click", "1,1,1") == 2
    assert "nope.nii.gz" in capsys.readouterr().err
    assert _cli("-i", example_case().ct, "-o", tmp_path / "m.png", "--click", "1,1,1") == 2
    assert "unknown output format" in capsys.readouterr().err
