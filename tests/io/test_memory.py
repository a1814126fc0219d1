"""The memory bound (ctsam3d.io.memory): sizes, the estimate, the limit's sources, and that a
refusal happens on the header, before any voxel is decoded."""

from __future__ import annotations

import gzip
import struct

import pytest
import SimpleITK as sitk

from ctsam3d.errors import InputError
from ctsam3d.io import memory, read_volume


@pytest.mark.parametrize("text, expected", [
    ("6G", 6 << 30), ("512M", 512 << 20), ("2.5GiB", int(2.5 * (1 << 30))), ("1e9", 10**9), ("100", 100),
    ("8 gb", 8 << 30), ("64k", 64 << 10), ("off", None), ("0", None), ("none", None),
])
def test_parse_size(text, expected):
    assert memory.parse_size(text) == expected


@pytest.mark.parametrize("text", ["lots", "-1G", "G", "1.2.3M", ""])
def test_parse_size_refuses(text):
    with pytest.raises(InputError, match="not a memory size"):
        memory.parse_size(text)


def test_estimate():
    # NIfTI: two copies of the stored voxels while decoding; else pixel bytes + the pipeline's 3
    assert memory.estimate_bytes(1000, "16-bit signed integer", kind="nifti") == 1000 * 5
    assert memory.estimate_bytes(1000, "32-bit float", kind="nifti") == 1000 * 8
    assert memory.estimate_bytes(1000, "8-bit unsigned integer", kind="other") == 1000 * 4
    assert memory.pixel_bytes("64-bit float") == 8 and memory.pixel_bytes("?") == 8
    assert memory.file_kind("a/B.NII.GZ") == "nifti" and memory.file_kind("b.mha") == "other"


def test_limit_sources(monkeypatch):
    monkeypatch.delenv(memory.MAX_MEMORY_ENV, raising=False)
    avail = memory.available_memory()
    if avail is not None:
        lim = memory.memory_limit()
        assert lim.bytes == int(avail * memory.MEMORY_FRACTION) or abs(lim.bytes - avail * 0.8) < 0.2 * avail
        assert "available" in lim.source
    monkeypatch.setenv(memory.MAX_MEMORY_ENV, "3G")
    assert memory.memory_limit().bytes == 3 << 30
    assert memory.memory_limit("1M").bytes == 1 << 20  # the argument wins over the variable
    monkeypatch.setenv(memory.MAX_MEMORY_ENV, "off")
    assert memory.memory_limit().bytes is None


def test_refused_from_the_header_before_decoding(tmp_path, monkeypatch):
    """A .nii.gz whose header declares 1000 x 1000 x 1400 int16 (the issue's 2.7 MB file decodes
    to 2.8 GB): refused with a tight limit without ITK decoding a voxel."""
    img = sitk.Image(8, 8, 8, sitk.sitkInt16)
    sitk.WriteImage(img, str(tmp_path / "small.nii"))
    raw = bytearray((tmp_path / "small.nii").read_bytes())
    raw[40:56] = struct.pack("<8h", 3, 1000, 1000, 1400, 1, 1, 1, 1)
    path = tmp_path / "claims_huge.nii.gz"
    path.write_bytes(gzip.compress(bytes(raw)))

    def no_decoding(self, *a, **k):
        raise AssertionError("voxels decoded before the memory check")

    monkeypatch.setattr(sitk.ImageFileReader, "Execute", no_decoding)
    with pytest.raises(InputError, match=r"needs about 6\.5 GiB of memory, over the limit of 1\.0 GiB") as info:
        read_volume(path, max_memory="1G")
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    monkeypatch.setenv(memory.MAX_MEMORY_ENV, "2G")
    with pytest.raises(InputError, match=f"set by {memory.MAX_MEMORY_ENV}"):
        read_volume(path)
