"""Cross-patch expansion: complete a structure that leaves its patch, with the CPP net.

After a patch ``U`` is segmented, every one of its 26 neighbour directions ``d`` whose
face (edge, corner) the mask reaches proposes the neighbour ``V = U + d * stride``. Clicks
in ``V`` come from one of two sources (``ExpansionConfig.prompts``):

* ``"cpp"`` (the paper's cross-patch prompting): the CPP net sees ``[image U, mask U,
  image V]`` and returns a heatmap in ``V``; its peaks at or above the model's
  ``peak_threshold`` become positive clicks;
* ``"mask"`` (continuation): ``V`` overlaps ``U`` (by a quarter of the patch with the
  default stride), so the part of U's mask inside the overlap is already in ``V``: the
  innermost voxel (distance-transform maximum) of each of its largest pieces becomes a
  positive click (and that part of the mask is ``V``'s previous mask anyway);
* ``"auto"`` (default): ``"cpp"`` when the model's CPP net has a threshold
  (``config.cpp.peak_threshold`` is a number: calibrated by our training, or the default 0.5,
  not calibrated, for converted released weights), ``"mask"`` when training found no
  threshold at which its peaks land on the structure often enough (``None``).

``V`` is segmented with those clicks (neighbours of one wave are run as one batch). The new probabilities merge with the object by voxel-wise maximum, and the
patches whose mask changed form the next wave. Expansion stops when no new mask reaches a
face, or when the patch budget (``max_patches`` segmented, ``max_cpp`` CPP evaluations per
run) or the volume budget (``max_volume_ml``) is reached.

Indices are lattice ``(z, y, x)`` (see :mod:`ctsam3d.inference.lattice`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

__all__ = [
    "DIRECTIONS", "ExpansionConfig", "ExpansionResult", "continuation_clicks", "expand", "neighbour_start",
    "reaches_new_image", "touching_directions",
]

#: The 26 neighbour directions ``(dz, dy, dx)``: 6 faces, 12 edges, 8 corners.
DIRECTIONS: tuple[tuple[int, int, int], ...] = tuple(
    d for d in itertools.product((-1, 0, 1), repeat=3) if d != (0, 0, 0)
)


@dataclass
class ExpansionConfig:
    """Settings of cross-patch expansion.

    Attributes:
        enabled: run expansion after each prediction.
        max_patches: at most this many neighbour patches are segmented per interaction.
        max_cpp: at most this many CPP evaluations per interaction (default 3 x max_patches).
        max_volume_ml: stop once the object's mask exceeds this volume (millilitres); None: no limit.
        stride: neighbour offset in voxels (default 3/4 of the patch, i.e. 1/4 overlap).
        face_margin: mask voxels within this many voxels of a face count as reaching it.
        min_face_voxels: fewer mask voxels than this on a face do not count (noise).
        prompts: ``"auto"``, ``"cpp"`` or ``"mask"`` (see the module docstring); the session
            resolves ``"auto"`` from the model.
        peak_threshold: heatmap peaks below this are ignored; None (default): the model's
            ``config.cpp.peak_threshold`` (set by the session).
        max_peaks: at most this many clicks per neighbour.
        batch_size: neighbours run through the CPP net / decoder together.
    """

    enabled: bool = True
    max_patches: int = 16
    max_cpp: int | None = None
    max_volume_ml: float | None = None
    stride: int | None = None
    face_margin: int = 2
    min_face_voxels: int = 4
    prompts: str = "auto"
    peak_threshold: float | None = None
    max_peaks: int = 3
    batch_size: int = 8

    def __post_init__(self):
        if int(self.max_patches) < 0:
            raise ValueError(f"max_patches must be >= 0, got {self.max_patches}")
        if self.max_volume_ml is not None and not float(self.max_volume_ml) > 0:
            raise ValueError(f"max_volume_ml must be > 0 or None, got {self.max_volume_ml}")
        if int(self.batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.prompts not in ("auto", "cpp", "mask"):
            raise ValueError(f"prompts must be 'auto', 'cpp' or 'mask', got {self.prompts!r}")

    @property
    def cpp_budget(self) -> int:
        return int(self.max_cpp) if self.max_cpp is not None else 3 * int(self.max_patches)

    def stride_for(self, patch_size: tuple[int, int, int]) -> np.ndarray:
        if self.stride is not None:
            return np.full(3, int(self.stride))
        return np.maximum(1, (np.asarray(patch_size) * 3) // 4)


def _slab(size: int, d: int, margin: int) -> slice:
    if d > 0:
        return slice(size - margin, size)
    if d < 0:
        return slice(0, margin)
    return slice(0, size)


def touching_directions(mask: np.ndarray, margin: int = 2, min_voxels: int = 4) -> list[tuple[int, int, int]]:
    """Directions ``(dz, dy, dx)`` whose face/edge/corner region of ``mask`` holds foreground.

    Args:
        mask: boolean ``(D, H, W)`` patch mask (voxels outside the image already removed).
        margin: thickness of the face slab in voxels.
        min_voxels: minimum foreground voxels in the slab intersection.
    """
    if not mask.any():
        return []
    out = []
    for d in DIRECTIONS:
        region = tuple(_slab(n, di, margin) for n, di in zip(mask.shape, d))
        if int(mask[region].sum()) >= min_voxels:
            out.append(d)
    return out


def continuation_clicks(mask_u: np.ndarray, start_u, start_v, max_clicks: int = 3, min_voxels: int = 4) -> list[tuple[int, int, int]]:
    """Clicks ``(z, y, x)`` in patch ``V`` that continue U's mask through their overlap.

    Args:
        mask_u: boolean ``(D, H, W)`` mask of patch ``U``.
        start_u, start_v: lattice starts ``(z, y, x)`` of both patches (same size).
        max_clicks: at most one click for each of this many largest overlap pieces.
        min_voxels: pieces smaller than this are ignored.
    Returns:
        V-patch voxel indices of the innermost voxel (EDT maximum) of each piece, largest first.
    """
    from scipy import ndimage

    off = [int(v) - int(u) for u, v in zip(start_u, start_v)]
    size = mask_u.shape
    lo = [max(o, 0) for o in off]  # overlap in U's voxels
    hi = [min(n, n + o) for n, o in zip(size, off)]
    if any(h <= l for l, h in zip(lo, hi)):
        return []
    part = mask_u[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    labels, n = ndimage.label(part)
    if n == 0:
        return []
    sizes = np.bincount(labels.ravel())[1:]
    out = []
    for k in np.argsort(-sizes)[:max_clicks]:
        if sizes[k] < min_voxels:
            break
        piece = labels == k + 1
        dist = ndimage.distance_transform_edt(np.pad(piece, 1))[1:-1, 1:-1, 1:-1]
        z, y, x = np.unravel_index(int(np.argmax(dist)), piece.shape)
        out.append((z + lo[0] - off[0], y + lo[1] - off[1], x + lo[2] - off[2]))
    return out


def neighbour_start(start, direction, stride) -> tuple[int, int, int]:
    """Lattice start of the neighbour of the patch at ``start`` in ``direction``."""
    return tuple(int(s + d * st) for s, d, st in zip(start, direction, stride))  # type: ignore[return-value]


def reaches_new_image(start_u, start_v, patch_size, image_lo, image_hi) -> bool:
    """True if patch ``V`` covers image voxels beyond patch ``U`` on every axis it moved along.

    ``image_lo, image_hi`` is the half-open lattice box of the image. A neighbour that would
    only add padding (it lies beyond the image border) is not worth segmenting.
    """
    for a in range(3):
        u0, v0, n = int(start_u[a]), int(start_v[a]), int(patch_size[a])
        lo, hi = max(v0, image_lo[a]), min(v0 + n, image_hi[a])
        if hi <= lo:
            return False
        if v0 > u0:  # new part: beyond U's far face
            lo = max(lo, u0 + n)
        elif v0 < u0:
            hi = min(hi, u0)
        if hi <= lo:
            return False
    return True


def is_near(start, others, tolerance) -> bool:
    """True if some start in ``others`` is within ``tolerance`` voxels of ``start`` on every axis."""
    s = np.asarray(start)
    for o in others:
        if np.all(np.abs(s - np.asarray(o)) < tolerance):
            return True
    return False


@dataclass
class ExpansionResult:
    """What one expansion run did."""

    decoded: int = 0
    cpp: int = 0
    stop: str = "done"


def expand(obj, sources, runner, lattice, image_box, config: ExpansionConfig, timer, *, peaks_fn, clip=None) -> ExpansionResult:
    """Grow ``obj`` from the patches ``sources`` into their neighbours (see module docstring).

    Args:
        obj: the :class:`~ctsam3d.inference.objects.ObjectState` (its store, clicks and
            patches are updated in place).
        sources: lattice starts ``(z, y, x)`` of the patches just segmented.
        runner: the session's :class:`~ctsam3d.inference.runner.PatchRunner`.
        lattice: the session's lattice; ``image_box`` = ``(lo, hi)`` of the image on it.
        peaks_fn: ``heatmap_peaks(heatmap (D, H, W), threshold, max_peaks) -> [(z, y, x)]``.
        clip: optional callable ``(start, probs) -> probs`` restricting new probabilities
            (a box prompt keeps expansion inside its box).
    """
    from ..geometry import lps_to_index
    from .prompts import Click

    size = lattice.patch_size
    stride = config.stride_for(size)
    tolerance = np.maximum(1, stride // 2)
    voxel_ml = lattice.spacing**3 / 1000.0
    lo, hi = image_box
    result = ExpansionResult()
    threshold = 0.5 if config.peak_threshold is None else float(config.peak_threshold)
    tried: set[tuple[int, int, int]] = set()
    frontier = list(dict.fromkeys(tuple(s) for s in sources))
    while frontier:
        # 1. neighbours the mask reaches, not yet covered by one of the object's patches
        candidates: list[tuple[tuple, tuple, np.ndarray]] = []
        for u in frontier:
            mask_u = obj.store.read_mask(u, size)
            inside = np.zeros(size, bool)
            a0 = [max(lo[a] - u[a], 0) for a in range(3)]
            a1 = [min(hi[a] - u[a], size[a]) for a in range(3)]
            if all(a1[a] > a0[a] for a in range(3)):
                inside[a0[0] : a1[0], a0[1] : a1[1], a0[2] : a1[2]] = True
            mask_u &= inside
            for d in touching_directions(mask_u, config.face_margin, config.min_face_voxels):
                v = neighbour_start(u, d, stride)
                if v in tried or is_near(v, obj.patches, tolerance) or any(v == c[1] for c in candidates):
                    continue
                if not reaches_new_image(u, v, size, lo, hi):
                    continue
                candidates.append((u, v, mask_u))
        if not candidates:
            break
        budget_cpp = config.cpp_budget - result.cpp
        if budget_cpp <= 0:
            result.stop = "max_cpp"
            break
        if len(candidates) > budget_cpp:
            candidates = candidates[:budget_cpp]
        # 2. clicks in the neighbours: CPP heatmap peaks (batched) or the mask's continuation
        to_segment: list[tuple[tuple, list]] = []
        if config.prompts == "mask":
            for u, v, mask_u in candidates:
                tried.add(v)
                clicks = continuation_clicks(mask_u, u, v, config.max_peaks, config.min_face_voxels)
                if clicks:
                    to_segment.append((v, clicks))
            candidates = []  # no CPP evaluations
        for b in range(0, len(candidates), config.batch_size):
            chunk = candidates[b : b + config.batch_size]
            heat = runner.cpp([c[0] for c in chunk], [c[2] for c in chunk], [c[1] for c in chunk], timer)
            result.cpp += len(chunk)
            for (_u, v, _), h in zip(chunk, heat):
                tried.add(v)
                peaks = [tuple(int(x) for x in p) for p in peaks_fn(h, threshold, config.max_peaks)]
                if peaks:
                    to_segment.append((v, peaks))
        if not to_segment:
            if config.prompts != "mask" and result.cpp >= config.cpp_budget:
                result.stop = "max_cpp"
            break
        room = int(config.max_patches) - result.decoded
        if len(to_segment) > room:
            to_segment = to_segment[: max(room, 0)]
            result.stop = "max_patches"
        if not to_segment:
            break
        # 3. segment the neighbours (batched) with their CPP clicks and the object's own clicks
        for v, peaks in to_segment:
            for p in peaks:
                zyx = tuple(int(a + b) for a, b in zip(v, p))
                lps = tuple(float(x) for x in lattice.zyx_to_world(zyx))
                ijk = tuple(float(x) for x in lps_to_index(runner.image, lps))
                obj.clicks.append(Click(zyx, lps, ijk, True, "cpp" if config.prompts != "mask" else "continuation",
                                        patch=tuple(int(a) for a in v)))
        changed_patches = []
        for b in range(0, len(to_segment), config.batch_size):
            chunk = [c[0] for c in to_segment[b : b + config.batch_size]]
            pos, neg, prev = [], [], []
            for v in chunk:
                p, n = obj.clicks_in(v, size)
                pos.append(p)
                neg.append(n)
                before = obj.store.read(v, size)
                prev.append(before if before.max() > 0 else None)
            probs, _ = runner.segment(chunk, pos, neg, prev, timer)
            result.decoded += len(chunk)
            for v, pr in zip(chunk, probs):
                if clip is not None:
                    pr = clip(v, pr)
                changed = obj.store.write(v, pr, mode="max")
                obj.patches.append(v)
                if changed is not None:
                    changed_patches.append(v)
        if result.stop == "max_patches":
            break
        if config.max_volume_ml is not None and obj.store.count() * voxel_ml > float(config.max_volume_ml):
            result.stop = "max_volume"
            break
        frontier = changed_patches
    return result
