"""Fixtures for the inference tests (helpers live in inference_fakes.py)."""

import pytest
from inference_fakes import BrightComponentModel


@pytest.fixture
def fake_model():
    return BrightComponentModel()
