"""All workspaces of the server: create, find (reloading from disk), forget, delete.

Session ids are random and unguessable (``secrets.token_urlsafe``); knowing one is what gives
access to a session, so users never see each other's images. At most ``max_open`` workspaces
stay in memory; the least recently used are released (their state is on disk).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import threading
from collections import OrderedDict
from pathlib import Path
from typing import BinaryIO

from ..errors import InputError
from .datastore import Datastore
from .engine import ModelHolder, read_image
from .security import NotFound, check_session_id
from .uploads import store_upload
from .workspace import Workspace


class WorkspaceStore:
    def __init__(self, root: Path, datastore: Datastore, models: ModelHolder, *, max_open: int = 16,
                 upload_limit: int = 1 << 30, max_objects: int = 255) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.datastore = datastore
        self.models = models
        self.max_open = max_open
        self.upload_limit = upload_limit
        self.max_objects = max_objects
        self._open: OrderedDict[str, Workspace] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {}

    # --- create ---------------------------------------------------------------------------------
    def create_from_datastore(self, image_id: str, session_id: str | None = None) -> Workspace:
        """New workspace on a listed image of ``--data`` (``session_id``: a derived, fixed id)."""
        path = self.datastore.path_of(image_id)
        image = read_image(path)
        source = {"kind": "datastore", "id": image_id, "name": image_id.rsplit("/", 1)[-1], "is_dicom": path.is_dir()}
        return self._create(image, source, session_id)

    def create_from_upload(self, files: list[tuple[str, BinaryIO]]) -> Workspace:
        """New workspace on uploaded file(s): stored under server-owned names, validated by reading."""
        session_id = secrets.token_urlsafe(18)
        directory = self.root / session_id
        try:
            image_path = store_upload(files, directory / "upload", self.upload_limit)
            image = read_image(image_path)
            display = (files[0][0] or "upload").replace("\\", "/").rsplit("/", 1)[-1][:120]
            source = {"kind": "upload", "name": display, "path": image_path.relative_to(directory).as_posix(),
                      "is_dicom": image_path.is_dir()}
            return self._create(image, source, session_id)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise

    def _create(self, image, source: dict, session_id: str | None) -> Workspace:
        session_id = session_id or secrets.token_urlsafe(18)
        directory = self.root / session_id
        directory.mkdir(parents=True, exist_ok=True)
        try:
            ws = Workspace.create(directory, session_id, image, source, self.models, self.max_objects)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        self._remember(ws)
        return ws

    def keyed_datastore_session(self, image_id: str, client_id: str) -> Workspace:
        """The workspace MONAI Label calls without a session use: one per (image, client)."""
        key = "ds-" + hashlib.sha256(f"{image_id}\x00{client_id}".encode()).hexdigest()[:40]
        with self._gate(key):  # two first calls at once create it once
            try:
                return self.get(key)
            except NotFound:
                return self.create_from_datastore(image_id, session_id=key)

    # --- find / forget ----------------------------------------------------------------------------
    def _gate(self, session_id: str) -> threading.RLock:
        with self._lock:
            return self._loading.setdefault(session_id, threading.RLock())

    def get(self, session_id: str) -> Workspace:
        check_session_id(session_id)
        with self._lock:
            ws = self._open.get(session_id)
            if ws is not None:
                self._open.move_to_end(session_id)
                return ws
        with self._gate(session_id):  # one thread loads a given session from disk; others wait for it
            with self._lock:
                if session_id in self._open:
                    return self._open[session_id]
            ws = self._load(session_id)
            self._remember(ws)
            return ws

    def _load(self, session_id: str) -> Workspace:
        directory = self.root / session_id
        meta_path = directory / "meta.json"
        if not meta_path.is_file():
            raise NotFound(f"session {session_id} not found")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        source = meta["source"]
        if source["kind"] == "datastore":
            path = self.datastore.path_of(source["id"])
        else:
            path = (directory / source["path"]).resolve()
            if not path.is_relative_to(directory.resolve()):
                raise InputError(f"session {session_id}: corrupt state (image outside its folder)")
        return Workspace(directory, read_image(path), meta, self.models, self.max_objects)

    def _remember(self, ws: Workspace) -> None:
        with self._lock:
            self._open[ws.session_id] = ws
            self._open.move_to_end(ws.session_id)
            while len(self._open) > self.max_open:
                _, old = self._open.popitem(last=False)
                old.release()

    def delete(self, session_id: str) -> None:
        check_session_id(session_id)
        directory = self.root / session_id
        if not (directory / "meta.json").is_file():
            raise NotFound(f"session {session_id} not found")
        with self._lock:
            ws = self._open.pop(session_id, None)
        if ws is not None:
            with ws.lock:
                ws.release()
        shutil.rmtree(directory, ignore_errors=True)

    def source_path(self, ws: Workspace) -> Path:
        """The file or DICOM folder the workspace's image was read from (for DICOM-SEG export)."""
        source = ws.meta["source"]
        if source["kind"] == "datastore":
            return self.datastore.path_of(source["id"])
        return ws.directory / source["path"]
