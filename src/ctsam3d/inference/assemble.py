"""Pasting lattice probabilities onto the input grid, slab by slab.

An object's probabilities live on the canonical lattice (:mod:`.sparse_volume`). To hand a
mask to the user they are resampled (linear, :func:`ctsam3d.geometry.paste_patch`) onto the
input image's grid over the bounding box they cover, and thresholded at 0.5. The box is
processed in slabs of input slices, each pasted in place into the output image, so memory
stays near the size of the uint8 output even for a 512 x 512 x 1000 CT and a large object.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from ..geometry import PatchGrid, patch_region, paste_patch

__all__ = ["Block", "assemble"]

#: ``(label value, probabilities (D, H, W) on the lattice, their PatchGrid)``.
Block = tuple[int, np.ndarray, PatchGrid]


def _union_region(blocks: list[Block], image: sitk.Image) -> tuple[slice, slice, slice] | None:
    regions = [patch_region(grid, image) for _, _, grid in blocks]
    regions = [r for r in regions if min(s.stop - s.start for s in r) > 0]
    if not regions:
        return None
    return tuple(slice(min(r[a].start for r in regions), max(r[a].stop for r in regions)) for a in range(3))  # type: ignore[return-value]


def assemble(image: sitk.Image, blocks: list[Block], *, slab_voxels: int = 16_000_000) -> sitk.Image:
    """Label image on ``image``'s grid: each block's value where its probability is > 0.5.

    Where blocks overlap, the one with the higher probability wins. The pixel type is uint8
    (uint16 when a label exceeds 255); voxels of no block are 0.

    Args:
        image: the input image (any orientation); only its geometry is used.
        blocks: ``(label, probabilities [z, y, x], grid)`` per object.
        slab_voxels: input voxels resampled at once (bounds the temporary memory).
    """
    big = max((b[0] for b in blocks), default=0) > 255
    ptype, dtype = (sitk.sitkUInt16, np.uint16) if big else (sitk.sitkUInt8, np.uint8)
    out = sitk.Image(image.GetSize(), ptype)
    out.CopyInformation(image)
    region = _union_region(blocks, image)
    if region is None:
        return out
    (k0, k1), (j0, j1), (i0, i1) = ((s.start, s.stop) for s in region)
    step = max(1, slab_voxels // max(1, (i1 - i0) * (j1 - j0)))
    for ks in range(k0, k1, step):
        ke = min(ks + step, k1)
        ref = sitk.Image([i1 - i0, j1 - j0, ke - ks], sitk.sitkUInt8)
        ref.SetOrigin(image.TransformIndexToPhysicalPoint((i0, j0, ks)))
        ref.SetSpacing(image.GetSpacing())
        ref.SetDirection(image.GetDirection())
        best = np.full((ke - ks, j1 - j0, i1 - i0), 0.5, np.float32)
        labels = np.zeros(best.shape, dtype)
        for value, probs, grid in blocks:
            sub, vals = paste_patch(probs, grid, ref)
            if vals.size == 0:
                continue
            win = vals > best[sub]
            best[sub][win] = vals[win]
            labels[sub][win] = value
        if labels.any():
            out[i0:i1, j0:j1, ks:ke] = sitk.GetImageFromArray(labels)
    return out
