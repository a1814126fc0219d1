"""``ctsam3d segment --prompts prompts.json``: the file's prompts in order, same mask as the
Session API; bad files refused before any work with one line, status 2 and no output."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from ctsam3d.cli.main import main
from ctsam3d.examples import example_case
from ctsam3d.inference.prompt_file import parse_prompts
from ctsam3d.inference.session import Session
from ctsam3d.modeling import load_model
from ctsam3d.errors import InputError

DOC = {
    "space": "index",
    "prompts": [
        # "axial" names the plane: in this OpenKBP volume (stored P, L, I) that is ITK axis k
        {"type": "lasso", "points": [[58, 58, 25], [68, 58, 25], [68, 68, 25], [58, 68, 25]], "axis": "axial"},
        {"type": "box2d", "corners": [[55, 55, 30], [72, 70, 30]]},
        {"type": "scribble", "points": [[63, 63, 20], [63, 64, 28]]},
        {"type": "click", "point": [40, 60, 25], "positive": False},
    ],
}


@pytest.fixture(scope="module")
def ct_path():
    return example_case().ct


def _cli(*args) -> int:
    torch.manual_seed(0)
    return main(["segment", "-q", "--model", "ctsam3d-lite", "--untrained", *map(str, args)])


def test_prompts_file_equals_session_api(tmp_path, ct_path):
    f = tmp_path / "p.json"
    f.write_text(json.dumps(DOC))
    out = tmp_path / "m.nii.gz"
    assert _cli("-i", ct_path, "-o", out, "--prompts", f, "--no-expansion") == 0
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = Session(load_model("ctsam3d-lite"), expansion=False)
    s.set_image(ct_path)
    p = DOC["prompts"]
    s.add_lasso(p[0]["points"])
    assert sitk.GetArrayFromImage(s.result())[25, 58:69, 58:69].all()  # the lasso's inside on its slice (k = 25)
    s.add_box2d(*p[1]["corners"])
    s.add_scribble(p[2]["points"])
    s.add_click(p[3]["point"], positive=False)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out))), sitk.GetArrayFromImage(s.result()))


@pytest.mark.parametrize("content,message", [
    ("{", "not a valid JSON prompts file"),
    (json.dumps({"prompts": []}), "non-empty list"),
    (json.dumps({"prompt": []}), "unknown key"),
    (json.dumps([{"type": "circle", "point": [1, 2, 3]}]), "type must be one of"),
    (json.dumps([{"type": "click", "point": [1, 2]}]), "point 1 must be three numbers"),
    (json.dumps([{"type": "click", "point": [1, 2, 3], "postive": False}]), "unknown key(s) 'postive'"),
    (json.dumps([{"type": "click", "point": [1, 2, 3], "positive": False}]), "first prompt must add foreground"),
    (json.dumps([{"type": "box", "corners": [[1, 2, 3]]}]), "two points"),
    (json.dumps([{"type": "lasso", "points": [[1, 2, 3]] * 3, "space": "voxel"}]), "space must be"),
    (json.dumps([{"type": "scribble", "points": [[1, 2, 3]], "axis": "k"}]), "box2d and lasso only"),
    (json.dumps([{"type": "lasso", "points": [[58, 58, 25], [68, 58, 25], [68, 68, 26]]}]), "prompt 1 (lasso)"),
    (json.dumps([{"type": "click", "point": [500, 5, 5]}]), "outside the image"),
])
def test_bad_prompts_files(tmp_path, ct_path, capsys, content, message):
    f = tmp_path / "p.json"
    f.write_text(content)
    out = tmp_path / "m.nii.gz"
    rc = _cli("-i", ct_path, "-o", out, "--prompts", f, "--no-expansion")
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("ctsam3d: error:") and message in err[0], err
    assert not out.exists()


def test_prompts_and_clicks_exclusive_and_missing_file(tmp_path, ct_path, capsys):
    out = tmp_path / "m.nii.gz"
    assert _cli("-i", ct_path, "-o", out, "--prompts", tmp_path / "none.json") == 2
    assert "prompts file not found" in capsys.readouterr().err
    f = tmp_path / "p.json"
    f.write_text(json.dumps(DOC))
    assert _cli("-i", ct_path, "-o", out, "--prompts", f, "--click", "1,2,3") == 2
    assert "not also as --click" in capsys.readouterr().err and not out.exists()


def test_parse_prompts_defaults():
    specs = parse_prompts({"space": "world", "prompts": [{"type": "box", "corners": [[0, 0, 0], [1, 1, 1]]},
                                                         {"type": "lasso", "points": [[0, 0, 0]] * 3, "space": "ras",
                                                          "axis": "k", "positive": False}]})
    assert [(s.type, s.space, s.positive, s.axis, s.number) for s in specs] == [
        ("box", "world", True, None, 1), ("lasso", "ras", False, "k", 2)]
    with pytest.raises(InputError, match="always positive"):
        parse_prompts([{"type": "box", "corners": [[0, 0, 0], [1, 1, 1]], "positive": False}])
