"""The page's display volume (``view?max_voxels=``): block factors, block means, and a
geometry whose voxel centres are the blocks' centres, so world positions (clicks, markers)
agree with the full-resolution CT."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from server_helpers import nifti_sform_ras, read_nifti_bytes, synthetic_ct

from ctsam3d.server.routes_view import display_factors, downsample


@pytest.mark.parametrize("size, spacing, limit, want", [
    ((512, 512, 300), (0.715, 0.715, 1.12), 10_000_000, (2, 2, 2)),
    ((512, 512, 133), (0.715, 0.715, 2.53), 10_000_000, (2, 2, 1)),
    ((128, 128, 128), (4.0, 4.0, 2.5), 10_000_000, (1, 1, 1)),
    ((40, 36, 32), (2.0, 2.5, 3.0), 10_000, (2, 2, 2)),  # finest axis first, then the next finest
    ((10, 10, 10), (1.0, 1.0, 1.0), 1, (10, 10, 10)),
])
def test_display_factors(size, spacing, limit, want):
    f = display_factors(size, spacing, limit)
    assert f == want
    assert np.prod([-(-n // k) for n, k in zip(size, f)]) <= max(limit, 1)


@pytest.mark.parametrize("code", ["LPS", "PLI"])
def test_downsample_is_a_block_mean_centred_on_the_blocks(code):
    img, _ = synthetic_ct(code)
    arr = sitk.GetArrayFromImage(img)  # [k, j, i]
    f = (3, 5, 3)  # i, j, k: no size is a multiple, so every axis ends in a partial block
    small = downsample(img, f)
    sa = sitk.GetArrayFromImage(small)
    assert small.GetSize() == tuple(-(-n // k) for n, k in zip(img.GetSize(), f))
    assert small.GetPixelID() == img.GetPixelID() and small.GetDirection() == img.GetDirection()
    # a whole block: the mean of its voxels, rounded
    i, j, k = 3, 2, 4
    block = arr[3 * k:3 * k + 3, 5 * j:5 * j + 5, 3 * i:3 * i + 3]
    assert abs(float(sa[k, j, i]) - block.mean()) <= 0.5 + 1e-6
    # the last, partial block along each axis: the edge voxels repeated to fill it
    ni, nj, nk = img.GetSize()
    last = np.pad(arr, [(0, (-nk) % 3), (0, (-nj) % 5), (0, (-ni) % 3)], mode="edge")[-3:, -5:, -3:]
    assert abs(float(sa[-1, -1, -1]) - last.mean()) <= 0.5 + 1e-6
    # display voxel (i, j, k) sits at the centre of its block of CT voxels
    centre = img.TransformContinuousIndexToPhysicalPoint((3 * i + 1.0, 5 * j + 2.0, 3 * k + 1.0))
    assert np.allclose(small.TransformIndexToPhysicalPoint((i, j, k)), centre, atol=1e-6)


def test_route_serves_full_and_coarse_volumes(client, tmp_path):
    sid = client.post("/api/sessions", json={"image": "pli.nii.gz"}).json()["session_id"]
    full = client.get(f"/api/sessions/{sid}/view")
    assert full.status_code == 200 and full.headers["x-display-factors"] == "1,1,1"
    img, _ = synthetic_ct("PLI")
    assert read_nifti_bytes(full.content, tmp_path).GetSize() == img.GetSize()
    coarse = client.get(f"/api/sessions/{sid}/view", params={"max_voxels": 1_000_000})
    assert coarse.status_code == 200  # the synthetic CT is small: already within the limit
    assert coarse.headers["x-display-factors"] == "1,1,1"
    assert client.get(f"/api/sessions/{sid}/view", params={"max_voxels": 5}).status_code == 422
    assert client.get("/api/sessions/nope/view").status_code in (400, 404)  # no such session


def test_coarse_volume_keeps_world_positions(client, tmp_path, monkeypatch):
    """With the limit below the CT's size, the sform of the display volume maps a display voxel to
    the RAS position of its block's centre in the CT."""
    import ctsam3d.server.routes_view as rv

    monkeypatch.setattr(rv, "display_factors", lambda size, spacing, limit: (2, 2, 2))
    sid = client.post("/api/sessions", json={"image": "lps.nii.gz"}).json()["session_id"]
    r = client.get(f"/api/sessions/{sid}/view", params={"max_voxels": 1_000_000})
    assert r.headers["x-display-factors"] == "2,2,2"
    img, _ = synthetic_ct("LPS")
    small = read_nifti_bytes(r.content, tmp_path)
    assert small.GetSize() == tuple(-(-n // 2) for n in img.GetSize())
    lps = img.TransformContinuousIndexToPhysicalPoint((2 * 3 + 0.5, 2 * 4 + 0.5, 2 * 5 + 0.5))
    ras = nifti_sform_ras(r.content) @ np.array([3, 4, 5, 1.0])
    assert np.allclose(ras[:3], (-lps[0], -lps[1], lps[2]), atol=1e-3)


def test_cache_is_bounded_in_entries_and_bytes():
    from ctsam3d.server.routes_view import DisplayCache

    cache = DisplayCache(entries=3, max_bytes=100)
    made = []

    def maker(key, n):
        def make():
            made.append(key)
            return b"x" * n
        return make

    for k in range(5):
        cache.get(k, maker(k, 20))
    assert list(cache._data) == [2, 3, 4]  # at most 3 entries, least recently used dropped
    cache.get(2, maker(2, 20))
    assert made == [0, 1, 2, 3, 4]  # a hit computes nothing
    cache.get("big", maker("big", 60))  # over half the byte budget: returned, not kept
    assert "big" not in cache._data
    cache.get("a", maker("a", 45))
    cache.get("b", maker("b", 45))
    assert sum(map(len, cache._data.values())) <= 100
    assert cache._key_locks == {}
