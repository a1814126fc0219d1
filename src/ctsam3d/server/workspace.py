"""One user's working state on one image: objects, their clicks and masks, the label map.

A workspace lives in its own folder (``<state>/sessions/<id>/``) and is rebuilt from it after
a page reload or a server restart:

* ``meta.json``: where the image came from, the objects (name, colour, visibility) and their
  prompts in order: clicks as ITK voxel indices ``(i, j, k)`` of the input image, 2D boxes,
  lassos and scribbles as continuous ITK indices of their points (``prompts``; ``clicks``
  repeats the clicks alone, for older readers);
* ``masks/<oid>.npz``: each object's mask (bounding-box crop, see :mod:`.masks`);
* ``view.nii.gz`` (uploads): the CT written by SimpleITK from the very image the session uses,
  so the viewer and the server share one geometry. Sessions on a datastore image share one
  such copy and the image itself (:mod:`.images`; ``meta["image_key"]`` names it).

``meta.json``'s modification time is the session's last access (refreshed at most every
:data:`TOUCH_SECONDS` while it is used); ``meta["expiry"]`` is the idle time after which it
may be removed (see :mod:`.store`).

The interactive model session (:class:`.engine.Engine`) is a cache: each object in it is brought
up to date by replaying that object's clicks (or undoing) when needed, e.g. after a restart.
Masks and the label map are numpy ``[z, y, x]`` on the input grid; label value = object id.
The label map is not stored: any box of it is composed from the object masks when asked for.
"""

from __future__ import annotations

import json
import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..errors import InputError
from ..geometry import orientation_code
from .engine import SHARED_CACHE_PATCHES, Engine, ModelHolder
from .images import write_view_file
from .masks import Box, SparseMask, box_intersection, box_slices, box_union
from .security import NotFound

TOUCH_SECONDS = 30.0  # last access is written to disk at most this often

PALETTE = [
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40),
]


@dataclass
class Click:
    """One prompt of an object, positive or negative: a click (``kind="click"``) at the ITK
    voxel index ``ijk`` of the input image, or a shape of the page (``"box2d"``, ``"lasso"``,
    ``"scribble"``; see :mod:`.shape_requests`) given by ``points``, continuous ITK indices
    ``(i, j, k)`` of the input, on slice ``points[n][axis]`` of ITK ``axis`` (None: a 3D
    scribble); for a shape ``ijk`` is its first point's voxel."""

    ijk: tuple[int, int, int]
    positive: bool
    kind: str = "click"
    points: tuple[tuple[float, float, float], ...] = ()
    axis: int | None = None

    def to_json(self) -> dict:
        if self.kind == "click":
            return {"ijk": list(self.ijk), "positive": self.positive}
        return {"kind": self.kind, "points": [list(p) for p in self.points], "axis": self.axis,
                "positive": self.positive}

    @classmethod
    def from_json(cls, d: dict) -> "Click":
        kind = d.get("kind", "click")
        if kind == "click":
            return cls(tuple(d["ijk"]), bool(d["positive"]))
        points = tuple(tuple(float(v) for v in p) for p in d["points"])
        return cls(tuple(int(np.floor(v + 0.5)) for v in points[0]), bool(d["positive"]), kind, points, d.get("axis"))


@dataclass
class SegObject:
    """One structure being segmented; ``oid`` is its value in the label map (1..255)."""

    oid: int
    name: str
    color: tuple[int, int, int]
    visible: bool = True
    clicks: list[Click] = field(default_factory=list)
    mask: SparseMask | None = None

    def to_json(self) -> dict:
        return {
            "id": self.oid,
            "name": self.name,
            "color": list(self.color),
            "visible": self.visible,
            "clicks": [c.to_json() for c in self.clicks if c.kind == "click"],
            "prompts": [dict(c.to_json(), kind=c.kind) for c in self.clicks],  # clicks and shapes, in order
            "voxels": self.mask.voxels if self.mask else 0,
        }


