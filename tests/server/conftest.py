"""Fixtures of the server tests: one untrained ``ctsam3d-lite`` model (real network, real
:class:`ctsam3d.Session`), a data folder of synthetic CTs stored RAS, LPS and PLI plus the
bundled example CT, and a TestClient factory."""

from __future__ import annotations

import shutil
import warnings

import pytest
import torch
from server_helpers import make_client, write_case

import ctsam3d
from ctsam3d.examples import example_case


@pytest.fixture(scope="session")
def lite_model():
    """Random-init ``ctsam3d-lite`` (protocol tests need the real network, not its accuracy)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "untrained weights"
        model = ctsam3d.load_model("ctsam3d-lite")
    yield model
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """``--data`` folder: ``ras.nii.gz``, ``lps.nii.gz``, ``pli.nii.gz`` (+ ``*_label``), ``sub/example_ct.nii.gz``."""
    root = tmp_path_factory.mktemp("data")
    for code in ("RAS", "LPS", "PLI"):
        write_case(root, code.lower(), code)
    case = example_case()
    (root / "sub").mkdir()
    shutil.copy(case.ct, root / "sub" / "example_ct.nii.gz")
    return root


@pytest.fixture
def client(lite_model, data_dir, tmp_path):
    with make_client(lite_model, tmp_path / "state", data_dir) as c:
        yield c
