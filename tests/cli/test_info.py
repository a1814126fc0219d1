"""``ctsam3d info``: text and JSON output, label names, errors, and every file in ../shared/data."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from ctsam3d.cli import info_cmd
from ctsam3d.cli.main import main

# the same folder as tests/conftest.py's SHARED_DATA (not imported: with several test folders
# on the command line, "conftest" may name another folder's conftest module)
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def _run(capsys, *argv):
    rc = main(["info", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def test_ct_text(capsys, fixture_ct):
    rc, out, err = _run(capsys, "-i", fixture_ct)
    assert rc == 0
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    assert fields["size"].strip() == "128 x 128 x 128 voxels (i, j, k)"
    assert fields["orientation"].strip() == "PLI"
    assert fields["spacing"].strip().startswith("3.906 x 3.906 x 3")
    assert fields["origin"].strip() == "(0, 0, 0) mm LPS"
    assert fields["HU range"].strip().startswith("-1024 .. ")
    assert "labels" not in fields


def test_label_map_with_sidecar_names(capsys, fixture_labels):
    rc, out, _ = _run(capsys, "-i", fixture_labels)
    assert rc == 0
    rows = {int(parts[0]): (int(parts[1]), parts[2]) for parts in (ln.split() for ln in out.splitlines()) if parts and parts[0].isdigit()}
    arr = sitk.GetArrayFromImage(sitk.ReadImage(str(fixture_labels)))
    assert set(rows) == set(np.unique(arr).tolist())
    assert rows[1] == (int((arr == 1).sum()), "brainstem")
    assert rows[6][1] == "larynx"
    assert "5 present" in out


def test_catalogue_names_and_json(capsys, fixture_labels, tmp_path):
    copy = tmp_path / "labels.nii.gz"  # no sidecar next to the copy
    shutil.copy(fixture_labels, copy)
    rc, out, _ = _run(capsys, "-i", copy, "--json")
    info = json.loads(out)
    assert rc == 0 and info["orientation"] == "PLI" and info["size"] == [128, 128, 128]
    assert {x["id"]: x["name"] for x in info["labels"]}[2] is None
    rc, out, _ = _run(capsys, "-i", copy, "--json", "--catalogue", "openkbp")
    assert {x["id"]: x["name"] for x in json.loads(out)["labels"]}[2] == "spinal_cord"


def test_label_flag_on_float_labels(capsys, tmp_path):
    arr = np.zeros((4, 5, 6), np.float32)
    arr[1, 2, 3] = 300
    path = tmp_path / "float_labels.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(path))
    rc, out, _ = _run(capsys, "-i", path, "--label", "--json")
    assert rc == 0
    assert {x["id"]: x["voxels"] for x in json.loads(out)["labels"]} == {0: 119, 300: 1}


@pytest.mark.parametrize(
    "argv, words",
    [
        (["-i", "/nonexistent/ct.nii.gz"], "no such file"),
        (["-i", "tests/data/openkbp_pt_203_oars.nii.gz", "--catalogue", "nope"], "unknown catalogue"),
    ],
)
def test_errors_are_one_line(capsys, argv, words):
    argv = [str(Path(__file__).resolve().parents[2] / a) if a.startswith("tests/") else a for a in argv]
    rc, out, err = _run(capsys, *argv)
    assert rc == 2 and out == ""
    assert err.strip().count("\n") == 0 and words in err and "Traceback" not in err


def _shared_inputs() -> list:
    """Every data file under ../shared/data; for a DICOM series, its folder and one slice file
    (every other slice of the series reads the same whole series)."""
    if not SHARED_DATA.is_dir():
        return [pytest.param(None, id="no-shared-data",
                             marks=pytest.mark.skip(reason=f"needs {SHARED_DATA} (not present on this machine)"))]
    inputs, seen_dicom_dirs = [], set()
    for p in sorted(SHARED_DATA.rglob("*")):
        if p.is_dir() or p.suffix in (".md", ".json"):
            continue
        rel = p.relative_to(SHARED_DATA)
        if p.parent.name.startswith(("example_ct_dicom", "ct_3slice")):
            if p.parent in seen_dicom_dirs:
                continue
            seen_dicom_dirs.add(p.parent)
            inputs.append(pytest.param(p.parent, id=str(p.parent.relative_to(SHARED_DATA)) + "/"))
        inputs.append(pytest.param(p, id=str(rel)))
    return inputs


@pytest.mark.parametrize("path", _shared_inputs())
def test_info_on_every_shared_file(path, shared_data, capsys):
    # info_cmd.run directly: the subcommand itself, without re-building the whole parser 430 times
    rc = info_cmd.run(argparse.Namespace(input=str(path), label=False, catalogue=None, json=True, verbose=False))
    out, err = capsys.readouterr()
    assert rc == 0, err
    info = json.loads(out)
    assert len(info["size"]) == 3 and min(info["size"]) >= 3
    assert len(info["orientation"]) == 3
    if path.name.endswith("_oars.nii.gz") or "labelmaps" in str(path) or path.suffix == ".dcm" and path.name == "liver.dcm":
        assert "labels" in info