@dataclass
class Change:
    """What one edit did: the label-map box that may have changed (``None``: nothing), sizes, time."""

    box: Box | None
    object: SegObject
    latency_ms: float
    stages_ms: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "box": None if self.box is None else [list(self.box[0]), list(self.box[1])],
            "object": self.object.to_json(),
            "server_ms": round(self.latency_ms, 1),
            "stages_ms": {k: round(v, 1) for k, v in self.stages_ms.items()},  # + patch counts
        }


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class Workspace:
    """State of one session (see module docstring). All public methods are thread-safe."""

    def __init__(self, directory: Path, image: sitk.Image, meta: dict, models: ModelHolder, max_objects: int = 255,
                 shared=None):
        self.directory = directory
        self.image = image
        self.shared = shared  # the .images.SharedImage this session's image comes from (datastore), or None
        self.meta = meta
        self.models = models
        self.max_objects = max_objects
        self.shape = tuple(reversed(image.GetSize()))  # (z, y, x)
        self.objects: dict[int, SegObject] = {}
        self.last_access = time.time()
        self._touched = self.last_access
        self.lock = threading.RLock()
        self.engine: Engine | None = None
        self.applied: dict[int, int] = {}  # object id -> clicks of it the engine has seen
        (directory / "masks").mkdir(exist_ok=True)
        for o in meta.get("objects", []):
            obj = SegObject(o["id"], o["name"], tuple(o["color"]), o.get("visible", True),
                            [Click.from_json(c) for c in o.get("prompts", o.get("clicks", []))])
            self.objects[obj.oid] = obj
        stale = []
        for obj in self.objects.values():
            path = self._mask_path(obj.oid)
            if path.exists():
                mask, n = SparseMask.load(path)
                obj.mask = mask if n == len(obj.clicks) else None
                if n != len(obj.clicks):
                    stale.append(obj)
            elif obj.clicks:
                stale.append(obj)
        for obj in stale:  # a crash between writing clicks and mask: recompute from the clicks
            self._replay_into(obj)

    # --- creation / description -----------------------------------------------------------------
    @classmethod
    def create(cls, directory: Path, session_id: str, image: sitk.Image, source: dict, models: ModelHolder,
               max_objects: int = 255, shared=None, expiry: float = 0) -> "Workspace":
        """New workspace in the existing, empty ``directory``; writes ``meta.json`` and, without a
        ``shared`` image (an upload), ``view.nii.gz``. ``expiry``: idle seconds before it may be
        removed (0: the server's default)."""
        meta = {"session_id": session_id, "created": time.time(), "source": source, "objects": [], "next_id": 1,
                "expiry": max(0, int(expiry))}
        if shared is not None:
            meta["image_key"] = shared.key
        else:
            write_view_file(image, directory / "view.nii.gz")
        ws = cls(directory, image, meta, models, max_objects, shared)
        ws._save_meta()
        return ws

    @property
    def session_id(self) -> str:
        return self.meta["session_id"]

    @property
    def view_path(self) -> Path:
        """The viewer's NIfTI copy of the CT (waits while a shared copy is still being written)."""
        own = self.directory / "view.nii.gz"
        if self.shared is None or own.is_file():
            return own
        return self.shared.wait_view()

    def touch(self) -> None:
        """Note an access (kept in memory; written as meta.json's mtime every TOUCH_SECONDS)."""
        now = time.time()
        self.last_access = now
        if now - self._touched >= TOUCH_SECONDS:
            self._touched = now
            try:
                os.utime(self.directory / "meta.json")
            except FileNotFoundError:  # removed meanwhile (the operator cleared it)
                pass

    def set_expiry(self, seconds: float) -> None:
        """Idle seconds after which this session may be removed (0: the server's default)."""
        with self.lock:
            self.meta["expiry"] = max(0, int(seconds))
            self._save_meta()

    def info(self) -> dict:
        img = self.image
        with self.lock:
            return {
                "session_id": self.session_id,
                "created": self.meta["created"],
                "source": {k: v for k, v in self.meta["source"].items() if k != "path"},
                "image": {
                    "size": list(img.GetSize()),
                    "spacing": [round(s, 6) for s in img.GetSpacing()],
                    "origin": [round(o, 4) for o in img.GetOrigin()],
                    "direction": [round(d, 6) for d in img.GetDirection()],
                    "orientation": orientation_code(img),
                },
                "is_dicom": bool(self.meta["source"].get("is_dicom")),
                "objects": [o.to_json() for o in self.objects.values()],
            }

    # --- objects --------------------------------------------------------------------------------
    def add_object(self, name: str, color=None) -> SegObject:
        with self.lock:
            name = _clean_name(name)
            oid = self.meta["next_id"]
            if oid > self.max_objects:
                used = set(self.objects)
                free = [i for i in range(1, self.max_objects + 1) if i not in used]
                if not free:
                    raise InputError(f"object {name!r}: a session holds at most {self.max_objects} objects")
                oid = free[0]
            else:
                self.meta["next_id"] = oid + 1
            color = _clean_color(color) if color is not None else PALETTE[(oid - 1) % len(PALETTE)]
            obj = SegObject(oid, name, color)
            self.objects[oid] = obj
            self._save_meta()
            return obj

    def update_object(self, oid: int, *, name=None, color=None, visible=None) -> SegObject:
        with self.lock:
            obj = self.get_object(oid)
            if name is not None:
                obj.name = _clean_name(name)
            if color is not None:
                obj.color = _clean_color(color)
            if visible is not None:
                obj.visible = bool(visible)
            self._save_meta()
            return obj

    def get_object(self, oid: int) -> SegObject:
        obj = self.objects.get(oid)
        if obj is None:
            raise NotFound(f"object {oid} not found in session {self.session_id}")
        return obj

    def object_named(self, name: str) -> SegObject:
        """The object called ``name`` (created when missing) — MONAI Label's ``label`` parameter."""
        with self.lock:
            for obj in self.objects.values():
                if obj.name == name:
                    return obj
            return self.add_object(name)

    def delete_object(self, oid: int) -> Change:
        with self.lock:
            obj = self.get_object(oid)
            self._reset_engine_object(oid)
            self.applied.pop(oid, None)
            del self.objects[oid]
            box = obj.mask.box if obj.mask else None
            self._mask_path(oid).unlink(missing_ok=True)
            self._save_meta()
            return Change(box, obj, 0.0)

    # --- edits ----------------------------------------------------------------------------------
    def click(self, oid: int, ijk: tuple[int, int, int], positive: bool) -> Change:
        """Add a click (ITK voxel index of the input image, already validated) to object ``oid``."""
        return self.prompt(oid, Click(tuple(ijk), bool(positive)))

    def prompt(self, oid: int, prompt: Click) -> Change:
        """Add one prompt (click or shape, already validated) to object ``oid``; undone by :meth:`undo`."""
        t0 = time.perf_counter()
        with self.lock:
            obj = self.get_object(oid)
            with self._transaction(obj):
                self._apply_clicks(obj, [prompt])
                return self._commit(obj, t0)

    def set_clicks(self, oid: int, clicks: list[Click]) -> Change:
        """Make ``clicks`` the object's click list (MONAI Label resends all points on every call).

        When the stored clicks of each polarity are a prefix of the new ones, only the new clicks
        run; otherwise the object restarts from the new list.
        """
        t0 = time.perf_counter()
        with self.lock:
            obj = self.get_object(oid)
            new_pos = [c for c in clicks if c.positive]
            new_neg = [c for c in clicks if not c.positive]
            old_pos = [c for c in obj.clicks if c.positive]
            old_neg = [c for c in obj.clicks if not c.positive]
            with self._transaction(obj):
                if new_pos[: len(old_pos)] == old_pos and new_neg[: len(old_neg)] == old_neg:
                    extra = new_pos[len(old_pos):] + new_neg[len(old_neg):]
                    if not extra:
                        return Change(None, obj, (time.perf_counter() - t0) * 1e3)
                    self._apply_clicks(obj, extra)
                else:
                    self._clear_locked(obj)
                    self._apply_clicks(obj, new_pos + new_neg)
                return self._commit(obj, t0)

    def undo(self, oid: int) -> Change:
        t0 = time.perf_counter()
        with self.lock:
            obj = self.get_object(oid)
            if not obj.clicks:
                raise InputError(f"object {obj.name!r}: nothing to undo")
            n = len(obj.clicks) - 1
            with self._transaction(obj):
                if n == 0:
                    self._clear_locked(obj)
                else:
                    self._sync_engine(obj, n)
                    del obj.clicks[n:]
                return self._commit(obj, t0)

    def clear(self, oid: int) -> Change:
        t0 = time.perf_counter()
        with self.lock:
            obj = self.get_object(oid)
            self._clear_locked(obj)
            return self._commit(obj, t0)

    # --- outputs --------------------------------------------------------------------------------
    def object_mask_image(self, oid: int) -> sitk.Image:
        """The object's mask as a SimpleITK uint8 0/1 image on the input grid."""
        with self.lock:
            obj = self.get_object(oid)
            full = obj.mask.to_full(self.shape) if obj.mask else np.zeros(self.shape, np.uint8)
        return self._as_image(full)

    def label_image(self) -> sitk.Image:
        """All objects as one uint8 label map on the input grid (value = object id)."""
        with self.lock:
            return self._as_image(self.labels_in(((0, 0, 0), self.shape)))

    def labels_in(self, box: Box) -> np.ndarray:
        """The label map over ``box`` (uint8 ``[z, y, x]`` of its shape; later objects on top)."""
        with self.lock:
            out = np.zeros(tuple(h - l for l, h in zip(box[0], box[1])), np.uint8)
            for obj in self.objects.values():
                m = obj.mask
                inter = None if m is None else box_intersection(m.box, box)
                if inter is None:
                    continue
                src = tuple(slice(a - o, b - o) for a, b, o in zip(inter[0], inter[1], m.box[0]))
                dst = tuple(slice(a - o, b - o) for a, b, o in zip(inter[0], inter[1], box[0]))
                out[dst][m.crop[src]] = obj.oid
            return out

    def labels_bytes(self, box: Box) -> bytes:
        """Raw uint8 label values of the label map over ``box`` in C order (i fastest), for the viewer."""
        return self.labels_in(box).tobytes()

    def release(self) -> None:
        """Free the model session (state stays on disk and in the object masks)."""
        with self.lock:
            self.engine = None
            self.applied = {}

    # --- internals ------------------------------------------------------------------------------
    def _as_image(self, array: np.ndarray) -> sitk.Image:
        out = sitk.GetImageFromArray(array)
        out.CopyInformation(self.image)
        return out

    def _mask_path(self, oid: int) -> Path:
        return self.directory / "masks" / f"{int(oid)}.npz"

    def _save_meta(self) -> None:
        self.meta["objects"] = [
            {k: v for k, v in o.to_json().items() if k != "voxels"} for o in self.objects.values()
        ]
        _atomic_write_text(self.directory / "meta.json", json.dumps(self.meta))

    def _engine(self) -> Engine:
        if self.engine is None:
            cache = None if self.shared is None else self.shared.feature_cache(self.models, SHARED_CACHE_PATCHES)
            self.engine = self.models.engine(self.image, cache)
            self.applied = {}
        return self.engine

    @contextmanager
    def _transaction(self, obj: SegObject):
        """On any error: the object's clicks are restored and the engine is dropped (its state is
        unknown; it is rebuilt from the clicks on the next edit). Mask and disk change only in
        :meth:`_commit`, the last step."""
        before = list(obj.clicks)
        try:
            yield
        except BaseException:
            obj.clicks[:] = before
            self.release()
            raise

    def _reset_engine_object(self, oid: int) -> bool:
        """Clear object ``oid`` in the model session, if it has it there; True if it did."""
        if self.engine is None or oid not in self.applied:
            return False
        self.engine.select(oid)
        self.engine.reset()
        return True

    def _sync_engine(self, obj: SegObject, n: int) -> Engine:
        """Bring the engine to "object ``obj`` with its first ``n`` clicks applied"."""
        engine = self._engine()
        fresh = engine.select(obj.oid)
        if obj.oid not in self.applied:  # new to the engine, or an id reused after a delete
            if not fresh:
                engine.reset()
            self.applied[obj.oid] = 0
        while self.applied[obj.oid] > n:
            if not engine.undo():  # beyond the model session's undo depth: replay from scratch
                engine.reset()
                self.applied[obj.oid] = 0
                break
            self.applied[obj.oid] -= 1
        for c in obj.clicks[self.applied[obj.oid]:n]:
            engine.add_prompt(c)
            self.applied[obj.oid] += 1
        return engine

    def _apply_clicks(self, obj: SegObject, clicks: list[Click]) -> None:
        engine = self._sync_engine(obj, len(obj.clicks))
        for c in clicks:
            engine.add_prompt(c)
            obj.clicks.append(c)
            self.applied[obj.oid] += 1

    def _clear_locked(self, obj: SegObject) -> None:
        obj.clicks.clear()
        if self._reset_engine_object(obj.oid):
            self.applied[obj.oid] = 0

    def _commit(self, obj: SegObject, t0: float) -> Change:
        """Take the object's mask from the engine (or empty), update it on disk.

        The engine resamples only the box its edits changed (keeping the rest of ``obj.mask``);
        the change reported to the viewer is that box within the old and new masks' boxes.
        ``stages_ms``: waiting for the model (other users' clicks), model, mask, saving."""
        engine = self._sync_engine(obj, len(obj.clicks)) if obj.clicks else None
        t1 = time.perf_counter()
        new = engine.mask(obj.mask) if engine is not None else None
        t2 = time.perf_counter()
        region = box_union(obj.mask.box if obj.mask else None, new.box if new else None)
        if region is not None and engine is not None and not engine.last_full:
            region = None if engine.last_region is None else box_intersection(region, engine.last_region)
        obj.mask = new
        if new is None:
            self._mask_path(obj.oid).unlink(missing_ok=True)
        else:
            new.save(self._mask_path(obj.oid), len(obj.clicks))
        self._save_meta()
        t3 = time.perf_counter()
        stages = {}
        if self.engine is not None:
            stages = self.engine.take_times()
        stages.update(mask=(t2 - t1) * 1e3, save=(t3 - t2) * 1e3)
        return Change(region, obj, (t3 - t0) * 1e3, stages)

    def _replay_into(self, obj: SegObject) -> None:
        self._commit(obj, time.perf_counter())


def _clean_name(name) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InputError("object name: must be a non-empty string")
    name = " ".join(name.split())
    if len(name) > 128:
        raise InputError(f"object name {name[:40]!r}...: longer than 128 characters")
    return name


def _clean_color(color) -> tuple[int, int, int]:
    try:
        rgb = tuple(int(c) for c in color)
    except (TypeError, ValueError):
        raise InputError(f"colour {str(color)[:40]}: expected [r, g, b] in 0..255") from None
    if len(rgb) != 3 or any(not 0 <= c <= 255 for c in rgb):
        raise InputError(f"colour {list(rgb)}: expected [r, g, b] in 0..255")
    return rgb  # type: ignore[return-value]
