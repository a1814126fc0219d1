"""Prepared images shared by every session on the same file: read once, one viewer copy.

Opening a datastore image costs a read and validation (about 2 s for a 512 x 512 x 300 CT) and
the viewer's NIfTI copy (``view.nii.gz``, about 55 MB and 2 s to write). Sessions on the same
file share both: :class:`SharedImages` keeps the SimpleITK image in memory while any session
holds it (plus the most recently used few), and writes the viewer copy once, in
``<state>/views/<key>/view.nii.gz``. ``key`` is a hash of the datastore id and the file's
size and modification time (every file of a DICOM folder), so a changed file gets a new key.

Images are never modified after reading: sessions only read pixels (patch crops) and geometry.
**Thread safety.** SimpleITK crashes (SIGSEGV, seen under 8 users) when one thread takes a numpy
view of an image (``GetArrayViewFromImage``: its ``MakeUnique`` deep-copies and swaps the
buffer while anything else holds it) while another runs a filter on the same image object (a
patch crop, a writer). So: the numpy reads of a shared image happen once, at load, before any
other thread sees it (HU check, the viewer copy's pixels); afterwards filters on it (patch
crops, the page's display volume, a rewrite of the viewer copy) run holding a permit of the
model gate, and a numpy view of it (a model session's set-up: its HU check) holds every permit
(:meth:`.engine.ModelHolder.exclusive`), so a view never overlaps a filter (filters running
together on one image were not seen to crash).
Each image also carries one cache of encoded patches per model that all sessions on it share
(:class:`SharedFeatureCache`; keys are lattice starts, which depend only on image and model).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import SimpleITK as sitk

from .engine import read_image

VIEW_NAME = "view.nii.gz"


def write_view_file(image: sitk.Image, path: Path) -> None:
    """Write ``image`` as gzipped NIfTI at ``path`` (atomically), compressed at zlib level 1.

    ITK's NIfTI writer compresses at one fixed level whatever level it is given (4.5 s for a
    512 x 512 x 300 CT on the 2-core dev machine); writing it uncompressed and compressing at
    level 1 here took 0.7 + 2.1 s for a 9 % larger file (59 instead of 54 MB).
    """
    import zlib

    tmp_nii = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.nii")
    tmp_gz = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.part")
    try:
        sitk.WriteImage(image, str(tmp_nii), False)
        packer = zlib.compressobj(1, zlib.DEFLATED, 31)  # wbits 31: a gzip container
        with open(tmp_nii, "rb") as src, open(tmp_gz, "wb") as dst:
            while chunk := src.read(4 << 20):
                dst.write(packer.compress(chunk))
            dst.write(packer.flush())
        os.replace(tmp_gz, path)
    finally:
        tmp_nii.unlink(missing_ok=True)
        tmp_gz.unlink(missing_ok=True)


def view_response(path: Path, **kwargs):
    """A ``FileResponse`` for a viewer copy, sent in 1 MiB reads instead of Starlette's 64 KiB
    (a 55 MB CT is ~60 thread hops instead of ~860; 8 users opening at once on 2 cores took
    2-5 s instead of 5-7 s in a probe)."""
    from fastapi.responses import FileResponse

    class _ViewFile(FileResponse):
        chunk_size = 1 << 20

    return _ViewFile(path, media_type="application/gzip", **kwargs)


def shared_feature_cache(max_items: int):
    """A :class:`~ctsam3d.inference.patch_cache.FeatureCache` that several sessions on one image
    use at once: a lock around each operation, and ``clear`` (which a session calls when it sets
    its image) leaves the others' entries alone. (Imported lazily: torch.)"""
    from ..inference.patch_cache import FeatureCache

    class SharedFeatureCache(FeatureCache):
        def __init__(self, max_items: int):
            super().__init__(max_items)
            self._lock = threading.Lock()

        def get(self, key):
            with self._lock:
                return super().get(key)

        def put(self, key, item) -> None:
            with self._lock:
                super().put(key, item)

        def clear(self) -> None:
            pass

    return SharedFeatureCache(max_items)


