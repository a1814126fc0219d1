"""``ctsam3d evaluate --no-refine / --no-mirror`` reach the evaluated sessions and the report."""

from __future__ import annotations

import pytest

from ctsam3d.cli.evaluate_cmd import build_methods


@pytest.mark.parametrize(
    "kwargs, refine, mirror",
    [({}, True, True), ({"no_refine": True}, False, True), ({"no_mirror": True}, True, False)],
)
def test_session_options_reach_the_method_and_its_description(kwargs, refine, mirror):
    (method,) = build_methods(["model"], ["ctsam3d-lite-wb"], "cpu", None, **kwargs)
    assert method._session.refinement.enabled is refine and method._session.mirror is mirror
    described = method.describe()
    assert described["refine"] is refine and described["mirror"] is mirror
