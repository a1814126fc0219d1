"""Click simulation for a training/validation batch.

Two backends give clicks as patch voxel indices ``(z, y, x)``:

* ``"numpy"``: the exact protocol of :mod:`ctsam3d.clicks` (shared with evaluation): first
  click at the Euclidean distance-transform maximum of the target (or a random interior
  voxel), each next click at the EDT maximum of the largest 6-connected error component
  (missed → positive, false → negative). Runs on CPU with SciPy, item by item.
* ``"torch"``: batched on the training device for GPU runs, where the SciPy path would
  stall the GPU. It picks the error *type* with more voxels (missed → positive, false →
  negative) and clicks at its deepest voxel (repeated 3×3×3 erosion, see
  :mod:`ctsam3d.data.heatmap`). It differs from the exact protocol only when the error
  type is split into several pieces: the click then goes to the thickest piece rather
  than the largest one.

Clicks are always inside the patch (they are computed on the patch's target); the model's
``render_prompt`` drops any that are not, so the contract holds either way.
"""

from __future__ import annotations

import numpy as np
import torch

from ..clicks import first_click, next_clicks_batch
from ..data.heatmap import deepest_points

__all__ = ["ClickState", "first_prompt", "first_clicks", "add_next_clicks", "seed_previous", "apply_rules"]

Click = tuple[int, int, int]


class ClickState:
    """Positive and negative clicks per batch item (lists of ``(z, y, x)``)."""

    def __init__(self, batch_size: int) -> None:
        self.pos: list[list[Click]] = [[] for _ in range(batch_size)]
        self.neg: list[list[Click]] = [[] for _ in range(batch_size)]
        # per item, the slice rule of a first 2D box / lasso (ctsam3d.clicks.shapes.SliceRule2D) or None
        self.rules: list = [None] * batch_size

    def add(self, b: int, click: Click, positive: bool) -> None:
        (self.pos if positive else self.neg)[b].append(tuple(int(v) for v in click))  # type: ignore[arg-type]


def first_prompt(state: ClickState, i: int, target: np.ndarray, rng: np.random.Generator, mode: str,
                 p_shape: float = 0.0, shape_rules: bool = False) -> None:
    """The simulated user's first interaction with one target ``(D, H, W)`` bool (item ``i`` of
    ``state``): one positive click (``mode`` ``"center"``: the EDT maximum, ``"random"``: a
    random interior voxel; none when the target is empty), or with probability ``p_shape`` a
    2D box, lasso or scribble (drawn uniformly; :mod:`ctsam3d.clicks.shapes`, on the target's
    largest slice of a random axis) rendered as the clicks a session gives it; with
    ``shape_rules`` also its slice rule (``state.rules[i]``: a lasso's inside seeds the
    previous mask, the slice outside a box or lasso is background; see
    :class:`ctsam3d.clicks.shapes.SliceRule2D`). The one place that draws a first prompt from a
    target."""
    if p_shape > 0 and target.any() and rng.random() < p_shape:
        from ..clicks.shapes import PROMPT_KINDS, shape_clicks, shape_slice_rule, simulate_prompt

        kind = PROMPT_KINDS[int(rng.integers(len(PROMPT_KINDS)))]
        shape = simulate_prompt(kind, target, rng=rng, axis=int(rng.integers(3)))
        if shape is not None:
            for c in shape_clicks(shape, target.shape):
                state.add(i, c, True)
            if shape_rules:
                state.rules[i] = shape_slice_rule(shape, target.shape)
            return
    c = first_click(target, rng=rng, mode=mode)
    if c is not None:
        state.add(i, c, True)


def first_clicks(
    target: torch.Tensor, rng: np.random.Generator, p_random: float = 0.0, backend: str = "numpy",
    p_shape: float = 0.0, shape_rules: bool = False,
) -> ClickState:
    """First prompt of every item of ``target`` ``(B, 1, D, H, W)`` (:func:`first_prompt`; the
    ``torch`` backend: a positive click at the deepest voxel or a random interior voxel; with
    ``p_shape`` > 0 the numpy path is used).

    Items whose target is empty in the patch get no click (the model then sees an empty
    prompt and must predict nothing).
    """
    b = target.shape[0]
    state = ClickState(b)
    modes = ["random" if rng.random() < p_random else "center" for _ in range(b)]
    if backend == "numpy" or p_shape > 0:
        t = (target[:, 0] > 0.5).cpu().numpy()
        for i in range(b):
            first_prompt(state, i, t[i], rng, modes[i], p_shape, shape_rules)
        return state
    pts, depth = deepest_points(target)
    m = target[:, 0] > 0.5
    for i in range(b):
        if int(depth[i]) == 0:
            continue
        if modes[i] == "random":
            idx = torch.nonzero(m[i])
            c = idx[int(rng.integers(len(idx)))]
        else:
            c = pts[i]
        state.add(i, tuple(int(v) for v in c), True)  # type: ignore[arg-type]
    return state


def add_next_clicks(state: ClickState, target: torch.Tensor, prob: torch.Tensor, backend: str = "numpy") -> None:
    """Add one corrective click per item (none where the prediction is already exact).

    Args:
        state: clicks so far (updated in place).
        target: ``(B, 1, D, H, W)`` ground truth (> 0.5 = in).
        prob: ``(B, 1, D, H, W)`` predicted probabilities (> 0.5 = in).
        backend: ``"numpy"`` or ``"torch"`` (see module doc).
    """
    if backend == "numpy":
        for i, res in enumerate(next_clicks_batch(target > 0.5, prob > 0.5)):
            if res is not None:
                state.add(i, res[0], res[1])
        return
    t = target > 0.5
    p = prob > 0.5
    missed = (t & ~p).float()
    false = (p & ~t).float()
    both = torch.cat([missed, false])  # (2B, 1, D, H, W)
    pts, depth = deepest_points(both)
    b = t.shape[0]
    n_missed = missed.flatten(1).sum(1)
    n_false = false.flatten(1).sum(1)
    pts = pts.tolist()
    nm, nf = n_missed.tolist(), n_false.tolist()
    for i in range(b):
        if nm[i] == 0 and nf[i] == 0:
            continue
        if nm[i] >= nf[i]:
            state.add(i, tuple(pts[i]), True)  # type: ignore[arg-type]
        else:
            state.add(i, tuple(pts[b + i]), False)  # type: ignore[arg-type]


def seed_previous(state: ClickState, like: torch.Tensor) -> torch.Tensor | None:
    """The previous-mask channel ``(B, 1, D, H, W)`` before the first decode: each item's lasso
    inside on its slice (zeros elsewhere and for items without one); None when no item has a
    seed (the model then sees an empty previous mask, as for a first click)."""
    seeds = [None if r is None else r.seed(like.shape[2:]) for r in state.rules]
    if all(s is None for s in seeds):
        return None
    arr = np.stack([np.zeros(like.shape[2:], np.float32) if s is None else s for s in seeds])[:, None]
    return torch.from_numpy(arr).to(device=like.device, dtype=torch.float32)


def apply_rules(state: ClickState, prob: torch.Tensor) -> torch.Tensor:
    """``prob`` ``(B, 1, D, H, W)`` with each item's slice rule applied (a session writes it into
    the stored probabilities after the decode of the shape, so the next decode and the next
    simulated click see it). Returns ``prob`` itself when no item has a rule."""
    if all(r is None for r in state.rules):
        return prob
    prob = prob.clone()
    for b, rule in enumerate(state.rules):
        if rule is not None:
            rule.apply(prob[b, 0])
    return prob
