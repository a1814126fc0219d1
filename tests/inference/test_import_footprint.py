"""The inference path imports only what it uses (issue 20): ``ctsam3d.load_model``, ``Session``
(set an image, click, result) and ``ctsam3d segment`` to a NIfTI mask must not import training,
evaluation, plotting, DICOM or DICOM-SEG libraries, nor the project's training / evaluation /
data / server packages. MONAI alone took 2.5-3.6 s of every ``ctsam3d segment`` run.

Each path runs in a fresh interpreter (this test process has imported everything already);
the child prints the names in ``sys.modules`` after the work is done.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ctsam3d.examples import example_case

#: Third-party packages the inference path must not import (training, evaluation, plotting, DICOM).
FORBIDDEN = ("monai", "matplotlib", "highdicom", "pydicom", "skimage", "pandas", "yaml", "tensorboard",
             "nibabel", "PIL", "fastapi", "sklearn")
#: Project packages the inference path must not import.
FORBIDDEN_OWN = ("ctsam3d.training", "ctsam3d.evaluation", "ctsam3d.data", "ctsam3d.server", "ctsam3d.clicks")

API = """
import json, sys, warnings
import ctsam3d
warnings.simplefilter("ignore")  # untrained preset
model = ctsam3d.load_model("ctsam3d-lite")
s = ctsam3d.Session(model, expansion=False)  # an untrained net would expand far: slow
s.set_image(sys.argv[1])
s.add_click((64, 64, 64))
s.add_click((70, 60, 64), positive=False)
mask = s.result()
assert mask.GetSize() == s.image.GetSize()
print(json.dumps(sorted(sys.modules)))
"""

CLI = """
import json, sys
from ctsam3d.cli.main import main
rc = main(["segment", "-q", "-i", sys.argv[1], "-o", sys.argv[2], "--model", "ctsam3d-lite", "--untrained", "--no-expansion",
           "--click", "64,64,64"])
assert rc == 0, rc
print(json.dumps(sorted(sys.modules)))
"""


def _modules_after(code: str, *args: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def _offenders(modules: set[str]) -> list[str]:
    bad = sorted({m.split(".")[0] for m in modules} & set(FORBIDDEN))
    bad += sorted({own for own in FORBIDDEN_OWN for m in modules if m == own or m.startswith(own + ".")})
    return bad


@pytest.mark.parametrize("path", ["api", "cli"])
def test_inference_path_imports_no_training_or_plotting_library(path, tmp_path):
    ct = str(example_case().ct)
    if path == "api":
        modules = _modules_after(API, ct)
    else:
        out = tmp_path / "mask.nii.gz"
        modules = _modules_after(CLI, ct, str(out))
        assert out.is_file()
    assert "torch" in modules and "ctsam3d.inference.session" in modules  # it did run the path
    assert _offenders(modules) == [], f"the {path} path imported {_offenders(modules)}"
