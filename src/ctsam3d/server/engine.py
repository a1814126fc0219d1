"""The server's narrow view of the rest of ctsam3d (model, interactive session, I/O, catalogue).

Everything the server needs from the lower layers goes through this module, so routes and
state can be read (and tested) against one small surface:

* :class:`ModelHolder` loads the model once (lazily) and gates concurrent inference.
* :class:`Engine` wraps one :class:`ctsam3d.Session` on one image and hands back masks as
  :class:`.masks.SparseMask` (bounding-box crops of ``[z, y, x]`` arrays on the input grid).
* :func:`ras_to_voxel` / :func:`check_voxel` turn a click into an ITK voxel index ``(i, j, k)``
  of the input image (the form 3D Slicer / MONAI Label send), or raise :class:`ClickError`.
"""

from __future__ import annotations

import math
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import ClickError
from ..geometry import ras_to_lps
from .masks import Box, SparseMask, box_slices, box_union


def read_image(path: str | Path) -> sitk.Image:
    """Read and validate a CT volume (file or DICOM folder) with :func:`ctsam3d.io.read_volume`."""
    from ..io import read_volume

    return read_volume(path)


def read_label(path: str | Path, reference: sitk.Image) -> sitk.Image:
    """Read an integer label map and check it lies on ``reference``'s grid (:func:`ctsam3d.io.read_label`)."""
    from ..io import read_label as _read_label

    return _read_label(path, reference=reference)


def mask_file_bytes(mask: sitk.Image, suffix: str, source: sitk.Image | str | None, name: str) -> bytes:
    """A 0/1 mask on the source grid as file bytes, written by :func:`ctsam3d.io.write_mask`.

    Args:
        mask: uint8 0/1 image on the source grid.
        suffix: ``.nii.gz`` (NIfTI) or ``.dcm`` (DICOM-SEG; ``source`` must be the DICOM folder).
        source: the image (or DICOM folder path) the mask belongs to.
        name: structure name recorded in the file where the format has a place for it.
    """
    from ..io import write_mask

    with tempfile.TemporaryDirectory(prefix="ctsam3d-") as tmp:
        path = write_mask(mask, Path(tmp) / f"mask{suffix}", source=source, overwrite=True, names={1: name})
        return Path(path).read_bytes()


def structure_names() -> list[str]:
    """Structure names offered to users (the model's anatomy catalogue), in catalogue order."""
    from ..anatomy import get_catalogue

    return list(get_catalogue("ctsam3d").names)


def ras_to_voxel(image: sitk.Image, ras_mm) -> tuple[int, int, int]:
    """World RAS mm (NiiVue's ``mm``) -> nearest ITK voxel index ``(i, j, k)`` of ``image``.

    RAS is flipped to LPS, then the image's own geometry maps it to a continuous index
    (``TransformPhysicalPointToContinuousIndex``), rounded to the voxel that contains it.

    Raises:
        ClickError: not three finite numbers, or outside the image.
    """
    ras = _three_numbers(ras_mm, "click (RAS mm)")
    lps = ras_to_lps(np.asarray(ras)).tolist()
    cont = image.TransformPhysicalPointToContinuousIndex(lps)
    ijk = tuple(int(math.floor(c + 0.5)) for c in cont)
    size = image.GetSize()
    if any(not 0 <= v < n for v, n in zip(ijk, size)):
        raise ClickError(
            f"click at RAS ({ras[0]:.1f}, {ras[1]:.1f}, {ras[2]:.1f}) mm is outside the image "
            f"(voxel {ijk}, image size {tuple(size)})"
        )
    return ijk


def check_voxel(image: sitk.Image, ijk) -> tuple[int, int, int]:
    """Validate an ITK voxel index ``(i, j, k)`` (integers, inside ``image``); raise :class:`ClickError`."""
    values = _three_numbers(ijk, "click (i, j, k)")
    if any(v != int(v) for v in values):
        raise ClickError(f"click (i, j, k) {list(values)}: voxel indices must be integers")
    out = tuple(int(v) for v in values)
    size = image.GetSize()
    if any(not 0 <= v < n for v, n in zip(out, size)):
        raise ClickError(f"click voxel {out} is outside the image (size {tuple(size)})")
    return out


def _three_numbers(value, what: str) -> tuple[float, float, float]:
    try:
        vals = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ClickError(f"{what}: expected three numbers, got {str(value)[:80]}") from None
    if len(vals) != 3:
        raise ClickError(f"{what}: expected three numbers, got {len(vals)}")
    if not all(math.isfinite(v) for v in vals):
        raise ClickError(f"{what}: not finite: {list(vals)}")
    return vals


CACHE_PATCHES = 8  # encoded patches kept per session (when it has no shared cache)
SHARED_CACHE_PATCHES = 48  # encoded patches kept per image, shared by the sessions on it
UNDO_DEPTH = 32  # undo steps the model session keeps per object


