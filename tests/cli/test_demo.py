"""``ctsam3d demo``: outputs, consistency of the printed Dice, errors, ``--serve`` hand-off.

Accuracy is checked only with the bundled trained weights (skipped when they are absent);
the other tests use the untrained ``ctsam3d-lite`` preset and check behaviour.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from ctsam3d.cli.main import main
from ctsam3d.examples import example_case
from ctsam3d.modeling.checkpoint import BUNDLED_DIR

FAST = ["--model", "ctsam3d-lite", "--untrained", "--no-expansion", "--clicks", "2", "--structures", "brainstem,mandible"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    torch.manual_seed(0)
    rc = main(["demo", "-q", "-o", str(out), *FAST])
    return rc, out


def test_demo_writes_masks_label_map_overview_and_summary(demo_run, capsys):
    rc, out = demo_run
    assert rc == 0
    case = example_case()
    ref = sitk.ReadImage(str(case.ct))
    for name in ("brainstem", "mandible"):
        m = sitk.ReadImage(str(out / f"{name}.nii.gz"))
        assert m.GetSize() == ref.GetSize()
        np.testing.assert_allclose(m.GetDirection(), ref.GetDirection())
    lm = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "labels.nii.gz")))
    assert set(np.unique(lm)) <= {0, 1, 2}
    assert json.loads((out / "labels.json").read_text()) == {"1": "brainstem", "2": "mandible"}
    png = (out / "overview.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    summary = json.loads((out / "demo.json").read_text())
    assert summary["model"] == "ctsam3d-lite" and summary["trained"] is False
    assert [r["structure"] for r in summary["structures"]] == ["brainstem", "mandible"]
    for r in summary["structures"]:
        assert 1 <= len(r["dice"]) <= 2 and len(r["ms_per_click"]) == len(r["dice"])
        assert all(0.0 <= d <= 1.0 for d in r["dice"]) and all(t > 0 for t in r["ms_per_click"])


def test_reported_dice_matches_written_masks(demo_run):
    _, out = demo_run
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(example_case().labels)))
    summary = json.loads((out / "demo.json").read_text())
    for r in summary["structures"]:
        pred = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"{r['structure']}.nii.gz"))) > 0
        ref = labels == r["label"]
        d = 2 * (pred & ref).sum() / (pred.sum() + ref.sum())
        assert d == pytest.approx(r["dice"][-1], abs=1e-9)


def test_demo_prints_a_table(tmp_path, capsys):
    torch.manual_seed(0)
    assert main(["demo", "-q", "-o", str(tmp_path), "--model", "ctsam3d-lite", "--untrained", "--no-expansion",
                 "--clicks", "1", "--structures", "brainstem"]) == 0
    text = capsys.readouterr().out
    assert "UNTRAINED" in text and "brainstem" in text and "ms/click" in text and "Dice@1" in text


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--structures", "liver"], "unknown structure 'liver'"),
        (["--clicks", "0"], "--clicks 0"),
        (["-d", "cuda:99"], "-d cuda:99"),
    ],
)
def test_demo_errors(tmp_path, capsys, extra, message):
    rc = main(["demo", "-q", "-o", str(tmp_path), "--model", "ctsam3d-lite", "--untrained", *extra])
    assert rc == 2 and message in capsys.readouterr().err


def test_demo_refuses_to_overwrite(demo_run, capsys):
    _, out = demo_run
    assert main(["demo", "-q", "-o", str(out), *FAST]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_serve_hands_the_example_to_the_web_tool(tmp_path, monkeypatch):
    pytest.importorskip("ctsam3d.server")
    from ctsam3d.cli import serve_cmd

    seen = {}
    monkeypatch.setattr(serve_cmd, "run", lambda a: seen.setdefault("args", a) and 0)
    torch.manual_seed(0)
    rc = main(["demo", "-q", "-o", str(tmp_path), "--model", "ctsam3d-lite", "--untrained", "--no-expansion",
               "--clicks", "1", "--structures", "brainstem", "--serve"])
    assert rc == 0
    args = seen["args"]
    assert args.data == tmp_path / "data" and (args.data / example_case().ct.name).is_file()
    assert args.model == "ctsam3d-lite" and args.no_expansion and args.host == "127.0.0.1"


@pytest.mark.skipif(not (BUNDLED_DIR / "model.safetensors").is_file(), reason="no trained weights bundled")
def test_demo_with_bundled_weights_segments_the_organs(tmp_path):
    assert main(["demo", "-q", "-o", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "demo.json").read_text())
    assert summary["trained"] is True
    final = {r["structure"]: r["dice"][-1] for r in summary["structures"]}
    assert np.mean(list(final.values())) > 0.5, final
