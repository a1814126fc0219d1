"""The simulated-click protocol for one structure of one case and one method.

For a target structure (bool ``(z, y, x)`` on the image's own grid, spacing in mm):

1. click 1 (positive) at the structure's Euclidean distance-transform maximum
   (:func:`ctsam3d.clicks.first_click`, ``mode="center"``; or a random interior voxel
   with ``first="random"``, drawn from a generator seeded by (seed, case, structure));
2. each next click at the distance-transform maximum of the largest error region of the
   method's current mask (:func:`ctsam3d.clicks.next_click`: missed → positive, false →
   negative), up to K clicks; a voxel already clicked is never clicked again (it stays an
   error voxel, but the click goes to the deepest voxel not yet clicked, as the
   ``not_clicked_map`` of RITM-style clickers): a method that leaves a clicked voxel wrong
   is not handed the same click again and again;
3. after each click: Dice, NSD at the tolerance, and the wall time of the method's
   ``click`` call. When the mask is already perfect no further click is made and the
   last values carry forward to K.

With ``replay`` the clicks are not simulated but taken from another method's run (same
clicks for every method); when that list ends, the last values carry forward.
Clicks are passed to methods as ITK ``(i, j, k)`` = ``(x, y, z)`` of the numpy index.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import asdict, dataclass, field

import numpy as np

from ..clicks import first_click, next_click
from ..geometry.orientation import array_axis_of_plane
from .methods import InteractiveMethod
from .metrics import NOC_THRESHOLDS, dice, noc, nsd

__all__ = ["ProtocolConfig", "StructureResult", "run_structure", "structure_rng", "describe_protocol"]


@dataclass
class ProtocolConfig:
    """Settings of the protocol (all written into the report)."""

    clicks: int = 10
    nsd_tolerance_mm: float = 2.0
    first: str = "center"  # "center" | "random"
    seed: int = 0
    click_source: str = "own"  # "own": each method's own errors; "first-method": replay method 1's clicks
    noc_thresholds: tuple[float, ...] = NOC_THRESHOLDS
    first_prompt: str = "click"  # "click" | "box2d" | "lasso" | "scribble" (ctsam3d.clicks.shapes)
    prompt_axis: int = 0  # the shape's slice is normal to this array axis (z, y, x): 0 = the image's slices
    prompt_plane: str | None = None  # "axial" | "coronal" | "sagittal": found per image from its direction


@dataclass
class StructureResult:
    """One (case, structure, method) run. Lists have one entry per click 1..K."""

    case: str
    structure: str
    method: str
    dice: list[float] = field(default_factory=list)
    nsd: list[float] = field(default_factory=list)
    clicks: list[list[int]] = field(default_factory=list)  # [z, y, x, positive(1/0)] actually made
    time_s: list[float] = field(default_factory=list)  # per click actually made
    noc: dict[str, int] = field(default_factory=dict)  # "80" -> clicks (K+1 = not reached)
    voxels: int = 0
    first_prompt: dict | None = None  # the simulated shape of interaction 1 (when not a click)

    def to_dict(self) -> dict:
        return asdict(self)


def structure_rng(seed: int, case: str, structure: str) -> np.random.Generator:
    """Generator for one (case, structure): independent of evaluation order and of the method."""
    return np.random.default_rng([int(seed), zlib.crc32(case.encode()), zlib.crc32(structure.encode())])


def run_structure(
    method: InteractiveMethod,
    target: np.ndarray,
    spacing_zyx,
    config: ProtocolConfig,
    *,
    case: str,
    structure: str,
    replay: list[list[int]] | None = None,
    direction=None,
) -> StructureResult:
    """Run the protocol for one structure. ``method`` must have been ``start``-ed on the image
    and ``reset``; ``target`` is bool ``(z, y, x)``; ``spacing_zyx`` in mm; ``direction`` the
    image's direction matrix (9 values; None = identity), which ``config.prompt_plane`` needs."""
    res = StructureResult(case=case, structure=structure, method=method.name, voxels=int(target.sum()))
    spacing = tuple(float(s) for s in spacing_zyx)
    mask = None
    for k in range(config.clicks):
        if k == 0 and config.first_prompt != "click":  # same shape for every method (seeded)
            from ..clicks.shapes import simulate_prompt

            shape = simulate_prompt(config.first_prompt, target, spacing_zyx=spacing,
                                    rng=structure_rng(config.seed, case, structure),
                                    axis=prompt_array_axis(config, direction))
            if shape is None:
                break
            t0 = time.perf_counter()
            out = method.prompt(shape)
            res.time_s.append(time.perf_counter() - t0)
            mask = out != 0
            anchor = np.rint(shape.points[0]).astype(int)
            res.first_prompt = shape.to_dict()
            res.clicks.append([int(anchor[0]), int(anchor[1]), int(anchor[2]), 1])
            res.dice.append(dice(mask, target))
            res.nsd.append(nsd(mask, target, spacing, config.nsd_tolerance_mm))
            continue
        if replay is not None:
            if k >= len(replay):
                break
            z, y, x, pos = replay[k]
            click, positive = (z, y, x), bool(pos)
        elif k == 0:
            click = first_click(target, spacing_zyx=spacing, mode=config.first,
                                rng=structure_rng(config.seed, case, structure))
            positive = True
        else:
            nxt = next_click(target, mask, spacing_zyx=spacing, exclude=[c[:3] for c in res.clicks])
            if nxt is None:
                break
            click, positive = nxt
        t0 = time.perf_counter()
        out = method.click((int(click[2]), int(click[1]), int(click[0])), positive)
        res.time_s.append(time.perf_counter() - t0)
        if out.shape != target.shape:
            raise RuntimeError(f"{method.name}: returned a mask of shape {out.shape}, expected {target.shape}")
        mask = out != 0
        res.clicks.append([int(click[0]), int(click[1]), int(click[2]), int(positive)])
        res.dice.append(dice(mask, target))
        res.nsd.append(nsd(mask, target, spacing, config.nsd_tolerance_mm))
    fill_d = res.dice[-1] if res.dice else 0.0
    fill_n = res.nsd[-1] if res.nsd else 0.0
    res.dice += [fill_d] * (config.clicks - len(res.dice))
    res.nsd += [fill_n] * (config.clicks - len(res.nsd))
    res.noc = {_pct(t): noc(res.dice, t) for t in config.noc_thresholds}
    return res