class ModelHolder:
    """Loads the model on first use and limits how many clicks run at the same time.

    Args:
        model: model name, checkpoint folder or preset name for :func:`ctsam3d.load_model` (None =
            the default model), or an already loaded model object.
        device: torch device string.
        expansion: cross-patch expansion on/off in every session.
        max_concurrent: clicks computed at once across all users.
        max_patches: expansion budget per click (None: the library default).
        untrained: a preset name means its freshly initialised weights (``--untrained``), even
            one a bundled model bears (``ctsam3d-lite-wb``).
        refine: the sessions' intensity-guided boundary refinement (None: the session default).
        mirror: the sessions' left-right mirror averaging (None: the session default).
    """

    def __init__(self, model, device: str = "cpu", expansion: bool = True, max_concurrent: int = 1,
                 max_patches: int | None = None, untrained: bool = False, refine: bool | None = None,
                 mirror: bool | None = None) -> None:
        self.spec = model if model is None or isinstance(model, str) else None
        self.untrained = untrained
        self.device = device
        self.expansion = expansion
        self.max_patches = max_patches
        self.refine = refine
        self.mirror = mirror
        self.max_concurrent = max(1, max_concurrent)
        self.gate = threading.BoundedSemaphore(self.max_concurrent)
        self._drain = threading.Lock()
        self._model = None if self.spec is not None or model is None else model
        self._lock = threading.Lock()

    def describe(self) -> dict[str, str]:
        """``{"name", "trained_on"}`` of the model (``ctsam3d models``), known without loading it."""
        from ..hub.registry import default_model, find_model, is_untrained

        model = self._model
        if model is not None:
            name = getattr(model, "model_name", None) or model.config.preset
        elif self.spec is None:
            entry = default_model()
            name = entry.name if entry is not None else "none"
        else:
            name = f"{self.spec} (untrained)" if is_untrained(self.spec, self.untrained) else Path(self.spec).name
        entry = find_model(name)
        if entry is not None:
            trained_on = entry.anatomy
        elif name.endswith("(untrained)"):
            trained_on = "nothing: untrained weights"
        else:
            structures = list(getattr(getattr(model, "config", None), "structures", None) or [])
            trained_on = f"{len(structures)} structures" if structures else "unknown"
        return {"name": name, "trained_on": trained_on}

    def get(self):
        """The model (loaded now if needed; :class:`CheckpointError` when it cannot be)."""
        with self._lock:
            if self._model is None:
                import ctsam3d

                from ..hub.registry import is_preset

                self._model = ctsam3d.load_model(self.spec, device=self.device,
                                                 untrained=self.untrained and is_preset(self.spec))
            return self._model

    @contextmanager
    def exclusive(self):
        """Hold every permit of the gate: no click runs meanwhile (for numpy reads of a shared
        image's pixels, which must not overlap a patch crop; see :mod:`.images`)."""
        with self._drain:  # one drainer at a time: two half-drained gates would deadlock
            for _ in range(self.max_concurrent):
                self.gate.acquire()
        try:
            yield
        finally:
            for _ in range(self.max_concurrent):
                self.gate.release()

    def engine(self, image: sitk.Image, cache=None) -> "Engine":
        """A model session on ``image``; ``cache``: an encoded-patch cache shared with other
        sessions on the same image (see :class:`.images.SharedImage`), else its own."""
        model = self.get()
        with self.exclusive():  # set_image reads the pixels as numpy (HU check): no crop may run
            return Engine(model, image, self.expansion, self.gate, cache, self.max_patches, self.refine, self.mirror)


