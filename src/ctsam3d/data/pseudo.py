"""Pseudo-structures cut from unlabelled real CT: "click → coherent region" training targets.

A pseudo-structure is a connected region of similar HU inside the body: the CT is lightly
smoothed, split into HU ranges (air/lung, fat, fluid, soft tissue, enhanced tissue,
bone; edges jittered per case), and into SLIC supervoxels (scikit-image); a connected
component of one HU range is kept whole when its size is within bounds, and otherwise cut
along the supervoxels (the largest connected piece of each range ∩ supervoxel). Up to
``n_max`` regions between ``min_voxels`` and ``max_fraction`` of the body are kept, in
random order, disjoint, and named ``pseudo_001`` … (the names carry no anatomy: the same
name in two cases is unrelated). Pseudo labels are never mixed with the real labels of
the same CT: they form a case of their own.

Arrays are numpy ``[z, y, x]`` with spacing ``(z, y, x)`` in mm; HU as stored.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .hu_stats import body_mask

__all__ = ["pseudo_structures", "HU_EDGES", "pseudo_name"]

#: HU range edges (jittered by up to ±``edge_jitter`` HU per case)
HU_EDGES = (-500.0, -190.0, -30.0, 20.0, 60.0, 150.0, 400.0)


def pseudo_name(k: int) -> str:
    """Name of the k-th pseudo-structure (1-based): ``pseudo_001``."""
    return f"pseudo_{k:03d}"


def pseudo_structures(
    ct: np.ndarray,
    spacing_zyx,
    rng: np.random.Generator,
    *,
    n_max: int = 40,
    min_voxels: int = 200,
    max_fraction: float = 0.2,
    supervoxel_voxels: int = 4000,
    edge_jitter: float = 10.0,
) -> tuple[np.ndarray, dict[int, str]]:
    """Cut generic structures from a CT volume.

    Args:
        ct: HU volume ``[z, y, x]``.
        spacing_zyx: voxel size in mm ``(z, y, x)``.
        rng: source of randomness (edge jitter, choice and order of the regions).
        n_max: at most this many structures (≤ 255).
        min_voxels: smallest structure.
        max_fraction: largest structure, as a fraction of the body's voxels.
        supervoxel_voxels: mean supervoxel size aimed at.
        edge_jitter: HU range edges move by up to this much.

    Returns:
        ``(label uint8 [z, y, x], {id: "pseudo_###"})``; every structure is one
        6-connected component with ``min_voxels <= size <= max_fraction * body voxels``.
    """
    from skimage.segmentation import slic

    n_max = int(min(n_max, 255))
    sp = np.asarray(spacing_zyx, float)
    body = body_mask(ct)
    n_body = int(body.sum())
    label = np.zeros(ct.shape, np.uint8)
    if n_body < min_voxels:
        return label, {}
    max_voxels = max(min_voxels, int(max_fraction * n_body))
    sm = ndi.gaussian_filter(ct.astype(np.float32), np.clip(1.0 / sp, 0.3, 1.0))
    edges = np.sort(np.asarray(HU_EDGES) + rng.uniform(-edge_jitter, edge_jitter, len(HU_EDGES)))
    bins = np.digitize(sm, edges).astype(np.int32)
    # connected components of each HU range, numbered globally
    comp = np.zeros(ct.shape, np.int32)
    nxt = 0
    for b in range(len(edges) + 1):
        lab, n = ndi.label(body & (bins == b))
        if n:
            comp[lab > 0] = lab[lab > 0] + nxt
            nxt += n
    sizes = np.bincount(comp.ravel(), minlength=nxt + 1)
    sizes[0] = 0
    keep = (sizes >= min_voxels) & (sizes <= max_voxels)
    big = sizes > max_voxels
    cands: list[tuple[tuple[slice, ...], np.ndarray]] = []
    objs = ndi.find_objects(comp)
    for cid in np.flatnonzero(keep):
        sl = objs[cid - 1]
        cands.append((sl, comp[sl] == cid))
    if big.any():
        img = np.clip((sm + 200.0) / 500.0, 0.0, 1.0)
        n_seg = max(8, n_body // max(supervoxel_voxels, 1))
        sv = slic(img, n_segments=n_seg, compactness=0.1, mask=body, channel_axis=None, spacing=sp, start_label=1)
        big_mask = big[comp]
        key = np.zeros(ct.shape, np.int64)
        key[big_mask] = comp[big_mask].astype(np.int64) * (int(sv.max()) + 1) + sv[big_mask]
        uniq, inv = np.unique(key, return_inverse=True)
        piece = inv.reshape(ct.shape).astype(np.int32)  # 0 = not part of a big component
        for pid, sl in enumerate(ndi.find_objects(piece), start=1):
            if sl is None:
                continue
            sub = piece[sl] == pid
            lab, n = ndi.label(sub)
            if n > 1:
                cnt = np.bincount(lab.ravel())
                cnt[0] = 0
                sub = lab == int(cnt.argmax())
            s = int(sub.sum())
            if min_voxels <= s <= max_voxels:
                cands.append((sl, sub))
    order = rng.permutation(len(cands))[:n_max]
    names = {}
    for k, ci in enumerate(order, start=1):
        sl, m = cands[ci]
        label[sl][m] = k
        names[k] = pseudo_name(k)
    return label, names
