"""The one dict -> dataclass builder behind the model and training configurations."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from ctsam3d.errors import CheckpointError, InputError
from ctsam3d.typed_dict import from_dict, to_plain


@dataclass
class Inner:
    size: tuple[int, int, int]
    scale: float = 1.0


@dataclass
class Outer:
    name: str
    inner: Inner
    cache: str | list[str] = ""
    names: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    flag: bool = False
    limit: float | None = None


GOOD = {"name": "a", "inner": {"size": [1, 2, 3], "scale": "3e-4"}, "names": ["x"], "limit": None}


def test_builds_nested_typed_values_and_round_trips():
    o = from_dict(Outer, GOOD, "config", InputError)
    assert o.inner.size == (1, 2, 3) and o.inner.scale == 3e-4 and o.names == ["x"] and o.limit is None
    assert from_dict(Outer, to_plain(o), "config", InputError) == o


@pytest.mark.parametrize(
    "change, message",
    [
        ({"bogus": 1}, r"config: unknown config key\(s\) \['bogus'\] in the top level"),
        ({"inner": {"size": [1, 2, 3], "scal": 2}}, r"unknown config key\(s\) \['scal'\] in inner"),
        ({"inner": {"scale": 2.0}}, "missing config key 'inner.size'"),
        ({"inner": {"size": [1, 2.5, 3]}}, "config: inner.size must be an integer"),
        ({"inner": {"size": 3}}, "inner.size must be a list"),
        ({"inner": {"size": [1, 2, 3], "scale": "fast"}}, "inner.scale must be a number"),
        ({"flag": 1}, "flag must be true or false"),
        ({"inner": [1]}, "inner must be a mapping"),
        ({"extra": [1]}, "extra must be a mapping"),
    ],
)
def test_mistakes_are_named(change, message):
    data = {**GOOD, **change}
    with pytest.raises(InputError, match=message):
        from_dict(Outer, data, "config", InputError)


def test_caller_chooses_the_error_and_the_label():
    with pytest.raises(CheckpointError, match=r"^m/config.json: missing config key 'name'"):
        from_dict(Outer, {"inner": {"size": [1, 1, 1]}}, "m/config.json", CheckpointError)
