"""The read-only image listing of ``--data`` and the labels clients save back.

Image ids are paths relative to the data folder in POSIX form (``openkbp/pt_201_ct.nii.gz``,
or a folder holding a DICOM series). An id is only honoured when it resolves inside the data
folder (symlinks followed) *and* appears in the listing, so no other file can be opened.
Saved labels go to the server's state folder under names derived from a hash of the id.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from .security import NotFound, check_tag, resolve_under
from .uploads import VOLUME_SUFFIXES

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


class Datastore:
    """Listing of ``data_dir`` (rescanned at most every few seconds) and saved labels in ``labels_dir``."""

    def __init__(self, data_dir: Path | None, labels_dir: Path) -> None:
        self.data_dir = data_dir.resolve() if data_dir is not None else None
        self.labels_dir = labels_dir
        self._items: dict[str, DataItem] = {}
        self._scanned = -1e9
        self._lock = threading.Lock()

    def items(self) -> list[DataItem]:
        with self._lock:
            if time.monotonic() - self._scanned > RESCAN_SECONDS:
                self._items = {it.id: it for it in self._scan()}
                self._scanned = time.monotonic()
            return list(self._items.values())

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
                size = sum((Path(root) / f).stat().st_size for f in files)
                out.append(DataItem(rel_root.as_posix(), "dicom", size))
        return out

    def get(self, image_id: str) -> DataItem:
        if self.data_dir is None:
            raise InputError("this server has no data folder (--data)")
        resolve_under(self.data_dir, image_id)  # refuses traversal / symlink escapes with a clear message
        item = {it.id: it for it in self.items()}.get(image_id)
        if item is None:
            raise NotFound(f"image {image_id!r} is not in the datastore")
        return item

    def path_of(self, image_id: str) -> Path:
        """Absolute path of a listed image (file or DICOM folder), checked to be inside ``data_dir``."""
        item = self.get(image_id)
        assert self.data_dir is not None
        return resolve_under(self.data_dir, item.id)

    # --- labels saved by clients (PUT /datastore/label) -------------------------------------
    def label_path(self, image_id: str, tag: str) -> Path:
        check_tag(tag)
        digest = hashlib.sha256(image_id.encode()).hexdigest()[:32]
        return self.labels_dir / f"{digest}_{tag}.nii.gz"

    def saved_tags(self, image_id: str) -> list[str]:
        digest = hashlib.sha256(image_id.encode()).hexdigest()[:32]
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
        return {"name": "ctsam3d", "description": "read-only data folder", "images_dir": "", "labels_dir": "labels", "objects": objects}