@dataclass(eq=False)
class SharedImage:
    """One prepared image: the SimpleITK image (read-only), its viewer copy, its feature cache."""

    key: str
    image: sitk.Image
    view_path: Path
    view_ready: threading.Event = field(default_factory=threading.Event)
    view_error: BaseException | None = None
    caches: dict = field(default_factory=dict)
    hu: object = None  # ctsam3d.io.hu_check.HuCheck of the image, computed once at load
    pixel_gate: object = field(default_factory=threading.Lock)  # set to the model gate by the store
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_view(self, timeout: float = 600.0) -> Path:
        """The viewer copy's path once it is written (it is written in the background; written
        again here if it was removed meanwhile, e.g. by ``ctsam3d sessions clear``)."""
        if not self.view_ready.wait(timeout):
            raise TimeoutError(f"viewer copy of image {self.key} not ready after {timeout:.0f} s")
        if self.view_error is not None:
            raise self.view_error
        if not self.view_path.is_file():
            with self._lock:
                if not self.view_path.is_file():
                    self.write_view(self.key)
        return self.view_path

    def write_view(self, image_id: str = "", copy: sitk.Image | None = None) -> None:
        """Write ``view_path`` (atomically) from ``copy`` (the image's pixels in a separate image),
        else from the image itself under the model gate (a rewrite; see the module docstring)."""
        directory = self.view_path.parent
        directory.mkdir(parents=True, exist_ok=True)
        if copy is not None:
            write_view_file(copy, self.view_path)
        else:
            with self.pixel_gate:
                write_view_file(self.image, self.view_path)
        (directory / "source.json").write_text(json.dumps({"image": image_id, "written": time.time()}), encoding="utf-8")

    def feature_cache(self, owner, size: int):
        """The encoded-patch cache of this image for ``owner`` (the model holder)."""
        with self._lock:
            cache = self.caches.get(id(owner))
            if cache is None:
                cache = self.caches[id(owner)] = shared_feature_cache(size)
            return cache


def source_key(image_id: str, path: Path) -> str:
    """Hash of a datastore id and its file's (or DICOM folder's files') size and mtime."""
    h = hashlib.sha256(image_id.encode())
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        st = f.stat()
        h.update(f"\0{f.name}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    return h.hexdigest()[:32]


class SharedImages:
    """Prepared datastore images by key (see the module docstring).

    Args:
        root: folder of the viewer copies (``<state>/views``).
        keep: images kept in memory beyond those a live session holds (most recently used).
        pixel_gate: the lock under which pixels of a published image are read (the model gate).
    """

    def __init__(self, root: Path, keep: int = 2, pixel_gate=None) -> None:
        self.root = root
        self.keep = keep
        self.pixel_gate = pixel_gate if pixel_gate is not None else threading.Lock()
        self._live: weakref.WeakValueDictionary[str, SharedImage] = weakref.WeakValueDictionary()
        self._recent: OrderedDict[str, SharedImage] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}

    def get(self, image_id: str, path: Path) -> SharedImage:
        """The prepared image of datastore ``image_id`` at ``path`` (read now if needed)."""
        key = source_key(image_id, path)
        with self._lock:
            shared = self._live.get(key)
            if shared is not None:
                self._touch(shared)
                return shared
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:  # one reader per key; the others wait for it and share its result
            with self._lock:
                shared = self._live.get(key)
            if shared is None:
                shared = self._load(key, image_id, path)
            with self._lock:
                self._live[key] = shared
                self._touch(shared)
                self._loading.pop(key, None)
            return shared

    def _touch(self, shared: SharedImage) -> None:
        self._recent[shared.key] = shared
        self._recent.move_to_end(shared.key)
        while len(self._recent) > self.keep:
            self._recent.popitem(last=False)

    def _load(self, key: str, image_id: str, path: Path) -> SharedImage:
        from ..io.hu_check import check_hu

        image = read_image(path)
        directory = self.root / key
        shared = SharedImage(key, image, directory / VIEW_NAME, pixel_gate=self.pixel_gate)
        # Everything that reads the pixels as numpy happens now, before any other thread sees
        # the image (see the module docstring): the HU plausibility check, and the viewer copy's
        # pixels (a separate image, so its writer never runs on the shared one).
        shared.hu = check_hu(image)
        if shared.view_path.is_file():
            shared.view_ready.set()
        else:
            copy = sitk.GetImageFromArray(sitk.GetArrayViewFromImage(image))
            copy.CopyInformation(image)
            threading.Thread(target=self._write_view, args=(shared, image_id, copy), daemon=True).start()
        return shared

    def _write_view(self, shared: SharedImage, image_id: str, copy: sitk.Image) -> None:
        try:
            shared.write_view(image_id, copy)
        except BaseException as exc:  # reported to whoever asks for the view
            shared.view_error = exc
        finally:
            shared.view_ready.set()

    def in_memory(self) -> list[str]:
        with self._lock:
            return list(self._live.keys())

    def remove_unused(self, used: set[str]) -> int:
        """Delete viewer copies whose key no session uses (and no live image holds); bytes freed."""
        if not self.root.is_dir():
            return 0
        with self._lock:
            live = set(self._live.keys())
        freed = 0
        for d in self.root.iterdir():
            if d.is_dir() and d.name not in used and d.name not in live:
                freed += dir_bytes(d)
                shutil.rmtree(d, ignore_errors=True)
        return freed


def dir_bytes(path: Path) -> int:
    """Bytes of the files under ``path`` (0 when it is gone)."""
    total = 0
    try:
        for entry in os.scandir(path):
            if entry.is_dir(follow_symlinks=False):
                total += dir_bytes(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                total += entry.stat(follow_symlinks=False).st_size
    except FileNotFoundError:
        return 0
    return total
