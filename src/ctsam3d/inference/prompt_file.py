"""A JSON file of prompts (clicks, 3D boxes, 2D boxes, lassos, scribbles) for one object.

Used by ``ctsam3d segment --prompts prompts.json``; from Python::

    from ctsam3d.inference.prompt_file import load_prompts, apply_prompts
    apply_prompts(session, load_prompts("prompts.json"))

Schema (version 1)::

    {
      "space": "index",               # default space of every point: "index" (ITK i,j,k of the
                                      # input, i fastest), "world" (LPS mm) or "ras" (RAS mm)
      "prompts": [                    # applied in order; the first must add foreground
        {"type": "click",    "point": [120, 85, 40], "positive": true},
        {"type": "box",      "corners": [[100, 70, 30], [140, 110, 52]]},
        {"type": "box2d",    "corners": [[100, 70, 40], [140, 110, 40]], "positive": true},
        {"type": "lasso",    "points": [[110, 80, 41], [130, 78, 41], [126, 100, 41]]},
        {"type": "scribble", "points": [[115, 90, 38], [118, 92, 44]], "positive": false}
      ]
    }

``positive`` defaults to true (a 3D box is always positive). Any prompt may carry its own
``"space"``; ``box2d`` and ``lasso`` may carry ``"axis"`` (``"i"``, ``"j"``, ``"k"`` or 0, 1, 2:
the ITK axis the slice is normal to; or ``"axial"``, ``"coronal"``, ``"sagittal"``, resolved
through the image's direction) when the points alone do not say which slice is meant.
A bare list is read as ``{"prompts": [...]}``. Unknown keys are refused (a misspelt
``"postive"`` must not silently mean positive). The file is checked completely before any
model work (:func:`load_prompts`); a prompt that does not fit the image (outside it, not on
one slice, ...) fails when applied, naming the file and the prompt's number.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ClickError, InputError

__all__ = ["PromptSpec", "load_prompts", "parse_prompts", "apply_prompts", "TYPES"]

TYPES = {
    "click": ("point",),
    "box": ("corners",),
    "box2d": ("corners",),
    "lasso": ("points",),
    "scribble": ("points",),
}
_OPTIONAL = {"type", "positive", "space", "axis"}
MAX_BYTES = 16 * 2**20
MAX_PROMPTS = 10_000


@dataclass(frozen=True)
class PromptSpec:
    """One prompt of the file: ``type``, its points (as given), ``positive``, ``space``, ``axis``."""

    type: str
    points: list = field(default_factory=list)
    positive: bool = True
    space: str = "index"
    axis: object = None
    number: int = 0  # 1-based position in the file


def load_prompts(path: str | Path) -> list[PromptSpec]:
    """Read and check a prompts file; InputError naming the file and the problem."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: prompts file not found")
    if p.stat().st_size > MAX_BYTES:
        raise InputError(f"{p}: prompts file larger than {MAX_BYTES // 2**20} MB")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        msg = exc.msg if isinstance(exc, json.JSONDecodeError) else "not UTF-8 text"
        where = f" (line {exc.lineno})" if isinstance(exc, json.JSONDecodeError) else ""
        raise InputError(f"{p}: not a valid JSON prompts file: {msg}{where}") from None
    return parse_prompts(data, str(p))


def parse_prompts(data, where: str = "prompts") -> list[PromptSpec]:
    """Check a decoded prompts document (see module doc) and return its prompts in order."""
    if isinstance(data, list):
        data = {"prompts": data}
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a JSON object with a \"prompts\" list")
    extra = set(data) - {"prompts", "space", "version"}
    if extra:
        raise InputError(f"{where}: unknown key(s) {', '.join(sorted(map(repr, extra)))} (expected prompts, space, version)")
    if data.get("version", 1) != 1:
        raise InputError(f"{where}: version {data.get('version')!r} is not supported (1)")
    default_space = data.get("space", "index")
    items = data.get("prompts")
    if not isinstance(items, list) or not items:
        raise InputError(f"{where}: \"prompts\" must be a non-empty list")
    if len(items) > MAX_PROMPTS:
        raise InputError(f"{where}: {len(items)} prompts; at most {MAX_PROMPTS}")
    out = []
    for n, item in enumerate(items, 1):
        what = f"{where}: prompt {n}"
        if not isinstance(item, dict):
            raise InputError(f"{what}: expected an object like {{\"type\": \"click\", \"point\": [i, j, k]}}")
        kind = item.get("type")
        if kind not in TYPES:
            raise InputError(f"{what}: type must be one of {', '.join(TYPES)}, got {kind!r}")
        key = TYPES[kind][0]
        extra = set(item) - _OPTIONAL - {key}
        if extra:
            raise InputError(f"{what} ({kind}): unknown key(s) {', '.join(sorted(map(repr, extra)))}")
        if key not in item:
            raise InputError(f"{what} ({kind}): missing \"{key}\"")
        pts = [item[key]] if key == "point" else item[key]
        if not isinstance(pts, list) or not pts:
            raise InputError(f"{what} ({kind}): \"{key}\" must be a non-empty list")
        for m, pt in enumerate(pts, 1):
            if not (isinstance(pt, list) and len(pt) == 3 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pt)):
                raise InputError(f"{what} ({kind}): point {m} must be three numbers, got {json.dumps(pt)[:60]}")
        if key == "corners" and len(pts) != 2:
            raise InputError(f"{what} ({kind}): \"corners\" must be two points, got {len(pts)}")
        positive = item.get("positive", True)
        if not isinstance(positive, bool):
            raise InputError(f"{what} ({kind}): \"positive\" must be true or false, got {positive!r}")
        if kind == "box" and not positive:
            raise InputError(f"{what} (box): a 3D box is always positive (use box2d for a negative box on a slice)")
        if "axis" in item and kind not in ("box2d", "lasso"):
            raise InputError(f"{what} ({kind}): \"axis\" applies to box2d and lasso only")
        space = item.get("space", default_space)
        if space not in ("index", "world", "ras"):
            raise InputError(f"{what} ({kind}): space must be index, world or ras, got {space!r}")
        out.append(PromptSpec(kind, pts, positive, space, item.get("axis"), n))
    if not out[0].positive:
        raise InputError(f"{where}: prompt 1 is negative; the first prompt must add foreground")
    return out


def apply_prompts(session, prompts: list[PromptSpec], where: str = "prompts", on_step=None) -> list:
    """Apply ``prompts`` in order to ``session``'s current object; returns the Predictions.

    A prompt that does not fit the image raises ClickError prefixed with ``where`` and its number.
    ``on_step(spec, prediction)`` is called after each.
    """
    out = []
    for spec in prompts:
        try:
            if spec.type == "click":
                rec = session.add_click(spec.points[0], positive=spec.positive, space=spec.space)
            elif spec.type == "box":
                rec = session.add_box(spec.points[0], spec.points[1], space=spec.space)
            elif spec.type == "box2d":
                rec = session.add_box2d(spec.points[0], spec.points[1], positive=spec.positive, space=spec.space, axis=spec.axis)
            elif spec.type == "lasso":
                rec = session.add_lasso(spec.points, positive=spec.positive, space=spec.space, axis=spec.axis)
            else:
                rec = session.add_scribble(spec.points, positive=spec.positive, space=spec.space)
        except ClickError as exc:
            raise ClickError(f"{where}: prompt {spec.number} ({spec.type}): {exc}") from None
        out.append(rec)
        if on_step is not None:
            on_step(spec, rec)
    return out
