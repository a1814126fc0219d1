"""MONAI Label's datastore: the read-only listing of ``--data``, images clients upload, and
the labels they save.

* Data-folder ids are paths relative to the data folder in POSIX form
  (``openkbp/pt_201_ct.nii.gz``, or a folder holding a DICOM series). Such an id is honoured
  only when it resolves inside the data folder (symlinks followed) *and* appears in the
  listing, so no other file can be opened. A DICOM folder holding a link to a file outside
  the data folder is refused when opened (the series reader would follow it). The data
  folder is never written.
* Uploaded images (``PUT /datastore/?image=<id>``, what 3D Slicer does before saving a label
  for a local volume) and saved labels live in the state folder under names derived from a
  hash of the id; the id itself never becomes a path.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from .engine import read_image
from .security import NotFound, check_tag, resolve_under
from .uploads import VOLUME_SUFFIXES, store_upload

LABEL_HINTS = ("label", "_seg", "seg_", "segmentation", "oars", "mask")
MAX_ENTRIES = 20000
MAX_DEPTH = 8
RESCAN_SECONDS = 10.0


@dataclass(frozen=True)
class DataItem:
    """One entry of the listing: ``kind`` is ``image``, ``dicom`` (a series folder) or ``label``."""

    id: str
    kind: str
    size_bytes: int

    def to_json(self) -> dict:
        return {"id": self.id, "name": self.id.rsplit("/", 1)[-1], "kind": self.kind, "size_bytes": self.size_bytes}


def _is_dicom_file(path: Path) -> bool:
    if path.suffix.lower() == ".dcm":
        return True
    if path.suffix:
        return False
    try:
        with open(path, "rb") as f:
            return f.read(132)[128:132] == b"DICM"
    except OSError:
        return False


def _digest(image_id: str) -> str:
    return hashlib.sha256(image_id.encode()).hexdigest()[:32]


def check_upload_id(image_id: str) -> str:
    """An id for an uploaded image: 1-200 printable characters, no slashes, not starting with '.'."""
    if (not isinstance(image_id, str) or not 0 < len(image_id) <= 200 or not image_id.isprintable()
            or "/" in image_id or "\\" in image_id or image_id.startswith(".")):
        raise InputError(f"image id {str(image_id)[:80]!r}: use 1-200 printable characters without '/' or a leading '.'")
    return image_id


class Datastore:
    """Listing of ``data_dir`` (rescanned at most every few seconds), plus uploaded images and
    saved labels kept in ``store_dir`` (``images/``, ``labels/``)."""

    def __init__(self, data_dir: Path | None, store_dir: Path) -> None:
        self.data_dir = data_dir.resolve() if data_dir is not None else None
        self.images_dir = store_dir / "images"
        self.labels_dir = store_dir / "labels"
        self._index_path = self.images_dir / "index.json"
        self._items: dict[str, DataItem] = {}
        self._scanned = -1e9
        self._lock = threading.Lock()

    def items(self, *, uploaded: bool = True) -> list[DataItem]:
        """Data-folder items, and (``uploaded``) images clients put into the datastore."""
        with self._lock:
            if time.monotonic() - self._scanned > RESCAN_SECONDS:
                self._items = {it.id: it for it in self._scan()}
                self._scanned = time.monotonic()
            out = list(self._items.values())
        if uploaded:
            taken = {it.id for it in out}
            out += [DataItem(i, e["kind"], e["size_bytes"]) for i, e in self._uploads().items() if i not in taken]
        return out

    def _scan(self) -> list[DataItem]:
        if self.data_dir is None or not self.data_dir.is_dir():
            return []
        out: list[DataItem] = []
        seen = 0
        for root, dirs, files in os.walk(self.data_dir, followlinks=False):
            rel_root = Path(root).relative_to(self.data_dir)
            dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if len(rel_root.parts) < MAX_DEPTH else []
            dicom_files = 0
            for name in sorted(files):
                seen += 1
                if seen > MAX_ENTRIES:
                    return out
                if name.startswith("."):
                    continue
                path = Path(root) / name
                if path.is_symlink() and not path.resolve().is_relative_to(self.data_dir):
                    continue  # never offer what points out of the data folder
                lower = name.lower()
                rel = (rel_root / name).as_posix()
                if lower.endswith(VOLUME_SUFFIXES):
                    kind = "label" if any(h in lower for h in LABEL_HINTS) else "image"
                    out.append(DataItem(rel, kind, path.stat().st_size))
                elif dicom_files < 1 and _is_dicom_file(path):
                    dicom_files += 1
            if dicom_files and rel_root.parts:
                size = sum((Path(root) / f).lstat().st_size for f in files)
                out.append(DataItem(rel_root.as_posix(), "dicom", size))
        return out

    def get(self, image_id: str) -> DataItem:
        uploads = self._uploads()
        if isinstance(image_id, str) and image_id in uploads and not self._in_data_listing(image_id):
            e = uploads[image_id]
            return DataItem(image_id, e["kind"], e["size_bytes"])
        if self.data_dir is None:
            raise NotFound(f"image {str(image_id)[:80]!r} is not in the datastore (no data folder)")
        resolve_under(self.data_dir, image_id)  # refuses traversal / symlink escapes with a clear message
        item = {it.id: it for it in self.items(uploaded=False)}.get(image_id)
        if item is None:
            raise NotFound(f"image {image_id!r} is not in the datastore")
        return item

    def path_of(self, image_id: str) -> Path:
        """Absolute path of a listed image (file or DICOM folder): inside ``data_dir``, or an upload."""
        item = self.get(image_id)
        uploads = self._uploads()
        if item.id in uploads and not self._in_data_listing(item.id):
            return self.images_dir / uploads[item.id]["path"]
        assert self.data_dir is not None
        path = resolve_under(self.data_dir, item.id)
        if path.is_dir():
            self._check_links_inside(path, item.id)
        return path

    def _check_links_inside(self, folder: Path, image_id: str) -> None:
        """Refuse a DICOM folder with an entry that is a link to outside the data folder."""
        assert self.data_dir is not None
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_symlink() and not Path(entry.path).resolve().is_relative_to(self.data_dir):
                    raise InputError(f"image {image_id!r}: the DICOM folder holds {entry.name!r}, a link to a file "
                                     "outside the data folder; refused (copy the file into the folder instead)")

    def _in_data_listing(self, image_id: str) -> bool:
        return any(it.id == image_id for it in self.items(uploaded=False))

    # --- images uploaded by clients (PUT /datastore/) ---------------------------------------
    def _uploads(self) -> dict[str, dict]:
        try:
            return json.loads(self._index_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}

    def add_image(self, image_id: str, files, limit: int) -> str:
        """Store an uploaded image under id ``image_id`` (validated by reading it); returns the id.

        Raises:
            InputError: bad id, an id of the read-only data folder, or a bad upload.
        """
        check_upload_id(image_id)
        if self._in_data_listing(image_id):
            raise InputError(f"image id {image_id!r} belongs to the read-only data folder; choose another id")
        folder = self.images_dir / _digest(image_id)
        staging = self.images_dir / f".{_digest(image_id)}.{os.getpid()}.{threading.get_ident()}"
        path = store_upload(files, staging, limit)
        try:
            read_image(path)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        with self._lock:
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(staging, folder)
            index = self._uploads()
            stored = folder / path.relative_to(staging)
            size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
            index[image_id] = {"path": stored.relative_to(self.images_dir).as_posix(),
                               "kind": "dicom" if stored.is_dir() else "image", "size_bytes": size}
            tmp = self._index_path.with_name("index.json.tmp")
            tmp.write_text(json.dumps(index), encoding="utf-8")
            os.replace(tmp, self._index_path)
        return image_id

    # --- labels saved by clients (PUT /datastore/label) -------------------------------------
    def label_path(self, image_id: str, tag: str) -> Path:
        check_tag(tag)
        return self.labels_dir / f"{_digest(image_id)}_{tag}.nii.gz"

    def saved_tags(self, image_id: str) -> list[str]:
        digest = _digest(image_id)
        if not self.labels_dir.is_dir():
            return []
        return sorted(p.name[len(digest) + 1 : -len(".nii.gz")] for p in self.labels_dir.glob(f"{digest}_*.nii.gz"))

    def status(self) -> dict:
        images = [it for it in self.items() if it.kind in ("image", "dicom")]
        tags: dict[str, int] = {}
        completed = 0
        for it in images:
            saved = self.saved_tags(it.id)
            completed += bool(saved)
            for t in saved:
                tags[t] = tags.get(t, 0) + 1
        return {"total": len(images), "completed": completed, "label_tags": tags}

    def to_json(self) -> dict:
        """MONAI Label's ``GET /datastore/?output=all`` shape (no server paths)."""
        objects = {}
        for it in self.items():
            if it.kind not in ("image", "dicom"):
                continue
            ext = next((s for s in VOLUME_SUFFIXES if it.id.lower().endswith(s)), "")
            objects[it.id] = {
                "image": {"ext": ext, "info": {"kind": it.kind, "size_bytes": it.size_bytes}},
                "labels": {t: {"ext": ".nii.gz", "info": {}} for t in self.saved_tags(it.id)},
            }
        return {"name": "ctsam3d", "description": "read-only data folder and uploaded images", "images_dir": "",
                "labels_dir": "labels", "objects": objects}
