"""The record every session interaction returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["Prediction"]


@dataclass
class Prediction:
    """What one interaction (click, box, initial mask, undo, reset) did.

    Attributes:
        action: ``"click"``, ``"box"``, ``"initial_mask"``, ``"undo"`` or ``"reset"``.
        object_id: label value of the object (1, 2, ...); ``object_name`` its name.
        positive: click polarity (None for other actions).
        index_ijk: continuous ITK index ``(i, j, k)`` of the click or box centre (None otherwise).
        world_lps: the same point in LPS mm.
        changed_bbox: bounding box of the input-grid voxels whose mask may have changed, as
            ITK index ranges ``((i0, i1), (j0, j1), (k0, k1))``, half-open (nnInteractive
            style, a viewer copies only this part); None when nothing changed.
        patches_encoded: patches run through the encoder (cache misses).
        patches_decoded: patches run through the decoder (clicked patch + expansion).
        expansion_patches: of those, how many were opened by cross-patch expansion.
        cpp_evaluations: neighbours scored by the CPP net.
        expansion_stop: why expansion stopped: ``"done"``, ``"max_patches"``, ``"max_cpp"``,
            ``"max_volume"``, ``"disabled"`` or None (no expansion run).
        n_patches: patches the object has now.
        quality: the decoder's quality estimate for the clicked patch (None if not run).
        volume_ml: volume of the object's mask (:meth:`Session.result`, input grid), millilitres.
        timing_ms: milliseconds per stage (``crop``, ``encode``, ``decode``, ``cpp``,
            ``expansion``) and ``total``.
    """

    action: str
    object_id: int
    object_name: str
    positive: bool | None = None
    index_ijk: tuple[float, float, float] | None = None
    world_lps: tuple[float, float, float] | None = None
    changed_bbox: tuple[tuple[int, int], tuple[int, int], tuple[int, int]] | None = None
    patches_encoded: int = 0
    patches_decoded: int = 0
    expansion_patches: int = 0
    cpp_evaluations: int = 0
    expansion_stop: str | None = None
    n_patches: int = 0
    quality: float | None = None
    volume_ml: float = 0.0
    timing_ms: dict[str, float] = field(default_factory=dict)

    @property
    def changed_slices_zyx(self) -> tuple[slice, slice, slice] | None:
        """``changed_bbox`` as slices of a ``sitk.GetArrayFromImage`` array ``[z, y, x]``."""
        if self.changed_bbox is None:
            return None
        (i0, i1), (j0, j1), (k0, k1) = self.changed_bbox
        return (slice(k0, k1), slice(j0, j1), slice(i0, i1))

    def to_dict(self) -> dict:
        """JSON-ready dictionary (tuples become lists)."""
        return asdict(self)
