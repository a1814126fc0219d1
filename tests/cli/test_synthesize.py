"""``ctsam3d synthesize``: writes a loadable cache; refuses bad input with no partial output."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))

from synth_helpers import write_labelmap  # noqa: E402

from ctsam3d.cli.main import main  # noqa: E402
from ctsam3d.data import load_cache  # noqa: E402


def test_synthesize_labelmaps_writes_cache(tmp_path):
    lm = write_labelmap(tmp_path / "tiny.nii.gz")
    out = tmp_path / "cache"
    assert main(["synthesize", "--labelmaps", str(lm), "--variants", "2", "--min-spacing", "0", "-o", str(out), "-q"]) == 0
    cases = load_cache(out)
    assert [c.case_id for c in cases] == ["tiny_v000", "tiny_v001"]
    c = cases[0]
    assert c.ct.dtype == np.int16 and set(c.known) == {"liver", "aorta", "kidney_left"}
    assert c.spacing_zyx == (3.0, 2.0, 2.0)
    assert not np.array_equal(cases[0].label, cases[1].label) or not np.array_equal(cases[0].ct, cases[1].ct)


def test_synthesize_missing_file(tmp_path, capsys):
    out = tmp_path / "cache"
    assert main(["synthesize", "--labelmaps", str(tmp_path / "nope.nii.gz"), "-o", str(out), "-q"]) == 2
    assert "nope.nii.gz" in capsys.readouterr().err and not out.exists()


def test_synthesize_non_integer_labelmap(tmp_path, capsys):
    good = write_labelmap(tmp_path / "a.nii.gz")
    bad = write_labelmap(tmp_path / "b.nii.gz", dtype=np.float32, values=0.5)
    out = tmp_path / "cache"
    assert main(["synthesize", "--labelmaps", str(good), str(bad), "-o", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    assert "b.nii.gz" in err and "non-integer" in err and not out.exists()


def test_synthesize_unknown_names(tmp_path, capsys):
    lm = write_labelmap(tmp_path / "c.nii.gz", sidecar=False)
    assert main(["synthesize", "--labelmaps", str(lm), "-o", str(tmp_path / "cache"), "-q"]) == 2
    assert "sidecar" in capsys.readouterr().err and not (tmp_path / "cache").exists()


def test_synthesize_pseudo_from_real_ct(fixture_ct, tmp_path):
    out = tmp_path / "pseudo"
    assert main(["synthesize", "--pseudo-from", str(fixture_ct), "--max-structures", "12", "-o", str(out), "-q"]) == 0
    (case,) = load_cache(out)
    assert case.case_id.endswith("_pseudo") and 1 <= len(case.known) <= 12
    assert all(n.startswith("pseudo_") for n in case.known)


def test_synthesize_refuses_held_out(tmp_path, capsys):
    held = tmp_path / "aorta_crop" / "ct.nii.gz"
    held.parent.mkdir()
    held.write_bytes(b"")
    assert main(["synthesize", "--pseudo-from", str(held), "-o", str(tmp_path / "x"), "-q"]) == 2
    assert "held-out" in capsys.readouterr().err