def prompt_array_axis(config: ProtocolConfig, direction=None) -> int:
    """The array axis ``(z, y, x)`` the first shape's slice is normal to: ``config.prompt_plane``
    resolved through the image's ``direction`` (None = identity), else ``config.prompt_axis``."""
    if config.prompt_plane is None:
        return int(config.prompt_axis)
    return array_axis_of_plane(direction if direction is not None else (1, 0, 0, 0, 1, 0, 0, 0, 1), config.prompt_plane)


def _pct(t: float) -> str:
    return f"{round(t * 100):d}"


#: names of the array axes (z, y, x), for ``ProtocolConfig.prompt_axis`` (an array axis is an
#: anatomical plane only through the image's direction: ``ProtocolConfig.prompt_plane``)
PROMPT_AXIS_NAMES = {0: "z", 1: "y", 2: "x"}


def describe_protocol(config: ProtocolConfig) -> dict:
    """The protocol as written into report.json."""
    K = config.clicks
    first = ("at the maximum of the structure's Euclidean distance transform (mm, volume border counts as outside)"
             if config.first == "center" else
             "at a random voxel at least half the maximum depth inside the structure (seeded per case/structure)")
    shapes = {
        "box2d": "a 2D box around the structure on its largest axial slice, each edge jittered by up to 10% of "
                 "the box side",
        "lasso": "a lasso from the outer contour of the structure's largest piece on its largest axial slice, "
                 "perturbed smoothly by 10% of its equivalent radius",
        "scribble": "a scribble of 8 points along the medial axis of the structure's largest piece on its largest "
                    "axial slice, each moved by up to one voxel inside it",
    }
    if config.first_prompt != "click":
        text = shapes[config.first_prompt]
        if config.prompt_plane is not None:
            text = text.replace("largest axial slice", f"largest {config.prompt_plane} slice (the anatomical plane, "
                                                       "found from each image's direction)")
        elif config.prompt_axis != 0:
            text = text.replace("largest axial slice", "largest slice normal to array axis "
                                                       f"{PROMPT_AXIS_NAMES[config.prompt_axis]}")
        first = f"replaced by {text} (ctsam3d.clicks.shapes, seeded per case/structure)"
    out = {
        "description": (
            "Per case and per structure present in its labels (absent structures are skipped, not scored): "
            f"click 1 (positive) {first}; each next click at the distance-transform maximum of the largest "
            "6-connected error region of the current mask (missed -> positive, false -> negative), never on a "
            "voxel clicked before (the deepest voxel not yet clicked; a region whose voxels were all clicked "
            "gives way to the next largest), on the original image grid, up to K clicks. When the mask is perfect no further click is made and the "
            "last values carry forward. "
            + ("Every method gets its own next clicks from its own errors (same first click)."
               if config.click_source == "own" else
               "All methods receive exactly the clicks simulated for the first method.")
        ),
        "clicks": K,
        "first_click": config.first,
        "first_prompt": config.first_prompt,
        "repeat_clicks": False,  # a voxel already clicked is never clicked again
        "click_source": config.click_source,
        "seed": config.seed,
        "dice": "2|P&G|/(|P|+|G|) on the image grid; both empty -> 1",
        "nsd": f"normalised surface Dice at {config.nsd_tolerance_mm} mm (MONAI compute_surface_dice, "
               "use_subvoxels=True, image spacing); both empty -> 1, one empty -> 0",
        "nsd_tolerance_mm": config.nsd_tolerance_mm,
        "noc": f"first click k with Dice >= t; not reached within {K} clicks counts as {K + 1} "
               "(and as a failure in noc_failures)",
        "noc_thresholds": list(config.noc_thresholds),
        "means": "over (case, structure) instances; per_structure over the cases holding the structure",
        "time_per_click": "wall time of the method's click() call (mask on the input grid returned)",
    }
    if config.prompt_plane is not None:
        out["first_prompt_plane"] = config.prompt_plane
    elif config.prompt_axis != 0:  # absent for the default, so reports made before the option still match
        out["first_prompt_axis"] = config.prompt_axis
    return out
