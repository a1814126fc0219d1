"""The released CT-SAM3D's own click path on one patch, for reference-exact models.

:class:`~ctsam3d.inference.session.Session` is the product: many patches, cross-patch
expansion, undo, a mask on the input grid. This class instead does what the released
notebook and viewer do with ``SamPredictor``, step for step, so that a converted checkpoint
can be checked against the release (``../shared/docs/reference-golden/pipeline``) and so a
user can reproduce a released result exactly:

* the image is seen on the release's RAI grid, int16 (input pixel type) values truncated
  toward zero (:mod:`ctsam3d.geometry.reference_grid`; blocks resampled on demand, never
  the whole volume);
* one 64³ patch; ``set_patch(centre, snap=True)`` centres it on the RAI voxel nearest to
  ``centre`` (the viewer: an exact block copy), ``snap=False`` on ``centre`` itself (the
  notebook: the int16 RAI image re-interpolated and truncated again);
* a click (LPS mm) becomes a patch voxel by float32 ``world_to_voxel`` and numpy round;
* every call decodes all clicks so far (rendered by overwriting, min–max scaled) with the
  previous call's sigmoid probabilities fed back unthresholded (zeros before the first);
* quality is the released head's raw output 0 (no sigmoid).

Viewer rules for clicks (full-image mode): the first click opens the patch centred on it (a
negative first click is recorded as positive, as the viewer does, with a warning); a later
positive click outside the patch re-centres a new patch on it and drops the earlier clicks
and the previous mask; a negative click outside the patch is ignored. No CPP expansion.

Shapes: probabilities ``(D, H, W)`` = ``(z, y, x)`` float32 on :attr:`patch`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from ..errors import ClickError, InputError
from ..geometry import PatchGrid
from ..geometry.reference_grid import (
    ReferenceGrid,
    normalize_reference,
    reference_click_voxel,
    reference_crop,
    reference_patch_grid,
)

__all__ = ["ReferencePredictor", "ReferenceStep"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReferenceStep:
    """What one click gave.

    Attributes:
        probabilities: ``(D, H, W)`` float32 sigmoid probabilities on ``patch`` (the last
            ones, unchanged, when the click was ignored).
        quality: the quality head's raw output 0 (None when the click was ignored).
        patch: the patch grid the click was decoded in.
        voxel_zyx: the click's patch voxel ``(z, y, x)`` after rounding.
        voxel_xyz_continuous: its continuous patch voxel ``(x, y, z)`` (float32) before rounding.
        positive: the label used (True for positive).
        recentred: the click opened a new patch (first click or positive outside the patch).
        ignored: a negative click outside the patch (the viewer ignores it).
    """

    probabilities: np.ndarray
    quality: float | None
    patch: PatchGrid
    voxel_zyx: tuple[int, int, int]
    voxel_xyz_continuous: tuple[float, float, float]
    positive: bool
    recentred: bool = False
    ignored: bool = False


class ReferencePredictor:
    """The released interactive path on one patch (see the module docstring).

    Args:
        model: a reference-exact CT-SAM3D model (``load_model`` of converted released weights).
    """

    def __init__(self, model) -> None:
        cfg = getattr(model, "config", None)
        if cfg is None or not getattr(cfg, "reference_exact", False):
            raise InputError("ReferencePredictor needs a reference-exact model (converted released weights)")
        self.model = model
        self.spacing = float(cfg.spacing_mm)
        self.patch_size = tuple(int(p) for p in cfg.patch_size)
        self.hu_window = tuple(float(v) for v in cfg.hu_window)
        self.image: sitk.Image | None = None
        self.grid: ReferenceGrid | None = None
        self.patch: PatchGrid | None = None
        self.input: np.ndarray | None = None  # (D, H, W) float32 encoder input of the patch
        self._features: list[torch.Tensor] | None = None
        self._clicks: list[tuple[tuple[int, int, int], bool]] = []
        self._prev: torch.Tensor | None = None

    def set_image(self, image: sitk.Image | str | Path) -> None:
        """Use ``image`` (3D CT in HU, any orientation; pixel type kept as the release keeps it)."""
        if isinstance(image, (str, Path)):
            from ..io import read_volume

            image = read_volume(image)
        if not isinstance(image, sitk.Image) or image.GetDimension() != 3:
            raise InputError("image: expected a 3D SimpleITK image or a path")
        self.image = image
        self.grid = ReferenceGrid.of(image, self.spacing)
        self.patch, self.input, self._features = None, None, None
        self.reset()

    def reset(self) -> None:
        """Forget the clicks and the previous mask (the patch stays)."""
        self._clicks, self._prev = [], None

    @torch.inference_mode()
    def set_patch(self, centre_lps, *, snap: bool = True) -> PatchGrid:
        """Crop, normalise and encode the patch centred on ``centre_lps`` (LPS mm); clears clicks.

        ``snap``: centre on the nearest RAI voxel (the viewer, an exact block copy); False: on
        the point itself (the notebook's ``crop_roi_with_center``).
        """
        if self.grid is None:
            raise InputError("ReferencePredictor: no image; call set_image(...) first")
        centre = np.asarray(centre_lps, dtype=np.float64)
        if centre.shape != (3,) or not np.all(np.isfinite(centre)):
            raise ClickError(f"patch centre {centre_lps!r}: expected three finite LPS mm")
        if snap:
            origin = np.asarray(self.grid.origin_lps)
            centre = origin + np.rint((centre - origin) / self.spacing) * self.spacing
        self.patch = reference_patch_grid(centre, self.spacing, self.patch_size)
        hu = reference_crop(self.image, self.grid, self.patch)
        self.input = normalize_reference(hu, self.hu_window)
        device = next(self.model.parameters()).device
        self._features = self.model.encode(torch.from_numpy(self.input)[None, None].to(device))
        self.reset()
        return self.patch

    def add_click(self, world_lps, positive: bool = True) -> ReferenceStep:
        """Add a click (LPS mm) with the viewer's rules and decode; see the module docstring."""
        if self.grid is None:
            raise InputError("ReferencePredictor: no image; call set_image(...) first")
        point = np.asarray(world_lps, dtype=np.float64)
        if point.shape != (3,) or not np.all(np.isfinite(point)):
            raise ClickError(f"click {world_lps!r}: expected three finite LPS mm")
        positive = bool(positive)
        recentred = False
        if self.patch is None:
            if not positive:
                log.warning("first click is negative; recorded as positive, as the released viewer does")
                positive = True
            self.set_patch(point, snap=True)
            recentred = True
        xyz, zyx = reference_click_voxel(point, self.patch)
        inside = all(0 <= v < n for v, n in zip(zyx, self.patch.size))
        if not inside:
            if not positive:
                last = np.zeros(self.patch.size, np.float32) if self._prev is None else self._prev[0, 0].cpu().numpy()
                return ReferenceStep(last, None, self.patch, zyx, tuple(float(v) for v in xyz), False, ignored=True)
            self.set_patch(point, snap=True)
            recentred = True
            xyz, zyx = reference_click_voxel(point, self.patch)
        self._clicks.append((zyx, positive))
        probs, quality = self._decode()
        return ReferenceStep(probs, quality, self.patch, zyx, tuple(float(v) for v in xyz), positive, recentred)

    @torch.inference_mode()
    def _decode(self) -> tuple[np.ndarray, float]:
        pos = [c for c, p in self._clicks if p]
        neg = [c for c, p in self._clicks if not p]
        prompt = self.model.render_prompt([pos], [neg], self._prev)
        logits, quality = self.model.decode(self._features, prompt)
        self._prev = torch.sigmoid(logits.float())  # fed back unthresholded, (1, 1, D, H, W)
        return self._prev[0, 0].cpu().numpy().copy(), float(quality.reshape(-1)[0])
