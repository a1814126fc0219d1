"""SparseVolume: the chunked probability store behind sessions (exact masks, exact undo)."""

from __future__ import annotations

import numpy as np
import pytest

from ctsam3d.inference.sparse_volume import SparseVolume, diff_box, quantize


def test_quantize_keeps_the_mask_exactly():
    p = np.array([0.0, 1e-9, 0.0039, 0.00391, 0.25, 0.4999, 0.5, 0.50001, 0.502, 0.75, 1.0, 2.0, -1.0], np.float32)
    q = quantize(p)
    np.testing.assert_array_equal(q >= 128, p > 0.5)
    np.testing.assert_array_equal(q == 0, p < 1 / 256)
    back = np.where(q > 0, (q.astype(np.float32) + 0.5) / 256.0, 0.0)
    ok = (p >= 0) & (p <= 1)
    assert np.all(np.abs(back[ok] - p[ok]) < 1 / 256 + 1e-7)


def test_tiny_probabilities_are_stored_as_exact_zeros():
    """Far from an object the previous mask must read back as exactly 0 (SPADE folding needs
    exact zeros) and whole chunks of tiny probabilities are not kept."""
    vals = np.full((16, 16, 16), 1e-4, np.float32)
    vals[4:8, 4:8, 4:8] = 0.9
    v = SparseVolume(chunk=8)
    v.write((0, 0, 0), vals)
    got = v.read((0, 0, 0), vals.shape)
    assert np.count_nonzero(got) == 64
    assert len(v.chunks) == 1


@pytest.mark.parametrize("start", [(0, 0, 0), (-5, 3, 40), (31, 31, 31), (7, -40, 100)])
def test_write_read_roundtrip_at_any_offset(start):
    rng = np.random.default_rng(0)
    vals = rng.random((20, 9, 37)).astype(np.float32)
    v = SparseVolume(chunk=8)
    box = v.write(start, vals)
    got = v.read(start, vals.shape)
    np.testing.assert_array_equal(got > 0.5, vals > 0.5)
    assert np.max(np.abs(got - vals)) < 1 / 128
    np.testing.assert_array_equal(v.read_mask(start, vals.shape), vals > 0.5)
    assert v.count() == int((vals > 0.5).sum())
    fg = np.argwhere(vals > 0.5) + np.asarray(start)
    np.testing.assert_array_equal(box[0], fg.min(axis=0))
    np.testing.assert_array_equal(box[1], fg.max(axis=0) + 1)
    np.testing.assert_array_equal(v.bounds(mask_only=True)[0], fg.min(axis=0))
    # outside the written box nothing is stored
    assert v.read(np.asarray(start) - 3, (3, 3, 3)).max() == 0


def test_max_and_replace_modes_and_changed_box():
    v = SparseVolume(chunk=4)
    a = np.zeros((6, 6, 6), np.float32)
    a[1:3, 1:3, 1:3] = 0.9
    v.write((0, 0, 0), a)
    b = np.zeros((6, 6, 6), np.float32)
    b[4, 4, 4] = 0.8
    box = v.write((0, 0, 0), b, mode="max")
    assert v.count() == 9  # both kept
    assert tuple(box[0]) == (4, 4, 4) and tuple(box[1]) == (5, 5, 5)
    box = v.write((0, 0, 0), b, mode="replace")  # the first block disappears
    assert v.count() == 1
    assert tuple(box[0]) == (1, 1, 1) and tuple(box[1]) == (3, 3, 3)
    assert v.write((0, 0, 0), b, mode="replace") is None  # nothing changed
    v.write((0, 0, 0), np.zeros((6, 6, 6), np.float32), mode="replace")
    assert len(v) == 0 and v.count() == 0 and v.bounds() is None
    with pytest.raises(ValueError):
        v.write((0, 0, 0), b, mode="sum")


def test_snapshot_is_isolated_from_later_writes():
    v = SparseVolume(chunk=4)
    v.write((0, 0, 0), np.full((5, 5, 5), 0.9, np.float32))
    snap = v.snapshot()
    before = v.read((0, 0, 0), (5, 5, 5))
    v.write((2, 2, 2), np.zeros((5, 5, 5), np.float32), mode="replace")
    box = diff_box(snap[0], v.chunks, v.chunk)
    assert tuple(box[0]) == (2, 2, 2) and tuple(box[1]) == (5, 5, 5)
    v.restore(snap)
    np.testing.assert_array_equal(v.read((0, 0, 0), (5, 5, 5)), before)
    assert v.count() == 125
    assert diff_box(snap[0], v.chunks, v.chunk) is None