class Engine:
    """One :class:`ctsam3d.Session` on one image, holding several objects.

    Objects are named by the server's object ids; :meth:`select` makes one current (creating
    it in the session the first time). Masks come back as :class:`.masks.SparseMask` on the
    input grid. Every call that runs the model holds ``gate`` (shared by all sessions).

    The engine remembers, per object, the input-grid box its edits changed since the last
    :meth:`mask` (the session's ``changed_bbox``), so a mask is updated by copying only that box
    of the session's input-grid mask (no resampling: the session keeps the mask on the input grid).
    """

    def __init__(self, model, image: sitk.Image, expansion: bool, gate: threading.BoundedSemaphore,
                 cache=None, max_patches: int | None = None, refine: bool | None = None,
                 mirror: bool | None = None) -> None:
        from ..inference.session import Session

        self.gate = gate
        self.image = image
        # Fewer cached encoded patches and undo steps than the library default: a server holds
        # many sessions, each user works in one region, and undo past this depth replays clicks.
        self.session = Session(model, expansion=expansion, cache_size=CACHE_PATCHES, undo_depth=UNDO_DEPTH,
                               max_patches=max_patches, refine=refine, mirror=mirror)
        self.session.set_image(image)
        if cache is not None:
            self.session.use_feature_cache(cache)
        self._ids: dict[int, int] = {}  # server object id -> session object id
        self._oid: int | None = None
        self._changed: dict[int, Box | None] = {}  # server object id -> input box changed since mask()
        self._full: set[int] = set()  # objects rebuilt (new here, reset): recompute all unless empty before
        self.last_region: Box | None = None
        self.last_full = True
        self._times = self._zero_times()

    @staticmethod
    def _zero_times() -> dict[str, float]:
        return {"wait": 0.0, "model": 0.0, "encoded": 0, "decoded": 0, "crop": 0.0, "encode": 0.0, "decode": 0.0,
                "cpp": 0.0, "expansion": 0.0, "input_mask": 0.0}

    def take_times(self) -> dict[str, float]:
        """Since the last call: milliseconds waiting for the model gate (``wait``) and running the
        model (``model``; of it ``crop``, ``encode``, ``decode``, ``cpp``, ``expansion`` and
        ``input_mask``, the paste onto the input grid, as the session times them), and patches
        encoded / decoded (``encoded``, ``decoded``)."""
        out, self._times = self._times, self._zero_times()
        return out

    @contextmanager
    def _gated(self):
        t0 = time.perf_counter()
        with self.gate:
            t1 = time.perf_counter()
            try:
                yield
            finally:
                self._times["wait"] += (t1 - t0) * 1e3
                self._times["model"] += (time.perf_counter() - t1) * 1e3

    def select(self, oid: int) -> bool:
        """Make object ``oid`` current; True when the session did not know it yet (no clicks)."""
        self._oid = oid
        if oid in self._ids:
            self.session.select_object(self._ids[oid])
            return False
        self._ids[oid] = self.session.new_object(f"object-{oid}")
        self._full.add(oid)
        self._changed[oid] = None
        return True

    def _note(self, prediction) -> None:
        if prediction is None or self._oid is None:
            return
        self._times["encoded"] += prediction.patches_encoded
        self._times["decoded"] += prediction.patches_decoded
        for stage in ("crop", "encode", "decode", "cpp", "expansion"):
            self._times[stage] += prediction.timing_ms.get(stage, 0.0)
        self._times["input_mask"] += prediction.timing_ms.get("mask", 0.0)  # the session's input-grid paste
        s = prediction.changed_slices_zyx
        if s is None:
            return
        box = ((s[0].start, s[1].start, s[2].start), (s[0].stop, s[1].stop, s[2].stop))
        self._changed[self._oid] = box_union(self._changed.get(self._oid), box)

    def add_click(self, ijk: tuple[int, int, int], positive: bool) -> None:
        """Add one click to the current object (ITK voxel index ``(i, j, k)`` of the input image)."""
        with self._gated():
            self._note(self.session.add_click(tuple(int(v) for v in ijk), positive=positive))

    def add_prompt(self, prompt) -> None:
        """Add one prompt of a workspace (:class:`.workspace.Click`: a click, or a 2D box, lasso or
        scribble whose points are continuous ITK indices of the input) to the current object."""
        if prompt.kind == "click":
            return self.add_click(prompt.ijk, prompt.positive)
        s, pts, positive = self.session, [list(p) for p in prompt.points], prompt.positive
        with self._gated():
            if prompt.kind == "box2d":
                step = s.add_box2d(pts[0], pts[1], positive=positive, axis=prompt.axis)
            elif prompt.kind == "lasso":
                step = s.add_lasso(pts, positive=positive, axis=prompt.axis)
            elif prompt.kind == "scribble":
                step = s.add_scribble(pts, positive=positive)
            else:
                raise ValueError(f"unknown prompt kind {prompt.kind!r}")
            self._note(step)

    def undo(self) -> bool:
        """Undo the current object's last step; False when its undo history is exhausted."""
        with self._gated():
            prediction = self.session.undo()
        self._note(prediction)
        return prediction is not None

    def reset(self) -> None:
        """Clear the current object (its mask is recomputed as a whole next time)."""
        self.session.reset()
        if self._oid is not None:
            self._full.add(self._oid)
            self._changed[self._oid] = None

    def mask(self, previous: SparseMask | None = None) -> SparseMask | None:
        """The current object's mask (probability > 0.5) on the input grid, or None when empty.

        ``previous``: the mask this engine last returned for the object; only the box changed
        since then is read from the session and the rest of ``previous`` kept (the whole object is
        recomputed after a reset or when the engine is new to the object, unless ``previous``
        is empty: then the boxes the rebuilding edits changed are all there is). Afterwards
        ``last_region`` is the box that may differ from ``previous`` (None: nowhere) unless
        ``last_full`` (anywhere).
        """
        changed = self._changed.get(self._oid)
        full = self._oid in self._full and previous is not None
        self._changed[self._oid] = None
        self._full.discard(self._oid)
        self.last_region, self.last_full = changed, full
        if full:  # the engine rebuilt the object: nothing of `previous` is known to hold
            region, on = self.session.mask_region()
            return _crop_of(region, on)
        if changed is None:
            return previous
        _, part = self.session.mask_region(box_slices(changed))
        if previous is None:
            return _crop_of(box_slices(changed), part)
        return previous.replaced(changed, part)


def _crop_of(region, on: np.ndarray) -> SparseMask | None:
    if on.size == 0:
        return None
    crop = SparseMask.from_full(on)
    if crop is None:
        return None
    offset = tuple(int(r.start) for r in region)
    lo = tuple(o + v for o, v in zip(offset, crop.box[0]))
    hi = tuple(o + v for o, v in zip(offset, crop.box[1]))
    return SparseMask((lo, hi), crop.crop)
