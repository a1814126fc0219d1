"""``ctsam3d segment`` as a program ends right after writing its mask (no interpreter teardown,
about 1 s after a PyTorch run): the mask is complete, the last progress line reached the
terminal, the exit status is 0; errors still exit 2 the normal way, and ``main([...])`` called
from Python returns instead of ending the process."""

from __future__ import annotations

import subprocess
import sys

import SimpleITK as sitk

from ctsam3d.cli.main import main
from ctsam3d.examples import example_case


def _segment(*extra: str) -> list[str]:
    return [sys.executable, "-m", "ctsam3d.cli.main", "segment", "-i", str(example_case().ct),
            "--model", "ctsam3d-lite", "--untrained", "--no-expansion", "--click", "64,64,64", *extra]


def test_program_exits_after_a_complete_mask_and_flushed_log(tmp_path):
    out = tmp_path / "mask.nii.gz"
    r = subprocess.run(_segment("-o", str(out)), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stderr.rstrip().splitlines()[-1].startswith(f"wrote {out}")
    mask = sitk.ReadImage(str(out))
    assert mask.GetSize() == sitk.ReadImage(str(example_case().ct)).GetSize()
    assert not list(tmp_path.glob(".*part*"))


def test_errors_exit_2_and_main_returns_when_called(tmp_path, capsys):
    r = subprocess.run(_segment("-o", str(tmp_path / "mask.txt")), capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "ctsam3d: error:" in r.stderr
    out = tmp_path / "m.nii.gz"
    args = ["segment", "-q", "-i", str(example_case().ct), "-o", str(out), "--model", "ctsam3d-lite",
            "--untrained", "--no-expansion", "--click", "64,64,64"]
    assert main(args) == 0 and out.is_file()  # still here: no os._exit from a Python call
