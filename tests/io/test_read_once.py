"""A whole integer ``.nii.gz`` is decompressed once (by ITK), not first by the truncation
check; a file cut short, even by its last byte, is still refused."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import SimpleITK as sitk

from ctsam3d.errors import InputError
from ctsam3d.io import read_volume
from ctsam3d.io import validate


@pytest.fixture
def ct_gz(tmp_path):
    arr = np.random.default_rng(0).integers(-1024, 2000, (20, 30, 40)).astype(np.int16)
    path = tmp_path / "ct.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(arr), str(path), True)
    return path, arr


def test_whole_integer_file_is_decompressed_once(ct_gz, monkeypatch):
    path, arr = ct_gz
    read = []
    real_open = gzip.open

    class Counting:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def read(self, n=-1):
            out = self.f.read(n)
            read.append(len(out))
            return out

    monkeypatch.setattr(validate.gzip, "open", lambda *a, **k: Counting(real_open(*a, **k)))
    img = read_volume(path)
    assert np.array_equal(sitk.GetArrayViewFromImage(img), arr)
    # header reads only (540 bytes each), not the 48 kB of voxels
    assert sum(read) <= 4 * 540, f"the checks decompressed {sum(read)} bytes: more than headers"


@pytest.mark.parametrize("cut", [1, 4, 1000])
def test_cut_short_is_refused(ct_gz, tmp_path, cut):
    path, _ = ct_gz
    data = path.read_bytes()
    bad = tmp_path / "cut.nii.gz"
    bad.write_bytes(data[: len(data) - cut])
    with pytest.raises(InputError, match="cut.nii.gz"):
        read_volume(bad)
