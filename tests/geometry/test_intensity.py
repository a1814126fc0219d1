"""HU window normalisation."""

import numpy as np
import pytest

from ctsam3d.geometry import normalize_hu


@pytest.mark.parametrize(
    "hu, window, expected",
    [
        ([-125, 225, 50], (-125, 225), [0.0, 1.0, 0.5]),
        ([-1024, 3000], (-125, 225), [0.0, 1.0]),
        ([0, 100, 200], (0, 400), [0.0, 0.25, 0.5]),
    ],
)
def test_normalize_hu(hu, window, expected):
    out = normalize_hu(np.asarray(hu, dtype=np.int16), window)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, atol=1e-6)


def test_default_window_and_shape_kept():
    x = np.random.default_rng(0).normal(0, 500, (4, 5, 6))
    out = normalize_hu(x)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    np.testing.assert_allclose(out, np.clip((x + 125) / 350, 0, 1), atol=1e-6)


def test_bad_window():
    with pytest.raises(ValueError):
        normalize_hu(np.zeros(3), (10, 10))
