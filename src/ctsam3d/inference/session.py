"""Interactive session: clicks on a CT in, a 3D mask on the CT's own grid out.

Usage::

    import ctsam3d
    model = ctsam3d.load_model()
    s = ctsam3d.Session(model)                  # expansion=True, max_patches=16
    s.set_image("ct.nii.gz")                    # or a SimpleITK image / DICOM folder
    rec = s.add_click((120, 200, 45))           # ITK index (i, j, k) of the input, i fastest
    s.add_click((-12.5, 30.0, 101.0), positive=False, space="world")   # LPS mm
    mask = s.result()                           # SimpleITK uint8 0/1 on the input grid
    s.undo(); s.reset(); s.new_object("liver"); s.label_map()

How it works. The input image is never resampled as a whole: the session fixes a canonical
lattice (identity direction, the model's spacing; see :mod:`.lattice`) and samples
``patch_size`` patches of it directly from the input. The first click opens a patch centred
on it; the patch is encoded once (features kept in a bounded LRU cache) and decoded. A later
click well inside an existing patch (at least ``patch/8`` voxels from its faces) reruns only
the decoder, with all clicks in that patch and the previous mask, and the new prediction
replaces that patch's region. A positive click elsewhere opens a new patch centred on it,
whose prediction merges with the rest by voxel-wise maximum. Cross-patch expansion (see
:mod:`.expansion`) then grows the mask into neighbour patches. The model's probabilities
are kept as sparse canonical chunks (the decoder's previous mask); the object's mask is kept
on the input grid (:mod:`.mask_layer`) and changes only at the input voxels where the
thresholded linear paste of those probabilities flips in a step (:meth:`result` reads it).
The threshold is 0.5 moved by the input voxel's own HU value (``refine``, on by default; see
:mod:`.refine`): each step fits the object's inside and outside HU histograms and a voxel whose
pasted probability lies between 0.047 and 0.953 is decided by them too, so a boundary the
model's coarse lattice blurs lands on the CT's intensity edge. Each decode is the mean logit
of the patch and of its left-right mirror (``mirror``, on by default; :class:`.runner.PatchRunner`),
which costs about twice the model time and smooths the model's one-sided errors.

Documented behaviours:

* A negative click before any positive click (no positive click, box or initial mask for
  the current object) raises :class:`~ctsam3d.errors.ClickError`.
* A negative click outside every patch of the object opens a patch centred on it, decoded
  with the object's previous mask, and replaces that patch's region. A click changes only
  the patch it is decoded in (plus what expansion adds): mask parts in other patches stay.
* **A negative click never adds a voxel**: the new probabilities are the voxel-wise minimum
  of the previous ones and the model's, and no expansion runs after it (the linear paste of
  lower probabilities is never higher, so no input voxel enters the mask). The clicked voxel
  leaves the mask only if the model's probability there drops to its threshold (0.5 without
  refinement) or below.
* **A positive click's voxel is in the mask** whenever the model's probability there is above
  its threshold after the step (0.5 without refinement; how often it is not:
  ``benchmarks/prompt_rules.py``); the session does not force it in otherwise (a lone forced
  voxel is not a segmentation). In edit mode a
  positive click on a voxel already in the mask changes nothing.
* **Edit mode** (:meth:`set_initial_mask`): :meth:`result` returns the given mask voxel for
  voxel (it is kept on the input grid; the decoder sees it sampled onto the lattice). A click
  acts only on the *connected change at the clicked voxel*: the 26-connected piece of lattice
  voxels (model spacing) that entered the mask in this step (positive click) or left it
  (negative click) and holds the clicked voxel, over all patches the step decoded (expansion
  included; it runs only when that piece is not empty). Every other lattice voxel keeps its
  previous probability, so input voxels farther than one lattice voxel from that piece keep
  their value bit for bit. A click whose voxel does not flip changes nothing.
* Clicks outside the image, with NaN/inf, or not three numbers raise ``ClickError``; the
  session is left unchanged.
* ``undo`` restores the object's previous state exactly (probabilities, clicks, patches);
  ``reset`` clears the current object only and can itself be undone.
* A box (``add_box``) becomes a positive click at its centre; the step (expansion included)
  changes only lattice voxels in the box, and only input voxels whose centre lies in the box
  (the LPS box spanned by the corners; for axial, sagittal or coronal storage the index box
  between the corners' voxels): the mask never reaches outside the box.
* A 2D box on a slice (``add_box2d``), a lasso (``add_lasso``) and a scribble
  (``add_scribble``) are rendered into the same three prompt channels as clicks (see
  :mod:`.shape_render`); undo and the negative-first rule work as for clicks.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import ClickError, InputError
from .edits import ActedRegion, box_clip, check_same_grid, mask_to_store, restrict_change
from .expansion import ExpansionConfig, expand
from .lattice import Lattice
from .mask_layer import (
    apply_change, box_keep, changed_input_bbox, input_box_of_lattice_box, mask_image, paste_store, write_user_mask,
)
from .objects import ObjectState
from .patch_cache import FeatureCache
from .prediction import Prediction
from .refine import Refinement, fit_intensity_model, hu_box, sample_stride
from . import shape_step
from .shape_render import DEFAULT_RENDERING, ShapePrompt, ShapeRendering, render_box2d, render_lasso, render_scribble
from .shapes import box2d_shape, lasso_shape, parse_points
from .prompts import Click, make_click, parse_point
from .runner import PatchRunner, Timer
from .sparse_volume import SparseVolume

__all__ = ["Session"]

Key = tuple[int, int, int]
_ABOVE = np.float32(0.5 + 1 / 512)  # a mask voxel's probability where the model's is <= 0.5


def _flag(positive, what: str) -> bool:
    if not isinstance(positive, (bool, np.bool_)) and positive not in (0, 1):
        raise ClickError(f"{what}: positive must be True or False, got {positive!r}")
    return bool(positive)


def _model_geometry(model) -> tuple[float, tuple[int, int, int], tuple[float, float]]:
    cfg = getattr(model, "config", None)
    if cfg is None:
        raise InputError("model: has no .config (expected a CT-SAM3D model from ctsam3d.load_model)")
    ps = cfg.patch_size
    ps = (int(ps),) * 3 if np.isscalar(ps) else tuple(int(p) for p in ps)
    return float(cfg.spacing_mm), ps, tuple(float(v) for v in getattr(cfg, "hu_window", (-125.0, 225.0)))


class Session:
    """Interactive segmentation of one CT image (several objects, each with undo).

    Args:
        model: a CT-SAM3D model (``ctsam3d.load_model(...)``); its ``config`` gives spacing
            (mm), patch size ``(D, H, W)`` and HU window.
        expansion: True/False to switch cross-patch expansion, or an :class:`ExpansionConfig`.
        max_patches: expansion budget: neighbour patches segmented per interaction.
        max_volume_ml: expansion stops once the object's mask exceeds this volume (ml).
        cache_size: encoded patches kept in the LRU cache.
        undo_depth: interactions kept per object for ``undo`` (None: unlimited).
        refine: intensity-guided boundary refinement of the input-grid mask (:mod:`.refine`):
            True / False or a :class:`~.refine.Refinement`. Default: on, except for
            reference-exact models (the released pipeline thresholds at 0.5).
        mirror: average each decode with the decode of the left-right mirrored patch
            (:class:`~.runner.PatchRunner`; about twice the model time per click). Default: on,
            except for reference-exact models (the released pipeline decodes once).

    The session is thread-safe (one lock around every public method).
    """

    def __init__(
        self,
        model,
        *,
        expansion: bool | ExpansionConfig = True,
        max_patches: int | None = None,
        max_volume_ml: float | None = None,
        cache_size: int = 32,
        undo_depth: int | None = 100,
        refine: bool | Refinement | None = None,
        mirror: bool | None = None,
    ):
        self.model = model
        self.spacing, self.patch_size, self.hu_window = _model_geometry(model)
        # reference-exact models: the released pipeline's grid, crops and patch rule (docs/reference-fidelity.md)
        self._reference_exact = bool(getattr(getattr(model, "config", None), "reference_exact", False))
        if isinstance(expansion, ExpansionConfig):
            self.expansion = dataclasses.replace(expansion)  # ours to complete, not the caller's
        else:
            self.expansion = ExpansionConfig(enabled=bool(expansion))
        if max_patches is not None:
            self.expansion.max_patches = int(max_patches)
        if max_volume_ml is not None:
            self.expansion.max_volume_ml = float(max_volume_ml)
        model_thr = getattr(getattr(getattr(model, "config", None), "cpp", None), "peak_threshold", 0.5)
        if self.expansion.prompts == "auto":  # CPP when its net has a threshold (released weights: default 0.5)
            self.expansion.prompts = "cpp" if model_thr is not None else "mask"
        if self.expansion.peak_threshold is None and model_thr is not None:
            self.expansion.peak_threshold = float(model_thr)
        self.expansion.__post_init__()
        if isinstance(refine, Refinement):
            self.refinement = refine
        else:
            self.refinement = Refinement(enabled=(not self._reference_exact) if refine is None else bool(refine))
        self.mirror = (not self._reference_exact) if mirror is None else bool(mirror)
        self.cache = FeatureCache(cache_size)
        self.undo_depth = undo_depth
        self.image: sitk.Image | None = None
        self.lattice: Lattice | None = None
        self._runner: PatchRunner | None = None
        self._image_box = None
        self._objects: dict[int, ObjectState] = {}
        self._current: int | None = None
        self._lock = threading.RLock()

    # ================================================================== image
    def set_image(self, image: sitk.Image | str | Path) -> None:
        """Use ``image`` (a 3D SimpleITK image in HU, a file path, or a DICOM folder).

        Clears all objects and the feature cache. Intensities that are not plausibly HU (0..1
        floats, stored values without the rescale, MR; :mod:`ctsam3d.io.hu_check`) give a
        :class:`~ctsam3d.io.hu_check.NotHUWarning`: the masks would not be meaningful.

        Raises:
            InputError: not a 3D scalar image, or unreadable.
        """
        name = str(image) if isinstance(image, (str, Path)) else "image"
        if isinstance(image, (str, Path)):
            from ..io import read_volume

            image = read_volume(image)
        if not isinstance(image, sitk.Image):
            raise InputError(f"image: expected a SimpleITK image or a path, got {type(image).__name__}")
        if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
            raise InputError(
                f"image: expected a 3D scalar CT, got {image.GetDimension()}D with "
                f"{image.GetNumberOfComponentsPerPixel()} component(s) per voxel"
            )
        from ..io.hu_check import warn_if_not_hu

        warn_if_not_hu(image, name)
        with self._lock:
            self.image = image
            self.lattice = Lattice.for_image(image, self.spacing, self.patch_size, reference=self._reference_exact)
            self._image_box = self.lattice.image_box_zyx(image)
            self.cache.clear()
            self._runner = PatchRunner(self.model, image, self.lattice, self.cache, self.hu_window,
                                       mirror=self.mirror)
            self._objects = {}
            self._current = None

    def _require_image(self) -> None:
        if self.image is None:
            raise InputError("session: no image; call set_image(...) first")

    # ================================================================== objects
    @property
    def objects(self) -> dict[int, str]:
        """``{label id: name}`` of the session's objects."""
        return {i: o.name for i, o in self._objects.items()}

    @property
    def current_object(self) -> int | None:
        """Label id of the object that clicks go to (None before the first one)."""
        return self._current

    def new_object(self, name: str | None = None) -> int:
        """Start a new object (label) and make it current; returns its label id (1, 2, ...).

        An implicitly created, still empty object is renamed instead of leaving it behind.
        """
        with self._lock:
            self._require_image()
            reuse = self._reusable()
            names = {o.name for i, o in self._objects.items() if not (reuse and i == self._current)}
            if name is not None and name in names:
                raise InputError(f"new_object: an object named {name!r} exists already")
            if reuse:
                obj = self._objects[self._current]
                obj.name = name or obj.name
                obj.auto_named = False
                return obj.id
            oid = max(self._objects, default=0) + 1
            self._objects[oid] = ObjectState(oid, name or f"object_{oid}")
            self._current = oid
            return oid

    def _reusable(self) -> bool:
        cur = self._objects.get(self._current) if self._current is not None else None
        return bool(cur is not None and cur.auto_named and cur.is_empty and not cur.history)

    def select_object(self, key: int | str) -> int:
        """Make the object with this label id or name current; returns its id."""
        with self._lock:
            for oid, obj in self._objects.items():
                if key == oid or key == obj.name:
                    self._current = oid
                    return oid
            raise InputError(f"select_object: no object {key!r} (have {self.objects})")

    def _obj(self) -> ObjectState:
        self._require_image()
        if self._current is None:
            oid = self.new_object(None)
            self._objects[oid].auto_named = True
        return self._objects[self._current]

    # ================================================================== prompts
    def add_click(self, point, positive: bool = True, space: str = "index") -> Prediction:
        """Add a click to the current object and update its mask.

        Args:
            point: ITK index ``(i, j, k)`` of the input image (``space="index"``, i fastest, as
                3D Slicer / MONAI Label send it), LPS mm (``"world"``) or RAS mm (``"ras"``).
            positive: True for foreground, False for background.

        Returns:
            A :class:`Prediction` (changed bounding box on the input grid, timings, ...).

        Raises:
            ClickError: bad point (see :mod:`.prompts`) or a negative click before any positive.
        """
        with self._lock:
            t_start = time.perf_counter()
            self._require_image()
            click = make_click(point, positive, self.image, self.lattice, space)
            obj = self._obj()
            if not click.positive and not obj.has_foreground_prompt:
                raise ClickError(
                    f"click {tuple(point)}: negative click before any positive click; start the "
                    f"object with a positive click, a box or an initial mask"
                )
            return self._interact(obj, click, "click", t_start)

    def add_box(self, corner_a, corner_b, space: str = "index") -> Prediction:
        """Add a 3D box prompt (two opposite corners) to the current object.

        Corners are ITK indices ``(i, j, k)`` (``space="index"``) or mm (``"world"`` LPS,
        ``"ras"``). The box becomes a positive click at its centre; the predictions of this
        step (expansion included) are restricted to the box.
        """
        with self._lock:
            t_start = time.perf_counter()
            self._require_image()
            _, a = parse_point(corner_a, self.image, space, what="box corner")
            _, b = parse_point(corner_b, self.image, space, what="box corner")
            za, zb = self.lattice.world_to_zyx(a), self.lattice.world_to_zyx(b)
            lo = np.floor(np.minimum(za, zb)).astype(int)
            hi = np.ceil(np.maximum(za, zb)).astype(int) + 1
            centre = (a + b) / 2.0
            click = make_click(tuple(centre), True, self.image, self.lattice, "world", source="box")
            obj = self._obj()

            clip = box_clip(lo, hi, self.patch_size)
            region = ActedRegion("box", lo=tuple(int(v) for v in lo), hi=tuple(int(v) for v in hi))
            return self._interact(obj, click, "box", t_start, clip=clip, region=region, keep=box_keep(self.image, a, b))

    # 2D box, lasso, scribble: geometry in .shapes, rendering into the 3 prompt channels in .shape_render
    shape_rendering: ShapeRendering = DEFAULT_RENDERING

    def add_box2d(self, corner_a, corner_b, positive: bool = True, space: str = "index", axis=None) -> Prediction:
        """Add a 2D box on one slice (two opposite corners on that slice) to the current object.

        Corners: ITK indices ``(i, j, k)`` (``space="index"``) or mm (``"world"`` LPS, ``"ras"``);
        both must lie on one slice of the input (``axis`` 0/1/2 or ``"i"``/``"j"``/``"k"``: the
        ITK axis the slice is normal to, or ``"axial"``/``"coronal"``/``"sagittal"``: the ITK axis
        closest to that plane's normal in this image; inferred when only one axis fits). Positive: a click at
        the box's centre, and the slice outside the box becomes background. Negative: the box on
        the slice becomes background (needs an earlier positive prompt). See :mod:`.shape_render`.

        Raises:
            ClickError: a corner outside the image or malformed, corners not on one slice, an
                empty box, or a negative box before any positive prompt; the session is unchanged.
        """
        with self._lock:
            t_start = time.perf_counter()
            self._require_image()
            shape = box2d_shape(corner_a, corner_b, self.image, space, axis)
            return self._shape(render_box2d(shape, _flag(positive, "2D box"), self.image, self.lattice,
                                            self.shape_rendering), t_start)

    def add_lasso(self, points, positive: bool = True, space: str = "index", axis=None) -> Prediction:
        """Add a lasso: a closed contour (3 or more points, the last joins the first) on one slice.

        Positive: the inside is the object on that slice and the outside background there;
        clicks at the inside's distance-transform maxima tell the model where it is. Negative:
        the inside becomes background on the slice. Points, ``space`` and ``axis`` as for
        :meth:`add_box2d`.

        Raises:
            ClickError: bad points, points not on one slice, a contour without area, or a
                negative lasso before any positive prompt; the session is unchanged.
        """
        with self._lock:
            t_start = time.perf_counter()
            self._require_image()
            shape = lasso_shape(points, self.image, space, axis)
            return self._shape(render_lasso(shape, _flag(positive, "lasso"), self.image, self.lattice,
                                            self.shape_rendering), t_start)

    def add_scribble(self, points, positive: bool = True, space: str = "index") -> Prediction:
        """Add a scribble: a polyline (1 or more points, on a slice or anywhere in 3D).

        It becomes a dense row of positive (or negative) clicks along the line, one every
        ``shape_rendering.scribble_step_vox`` lattice voxels; a scribble spanning several patches
        decodes each (at most ``shape_rendering.max_patches``).

        Raises:
            ClickError: bad points or a negative scribble before any positive prompt; the
                session is unchanged.
        """
        with self._lock:
            t_start = time.perf_counter()
            self._require_image()
            _, lps = parse_points(points, self.image, space, "scribble", min_points=1)
            return self._shape(render_scribble(lps, _flag(positive, "scribble"), self.image, self.lattice,
                                               self.shape_rendering), t_start)

    def _shape(self, shape: ShapePrompt, t_start: float) -> Prediction:
        cur = self._objects.get(self._current) if self._current is not None else None
        if not shape.positive and (cur is None or not cur.has_foreground_prompt):
            raise ClickError(f"{shape.action}: negative {shape.action} before any positive prompt; start the object "
                             f"with a positive click, box, lasso, scribble or an initial mask")
        clip = None if shape.rule is None else shape.rule.clip
        return self._interact(self._obj(), shape.clicks[0], shape.action, t_start, clip=clip, shape=shape)

    def set_initial_mask(self, mask: sitk.Image | str | Path) -> Prediction:
        """Start the current object from an existing mask (edit mode); clicks then refine it.

        Args:
            mask: a label image on the input image's grid (nonzero = object) or a path.

        Raises:
            GeometryError: the mask's grid differs from the image's.
        """
        with self._lock:
            t_start = time.perf_counter()
            self._require_image()
            if isinstance(mask, (str, Path)):
                from ..io import read_label

                mask = read_label(mask, reference=self.image)
            if not isinstance(mask, sitk.Image):
                raise InputError(f"mask: expected a SimpleITK image or a path, got {type(mask).__name__}")
            check_same_grid(mask, self.image)
            obj = self._obj()
            before = obj.push_history(self.undo_depth)
            obj.clear()
            obj.has_initial_mask = True
            obj.mask_is_paste = False  # the user's mask, not the lattice's paste
            mask_to_store(mask, self.image, self.lattice, obj.store)  # what the decoder sees
            write_user_mask(mask, obj.mask)  # what result() returns: the mask itself
            return self._record(obj, "initial_mask", None, before, Timer(), t_start, {})

    # ================================================================== core step
    def _choose_patch(self, obj: ObjectState, click: Click) -> tuple[Key, bool]:
        """(patch start, is_new): an existing patch holding the click well inside (at least
        patch/8 voxels from its faces; any depth for a negative click, or for any click with a
        reference-exact model, as the released viewer does), else a new centred one."""
        best, margin = obj.best_patch_for(click.zyx, self.patch_size)
        deep = 0 if self._reference_exact else min(self.patch_size) // 8
        if best is not None and (margin >= deep or (not click.positive and margin >= 0)):
            return best, False
        return self.lattice.patch_start_around(click.zyx), True

    def _acted_region(self, obj: ObjectState, click: Click) -> ActedRegion:
        if obj.has_initial_mask:  # edit mode: only the connected change at the click
            return ActedRegion("connected", negative=not click.positive, click=click.zyx)
        return ActedRegion("all", negative=not click.positive)

    def _interact(self, obj: ObjectState, click: Click, action: str, t_start: float, clip=None,
                  region: ActedRegion | None = None, keep=None, shape=None) -> Prediction:
        timer = Timer()
        counts0 = dict(self._runner.counts)
        before = obj.push_history(self.undo_depth)
        region = region or self._acted_region(obj, click)
        try:
            obj.clicks.append(click)
            if shape is not None:  # 2D box / lasso / scribble: its other clicks, lasso seed (shape_step.py)
                shape_step.before_decode(shape, obj)
            start, is_new = self._choose_patch(obj, click)
            pos, neg = obj.clicks_in(start, self.patch_size)
            prev = obj.store.read(start, self.patch_size)
            probs, quality = self._runner.segment([start], [pos], [neg], [prev if prev.max() > 0 else None], timer)
            p = probs[0] if clip is None else clip(start, probs[0])
            mode = "max" if (is_new and click.positive) else "replace"
            obj.store.write(start, p, mode=mode)
            if shape is not None:
                shape_step.cover(shape, self, obj, start, timer)
                shape_step.after_decode(shape, obj)
            kept = restrict_change(obj.store, before.store[0], region)
            if start not in obj.patches:
                obj.patches.append(start)
            info = {"quality": quality[0]}
            # Expansion only adds, so never after a negative click; in edit mode only when the
            # click changed something (expansion's result is cut to the connected change again).
            grow = click.positive and (region.kind != "connected" or (kept is not None and kept.any()))
            if not grow:
                info["expansion_stop"] = "negative" if not click.positive else "no_change"
            elif self.expansion.enabled and self.expansion.max_patches > 0:
                t0 = time.perf_counter()
                from ..modeling.cpp_net import heatmap_peaks

                res = expand(
                    obj, [start], self._runner, self.lattice, self._image_box, self.expansion, timer,
                    peaks_fn=heatmap_peaks, clip=clip,
                )
                timer.add("expansion", t0)
                info.update(expansion_patches=res.decoded, cpp_evaluations=res.cpp, expansion_stop=res.stop)
                restrict_change(obj.store, before.store[0], region)
                if shape is not None:
                    shape_step.after_decode(shape, obj)
            else:
                info["expansion_stop"] = "disabled"
            t0 = time.perf_counter()
            old = SparseVolume.from_snapshot(before.store, obj.store.chunk)
            obj.intensity = self._fit_intensity(obj) or obj.intensity  # refitted each step (kept if it can't be)
            threshold = None if obj.intensity is None else obj.intensity.threshold_map(self.image)
            # a negative step only removes voxels (its probabilities are never higher; the flag
            # also covers thresholds refitted since the mask was made)
            apply_change(obj.mask, old, obj.store, self.lattice, self.image, keep=keep, mask_is_paste=obj.mask_is_paste,
                         threshold=threshold, only_remove=not click.positive)
            obj.mask_is_paste = obj.mask_is_paste and keep is None  # a box's clip leaves the paste
            if shape is not None:
                shape_step.after_mask(shape, obj)
            timer.add("mask", t0)
        except BaseException:
            obj.restore(before)  # never leave a half-applied interaction behind
            obj.history.pop()
            raise
        counts = {k: self._runner.counts[k] - counts0[k] for k in counts0}
        info.update(patches_encoded=counts["encoded"], patches_decoded=counts["decoded"])
        return self._record(obj, action, click, before, timer, t_start, info)

    def _fit_intensity(self, obj: ObjectState):
        """The object's HU thresholds (:mod:`.refine`) from its current probabilities, sampled
        over its input box; None when refinement is off or the object has too little inside
        or outside to fit them."""
        if not self.refinement.enabled:
            return None
        store_box = obj.store.bounds()
        ib = None if store_box is None else input_box_of_lattice_box(self.lattice, store_box[0], store_box[1], self.image)
        if ib is None:
            return None
        lo, hi = ib
        stride = sample_stride(lo, hi, self.refinement.max_samples)
        probs = paste_store(obj.store, self.lattice, self.image, lo, hi, stride=stride)
        return fit_intensity_model(probs, hu_box(self.image, lo, hi, stride), self.refinement)

    def _record(self, obj, action, click, before, timer, t_start, info) -> Prediction:
        bbox = changed_input_bbox(before.mask[0], obj.mask.chunks, obj.mask.chunk)
        timing = dict(timer.ms)
        timing["total"] = (time.perf_counter() - t_start) * 1000.0
        return Prediction(
            action=action,
            object_id=obj.id,
            object_name=obj.name,
            positive=None if click is None else click.positive,
            index_ijk=None if click is None else click.index_ijk,
            world_lps=None if click is None else click.world_lps,
            changed_bbox=bbox,
            n_patches=len(obj.patches),
            volume_ml=obj.mask.count() * float(np.prod(self.image.GetSpacing())) / 1000.0,
            timing_ms=timing,
            **info,
        )

    # ================================================================== history
    def undo(self) -> Prediction | None:
        """Undo the current object's last interaction (exactly); None if there is nothing to undo."""
        with self._lock:
            self._require_image()
            if self._current is None or not self._objects[self._current].history:
                return None
            t_start = time.perf_counter()
            obj = self._objects[self._current]
            now = obj.snapshot()
            obj.restore(obj.history.pop())
            return self._record(obj, "undo", None, now, Timer(), t_start, {})

    def reset(self) -> Prediction | None:
        """Clear the current object's prompts and mask (other objects are kept); undoable."""
        with self._lock:
            self._require_image()
            if self._current is None:
                return None
            t_start = time.perf_counter()
            obj = self._objects[self._current]
            before = obj.push_history(self.undo_depth)
            obj.clear()
            return self._record(obj, "reset", None, before, Timer(), t_start, {})

    # ================================================================== results
    def clicks(self, object_id: int | None = None) -> list[Click]:
        """Prompts of an object (default: current), oldest first; includes cross-patch clicks."""
        obj = self._objects.get(self._current if object_id is None else object_id)
        return [] if obj is None else list(obj.clicks)

    def _clamped_probs(self, obj: ObjectState, lo, hi) -> np.ndarray:
        """The store's probabilities pasted on input box ``[lo, hi)`` (``(k, j, i)``), moved to the
        mask's side of 0.5 where they disagree with it (so ``> 0.5`` is exactly the mask)."""
        probs = paste_store(obj.store, self.lattice, self.image, lo, hi)
        m = obj.mask.read_mask(lo, np.asarray(hi) - np.asarray(lo))
        return np.where(m, np.maximum(probs, _ABOVE), np.minimum(probs, np.float32(0.5)))

    def _input_bounds(self, obj: ObjectState):
        """Input box ``(lo, hi)`` ``(k, j, i)`` holding the object's mask and nonzero probabilities."""
        boxes = []
        mb = obj.mask.bounds(mask_only=True)
        if mb is not None:
            boxes.append(mb)
        sb = obj.store.bounds()
        if sb is not None:
            ib = input_box_of_lattice_box(self.lattice, sb[0], sb[1], self.image)
            if ib is not None:
                boxes.append(ib)
        if not boxes:
            return None
        return np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0)

    def probabilities(self, object_id: int | None = None, region: tuple[slice, slice, slice] | None = None
                      ) -> tuple[tuple[slice, slice, slice], np.ndarray]:
        """``(region, probs)``: the object's probabilities on the input grid.

        ``region`` are ``[z, y, x]`` slices of the input array; ``probs`` float32 of its shape
        (memory: 4 bytes per voxel of the object's bounding box; :meth:`result` works in slabs).
        Empty slices when the object has no mask. Given ``region`` (``[z, y, x]`` slices of the
        input array, e.g. a prediction's ``changed_slices_zyx``), only the part of the object's
        box inside it is resampled (a server updating a mask after a click).

        They are the model's probabilities (resampled linearly from the lattice) wherever they
        agree with the mask; where the mask differs from them (the user's own mask in edit
        mode, a box's clip, voxels no prompt acted on, a boundary voxel the intensity
        refinement decided) they are moved to the mask's side of
        0.5 (0.502 inside, 0.5 outside), so ``probs > 0.5`` is exactly :meth:`result`.
        """
        with self._lock:
            self._require_image()
            obj = self._objects.get(self._current if object_id is None else object_id)
            bounds = None if obj is None else self._input_bounds(obj)
            if bounds is None:
                return (slice(0, 0),) * 3, np.zeros((0, 0, 0), np.float32)
            lo, hi = bounds
            if region is not None:
                lo = np.maximum(lo, [int(r.start) for r in region])
                hi = np.maximum(lo, np.minimum(hi, [int(r.stop) for r in region]))
            sl = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
            if np.any(hi <= lo):
                return sl, np.zeros(tuple(int(b - a) for a, b in zip(lo, hi)), np.float32)
            return sl, self._clamped_probs(obj, lo, hi)

    def mask_region(self, region: tuple[slice, slice, slice] | None = None, object_id: int | None = None
                    ) -> tuple[tuple[slice, slice, slice], np.ndarray]:
        """``(region, mask)``: the object's mask (bool ``[z, y, x]``) over ``region`` (slices of the
        input array; default: the mask's bounding box), read from the input-grid mask layer
        without resampling -- :meth:`result` restricted to ``region`` (a server updating its copy
        of a mask in a prediction's ``changed_slices_zyx``). Empty slices when there is no mask
        and no ``region``."""
        with self._lock:
            self._require_image()
            obj = self._objects.get(self._current if object_id is None else object_id)
            if region is None:
                bounds = None if obj is None else obj.mask.bounds(mask_only=True)
                if bounds is None:
                    return (slice(0, 0),) * 3, np.zeros((0, 0, 0), bool)
                region = tuple(slice(int(a), int(b)) for a, b in zip(bounds[0], bounds[1]))
            lo = [int(r.start) for r in region]
            size = [int(r.stop) - int(r.start) for r in region]
            if obj is None:
                return region, np.zeros(size, bool)
            return region, obj.mask.read_mask(lo, size)

    def use_feature_cache(self, cache: FeatureCache) -> None:
        """Keep encoded patches in ``cache`` from now on, e.g. one that sessions on this same image
        with the same model share (keys are lattice starts, which depend only on image and model)."""
        with self._lock:
            self._require_image()
            self.cache = cache
            self._runner.cache = cache

    def result(self, object_id: int | None = None) -> sitk.Image:
        """The object's mask (default: current) as a uint8 0/1 image on the input image's grid.

        The mask is kept on the input grid (see :mod:`.mask_layer`): the user's mask in edit
        mode, changed only where a prompt acted; for an object started from prompts, the
        model's probabilities resampled linearly from the lattice and thresholded at 0.5.
        """
        with self._lock:
            self._require_image()
            obj = self._objects.get(self._current if object_id is None else object_id)
            return mask_image(self.image, [] if obj is None else [(1, obj.mask)])

    def label_map(self) -> sitk.Image:
        """All objects as one label image on the input grid (value = object id, 0 background).

        Where objects overlap, the one with the higher probability (:meth:`probabilities`)
        wins. uint8 (uint16 beyond 255).
        """
        with self._lock:
            self._require_image()

            def resolve(lo, hi, masks):
                best = np.full(tuple(int(v) for v in hi - lo), -1.0, np.float32)
                labels = np.zeros(best.shape, np.int64)
                for oid, m in masks:
                    if not m.any():
                        continue
                    p = self._clamped_probs(self._objects[oid], lo, hi)
                    win = m & (p > best)
                    best[win], labels[win] = p[win], oid
                return labels

            layers = [(oid, o.mask) for oid, o in self._objects.items()]
            return mask_image(self.image, layers, resolve)
