"""State of one segmented object: its clicks, patches, sparse probabilities and undo history."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .prompts import Click
from .sparse_volume import SparseVolume

__all__ = ["ObjectState", "Snapshot"]

Key = tuple[int, int, int]


@dataclass(frozen=True)
class Snapshot:
    """Everything ``undo`` restores (chunk arrays are shared, never modified in place)."""

    store: tuple
    mask: tuple
    clicks: tuple[Click, ...]
    patches: tuple[Key, ...]
    has_initial_mask: bool
    mask_is_paste: bool = True
    intensity: object = None


@dataclass
class ObjectState:
    """One object (label) of a session.

    Attributes:
        id: label value in :meth:`Session.label_map` (1, 2, ...).
        name: the user's name for it.
        store: the model's probabilities on the canonical lattice (the decoder's previous mask).
        mask: the object's mask on the input grid (``(k, j, i)``, levels 0/255; see
            :mod:`.mask_layer`): the user's mask in edit mode, changed where prompts acted.
        clicks: all prompts so far (user, box centres, cross-patch clicks), oldest first.
        patches: lattice starts ``(z, y, x)`` of the patches segmented for it.
        has_initial_mask: it was started from a mask (edit mode).
        mask_is_paste: ``mask`` is the thresholded linear paste of ``store`` (an object started
            from prompts, no box clipped it): a step then needs one paste, not two. Exactly so
            with the threshold 0.5; with the intensity refinement each voxel holds the decision
            of the thresholds of the last step that reached it (:mod:`.refine`).
        auto_named: created implicitly by the first prompt (``new_object`` may rename it).
    """

    id: int
    name: str
    store: SparseVolume = field(default_factory=SparseVolume)
    mask: SparseVolume = field(default_factory=SparseVolume)
    clicks: list[Click] = field(default_factory=list)
    patches: list[Key] = field(default_factory=list)
    has_initial_mask: bool = False
    mask_is_paste: bool = True
    auto_named: bool = False
    intensity: object = None  # its HU thresholds (refine.IntensityModel), refitted at each positive step
    history: list[Snapshot] = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        return not self.clicks and not self.patches and not self.has_initial_mask and not self.store.chunks and not self.mask.chunks

    @property
    def has_foreground_prompt(self) -> bool:
        """A positive user/box click or an initial mask exists (negative clicks are allowed)."""
        return self.has_initial_mask or any(c.positive and c.source != "cpp" for c in self.clicks)

    def snapshot(self) -> Snapshot:
        return Snapshot(self.store.snapshot(), self.mask.snapshot(), tuple(self.clicks), tuple(self.patches), self.has_initial_mask,
                        self.mask_is_paste, self.intensity)

    def restore(self, snap: Snapshot) -> None:
        self.store.restore(snap.store)
        self.mask.restore(snap.mask)
        self.clicks = list(snap.clicks)
        self.patches = list(snap.patches)
        self.has_initial_mask = snap.has_initial_mask
        self.mask_is_paste = snap.mask_is_paste
        self.intensity = snap.intensity

    def clear(self) -> None:
        """Forget prompts, probabilities and mask (not the undo history)."""
        self.store.clear()
        self.mask.clear()
        self.clicks, self.patches, self.has_initial_mask = [], [], False
        self.mask_is_paste = True
        self.intensity = None

    def push_history(self, limit: int | None) -> Snapshot:
        snap = self.snapshot()
        self.history.append(snap)
        if limit is not None and len(self.history) > limit:
            del self.history[0 : len(self.history) - limit]
        return snap

    def best_patch_for(self, zyx, size) -> tuple[Key | None, int]:
        """The object's patch holding lattice voxel ``zyx`` deepest, and that depth in voxels
        (distance to the nearest face; negative when the voxel lies outside every patch)."""
        best, best_margin = None, -1
        c, n = np.asarray(zyx), np.asarray(size)
        for start in self.patches:
            rel = c - np.asarray(start)
            margin = int(np.min(np.minimum(rel, n - 1 - rel)))
            if margin > best_margin:
                best, best_margin = start, margin
        return best, best_margin

    def clicks_in(self, start: Key, size) -> tuple[list[Key], list[Key]]:
        """Positive and negative clicks inside the patch at ``start``, as patch ``(z, y, x)``.

        An expansion click (``Click.patch`` set) counts only in the patch it was made for: it
        lies in the overlap with the patch it grew from, and replaying it there would turn the
        CPP net's guess into a positive prompt that the user's negative clicks must fight."""
        pos: list[Key] = []
        neg: list[Key] = []
        s = np.asarray(start)
        n = np.asarray(size)
        key = tuple(int(v) for v in start)
        for c in self.clicks:
            if c.patch is not None and tuple(c.patch) != key:
                continue
            rel = np.asarray(c.zyx) - s
            if np.all(rel >= 0) and np.all(rel < n):
                (pos if c.positive else neg).append(tuple(int(v) for v in rel))  # type: ignore[arg-type]
        return pos, neg
