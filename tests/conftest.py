"""Shared test fixtures: paths to ``../shared`` (skip when absent) and the small real CT fixture."""

from __future__ import annotations

import locale
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared"
SHARED_DATA = SHARED / "data"
TEST_DATA = Path(__file__).resolve().parent / "data"

#: The small real CT fixture (OpenKBP pt_203, MIT; see tests/data/README.md).
FIXTURE_CT = TEST_DATA / "openkbp_pt_203_ct.nii.gz"
FIXTURE_LABELS = TEST_DATA / "openkbp_pt_203_oars.nii.gz"


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data``; skips the test when it is not there."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs {SHARED_DATA} (not present on this machine)")
    return SHARED_DATA


@pytest.fixture
def test_data() -> Path:
    """``tests/data`` (always present)."""
    return TEST_DATA


@pytest.fixture
def fixture_ct() -> Path:
    """Path of the small real CT (128^3, PLI, anisotropic spacing)."""
    return FIXTURE_CT


@pytest.fixture
def fixture_labels() -> Path:
    """Path of the small real CT's label map (OpenKBP organs at risk) with a JSON sidecar."""
    return FIXTURE_LABELS


@pytest.fixture(autouse=True)
def _keep_process_locale():
    """SimpleITK's GDCM DICOM writer (used by test helpers to build DICOM series) switches the
    process's C locale to "C" and leaves it so; Python would then decode text as ASCII in every
    later test. Restore it after each test."""
    saved = locale.setlocale(locale.LC_ALL)
    yield
    if locale.setlocale(locale.LC_ALL) != saved:
        locale.setlocale(locale.LC_ALL, saved)


@pytest.fixture(autouse=True, scope="session")
def _private_models_home(tmp_path_factory):
    """Models installed on the developer's machine (``$CTSAM3D_HOME``, ``~/.cache/ctsam3d``) must not
    change which model ``load_model()`` picks in tests: point it at an empty folder for the run."""
    import os

    saved = os.environ.get("CTSAM3D_HOME")
    os.environ["CTSAM3D_HOME"] = str(tmp_path_factory.mktemp("ctsam3d-home"))
    yield
    if saved is None:
        os.environ.pop("CTSAM3D_HOME", None)
    else:
        os.environ["CTSAM3D_HOME"] = saved
