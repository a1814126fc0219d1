"""ctsam3d.clicks: simulated clicks on masks, shared by training and evaluation.

Public API (voxel indices ``(z, y, x)`` of numpy arrays; spacing in mm, ``(z, y, x)``)::

    first_click(target, *, spacing_zyx=None, rng=None, mode="center") -> (z, y, x) | None
    next_click(target, prediction, *, spacing_zyx=None, valid=None, exclude=None) -> ((z, y, x), positive) | None
    next_clicks_batch(targets, predictions, *, spacing_zyx=None, valid=None) -> list[...]

See :mod:`ctsam3d.clicks.simulate` for the exact rules and tie-breaking.
"""

from .simulate import error_regions, first_click, next_click, next_clicks_batch

__all__ = ["first_click", "next_click", "next_clicks_batch", "error_regions"]
