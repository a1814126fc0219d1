"""The frame of the CPP net's input: U's patch grid moved into V's.

A cross-patch pair is two same-size patches ``U`` and ``V`` on one voxel lattice, ``V``'s
voxel ``i`` being ``U``'s voxel ``i + offset`` (``offset`` = ``(dz, dy, dx)`` integer voxels,
``start_v - start_u`` on a session's lattice; the shift the training sampler applied, in U's
rotated patch frame, for a training pair).

``CppConfig.frame`` says how the CPP net sees a pair:

* ``"own"`` (the released net and every model before this option): ``[image U, mask U,
  image V]``, each on its own grid — the net is not told where ``V`` lies;
* ``"v"``: everything on ``V``'s grid — ``[image U moved into V, mask U moved into V, image V]``,
  zero outside the ``U ∩ V`` overlap. Where the structure enters ``V`` is then visible in the
  input, next to where its continuation must be found (a local task). The channel count is the
  same (``2C + 1``), so weights of either frame load into the other (as an initialisation).

:func:`to_v_frame` moves one U-grid array; :func:`cpp_inputs` builds the three inputs of
:meth:`ctsam3d.modeling.ctsam3d.CTSAM3D.cpp` for either frame. Training
(:mod:`ctsam3d.training.step`, :mod:`ctsam3d.training.cpp_validation`) and inference
(:meth:`ctsam3d.inference.runner.PatchRunner.cpp`) both call :func:`cpp_inputs`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..errors import InputError

__all__ = ["FRAMES", "to_v_frame", "cpp_inputs", "frame_of"]

#: the frames a CPP net can be trained in (``CppConfig.frame``)
FRAMES = ("own", "v")


def to_v_frame(array, offset_zyx: Sequence[int]):
    """A U-grid array on V's grid, V's voxel ``i`` = U's voxel ``i + offset``; zero where that
    voxel is outside U.

    Args:
        array: numpy array or torch tensor ``(..., D, H, W)`` on U's patch grid (z, y, x).
        offset_zyx: integer ``(dz, dy, dx)`` voxels, ``start_v - start_u``.
    Returns:
        same type, shape and dtype as ``array``.
    """
    off = [int(o) for o in offset_zyx]
    if len(off) != 3 or any(int(o) != o for o in offset_zyx):
        raise InputError(f"to_v_frame: offset must be 3 integers (dz, dy, dx), got {tuple(offset_zyx)}")
    size = array.shape[-3:]
    out = torch.zeros_like(array) if isinstance(array, torch.Tensor) else np.zeros_like(array)
    src, dst = [], []
    for n, o in zip(size, off):
        lo, hi = max(0, -o), min(n, n - o)  # V voxels whose U voxel i + o is inside U
        if hi <= lo:
            return out  # no overlap
        dst.append(slice(lo, hi))
        src.append(slice(lo + o, hi + o))
    out[(..., *dst)] = array[(..., *src)]
    return out


def frame_of(model) -> str:
    """A model's CPP input frame (``config.cpp.frame``; ``"own"`` for models without one)."""
    frame = getattr(getattr(getattr(model, "config", None), "cpp", None), "frame", "own")
    if frame not in FRAMES:
        raise InputError(f"cpp.frame must be one of {FRAMES}, got {frame!r}")
    return frame


def cpp_inputs(image_u: torch.Tensor, mask_u: torch.Tensor, image_v: torch.Tensor, offsets_zyx, frame: str):
    """The three inputs of ``model.cpp`` for a batch of pairs in ``frame``.

    Args:
        image_u: ``(B, C, D, H, W)`` on U's grid; mask_u: ``(B, 1, D, H, W)`` on U's grid;
        image_v: ``(B, C, D, H, W)`` on V's grid.
        offsets_zyx: ``(B, 3)`` integer offsets (V's voxel ``i`` = U's voxel ``i + offset``),
            tensor, array or list; only read when ``frame == "v"``.
        frame: ``"own"`` (inputs returned unchanged) or ``"v"`` (U's image and mask moved
            into V's grid with :func:`to_v_frame`).
    Returns:
        ``(image_u', mask_u', image_v)``.
    """
    if frame == "own":
        return image_u, mask_u, image_v
    if frame != "v":
        raise InputError(f"cpp frame must be one of {FRAMES}, got {frame!r}")
    if offsets_zyx is None:
        raise InputError("cpp frame 'v' needs the offset of V from U for every pair")
    off = torch.as_tensor(offsets_zyx).detach().cpu().reshape(-1, 3).tolist()
    if len(off) != image_u.shape[0]:
        raise InputError(f"cpp: {len(off)} offsets for {image_u.shape[0]} pairs")
    img = torch.stack([to_v_frame(image_u[b], off[b]) for b in range(len(off))])
    msk = torch.stack([to_v_frame(mask_u[b], off[b]) for b in range(len(off))])
    return img, msk, image_v
