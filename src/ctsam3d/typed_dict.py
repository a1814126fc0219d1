"""Plain dicts (read from JSON/YAML) to typed, nested dataclasses, and back.

One builder for every configuration of the package (:class:`ctsam3d.modeling.ModelConfig`
saved next to the weights, :class:`ctsam3d.training.TrainConfig` read from a recipe), so
both refuse the same mistakes with one line naming the key: an unknown key (a typo must
never fall back to a default silently), a missing key without a default, and a value of the
wrong type (``"3e-4"`` as YAML 1.1 writes it is accepted as a number). Lists become tuples
where the field is a tuple. Callers choose the exception class (``InputError`` for user
recipes, ``CheckpointError`` for model folders).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any

__all__ = ["from_dict", "to_plain"]


def from_dict(cls: type, data: Any, label: str, error: type[Exception], where: str = "") -> Any:
    """An instance of dataclass ``cls`` from ``data``. Messages read ``"<label>: <where> ..."``:
    ``label`` names the source (a file, or ``"config"``), ``where`` the dotted key path."""
    if not isinstance(data, dict):
        raise error(f"{label}: {where or 'the top level'} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise error(f"{label}: unknown config key(s) {unknown} in {where or 'the top level'}")
    for name, f in fields.items():
        if name not in data and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise error(f"{label}: missing config key {(where + '.' if where else '') + name!r}")
    kwargs = {k: _convert(hints[k], v, label, f"{where}.{k}" if where else k, error) for k, v in data.items()}
    return cls(**kwargs)


def to_plain(obj: Any) -> Any:
    """JSON-able nested dicts/lists of a dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj))


def _convert(tp: Any, value: Any, label: str, where: str, error: type[Exception]) -> Any:
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, label, error, where)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        # several alternatives (e.g. ``str | list[str]``): kept as given, the owner checks it
        return _convert(inner[0], value, label, where, error) if len(inner) == 1 else value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise error(f"{label}: {where} must be a list, got {value!r}")
        item = args[0] if args else Any
        items = [_convert(item, v, label, where, error) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise error(f"{label}: {where} must be a mapping, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "3e-4" as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise error(f"{label}: {where} must be a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise error(f"{label}: {where} must be an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise error(f"{label}: {where} must be true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise error(f"{label}: {where} must be a string, got {value!r}")
        return str(value)
    return value
