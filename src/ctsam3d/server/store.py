"""All workspaces of the server: create, find (reloading from disk), forget, delete, expire.

Session ids are random and unguessable (``secrets.token_urlsafe``); knowing one is what gives
access to a session, so users never see each other's images. At most ``max_open`` workspaces
stay in memory; the least recently used are released (their state is on disk).

Nothing grows without bound:

* **Idle expiry.** A session not used for its expiry is removed (folder and memory). The
  expiry is the one MONAI Label's ``PUT /session/?expiry=<s>`` asked for (capped at the
  server's ``ttl``, as MONAI Label's own server does), else ``ttl`` (default 24 h). Last access
  = the last request on the session (``meta.json``'s mtime on disk).
* **Disk quota.** When the session folders and shared viewer copies exceed ``quota_bytes``, the
  sessions idle the longest are removed first, until the total fits. A session is never removed
  while a request is working on it or within :data:`IN_USE_SECONDS` of its last access; when
  only such sessions are left, new sessions are refused (:class:`StorageFull`, HTTP 507).
* Sweeps run when a session is created, and at most every :data:`SWEEP_SECONDS` on any access
  (in a background thread); ``ctsam3d sessions list|clear`` does the same offline.
* In memory: ``max_open`` workspaces (each with one model session), the prepared images they
  hold plus a few recent ones (:mod:`.images`), a fixed set of loading locks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import shutil
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..errors import CtSam3dError, InputError
from .datastore import Datastore
from .engine import ModelHolder, read_image
from .images import SharedImages, dir_bytes
from .security import NotFound, check_session_id
from .uploads import store_upload
from .workspace import Workspace

log = logging.getLogger(__name__)

DEFAULT_TTL_SECONDS = 24 * 3600.0
DEFAULT_QUOTA_BYTES = 20 * 2**30
IN_USE_SECONDS = 600.0  # the quota never removes a session accessed this recently
MIN_EXPIRY_SECONDS = 60.0  # nor does expiry, whatever a client asked for
SWEEP_SECONDS = 60.0
CHECK_SECONDS = 5.0  # a new session re-checks the disk use when the last check is older
GATES = 64


class StorageFull(CtSam3dError):
    """The session store is at its disk quota and every session in it is in use."""


@dataclass
class SessionEntry:
    """One session folder as the sweeper and ``ctsam3d sessions list`` see it."""

    session_id: str
    created: float
    last_access: float
    expiry: float  # effective idle seconds before removal
    bytes: int
    source: str  # image name as the user knows it
    kind: str  # "datastore" or "upload"
    objects: int
    image_key: str | None

    @property
    def expires_at(self) -> float:
        return self.last_access + self.expiry

    def to_json(self) -> dict:
        return {"session_id": self.session_id, "created": round(self.created, 1),
                "last_access": round(self.last_access, 1), "expiry_s": int(self.expiry),
                "expires_at": round(self.expires_at, 1), "bytes": self.bytes, "source": self.source,
                "kind": self.kind, "objects": self.objects}


def effective_expiry(requested: float, ttl: float) -> float:
    """MONAI Label's rule: a positive request capped at the server's ttl, else the ttl."""
    requested = float(requested or 0)
    return max(MIN_EXPIRY_SECONDS, min(requested, ttl) if requested > 0 else ttl)


def scan_sessions(root: Path, ttl: float = DEFAULT_TTL_SECONDS, last_access: dict[str, float] | None = None
                  ) -> list[SessionEntry]:
    """Every session folder under ``root`` (``<state>/sessions``), oldest access first.

    ``last_access``: newer access times known in memory (a running server's open sessions).
    Folders without a readable ``meta.json`` are listed as ``kind="broken"`` (removable).
    """
    out = []
    if not root.is_dir():
        return out
    for d in root.iterdir():
        if not d.is_dir():
            continue
        meta_path = d / "meta.json"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            mtime = meta_path.stat().st_mtime
            source = meta.get("source", {})
            entry = SessionEntry(
                d.name, float(meta.get("created", mtime)), mtime, effective_expiry(meta.get("expiry", 0), ttl),
                dir_bytes(d), str(source.get("name", "")), str(source.get("kind", "")),
                len(meta.get("objects", [])), meta.get("image_key"))
        except (OSError, ValueError, TypeError, AttributeError):
            try:
                mtime = d.stat().st_mtime
            except FileNotFoundError:
                continue
            entry = SessionEntry(d.name, mtime, mtime, MIN_EXPIRY_SECONDS, dir_bytes(d), "", "broken", 0, None)
        if last_access and d.name in last_access:
            entry.last_access = max(entry.last_access, last_access[d.name])
        out.append(entry)
    out.sort(key=lambda e: e.last_access)
    return out


def remove_session_dir(root: Path, session_id: str) -> None:
    """Remove one session folder (renamed first, so a half-removed folder is never read)."""
    d = root / session_id
    trash = root / f".removing-{session_id}-{secrets.token_hex(4)}"
    try:
        d.rename(trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


class WorkspaceStore:
    """Sessions under ``root`` (``<state>/sessions``); shared viewer copies in ``<state>/views``.

    Args:
        ttl: default idle expiry in seconds (and the cap on what clients ask for).
        quota_bytes: disk the sessions and viewer copies may use together.
    """

    def __init__(self, root: Path, datastore: Datastore, models: ModelHolder, *, max_open: int = 16,
                 upload_limit: int = 1 << 30, max_objects: int = 255, ttl: float = DEFAULT_TTL_SECONDS,
                 quota_bytes: int = DEFAULT_QUOTA_BYTES) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.datastore = datastore
        self.models = models
        self.max_open = max_open
        self.upload_limit = upload_limit
        self.max_objects = max_objects
        self.ttl = float(ttl)
        self.quota_bytes = int(quota_bytes)
        self.images = SharedImages(root.parent / "views", pixel_gate=models.gate)
        self._open: OrderedDict[str, Workspace] = OrderedDict()
        self._lock = threading.Lock()
        self._gates = [threading.RLock() for _ in range(GATES)]
        self._sweep_lock = threading.Lock()
        self._last_sweep = 0.0
        self._last_result: dict | None = None
        self.maybe_sweep()  # a restarted server removes what expired while it was down

    # --- create ---------------------------------------------------------------------------------
    def create_from_datastore(self, image_id: str, session_id: str | None = None, expiry: float = 0) -> Workspace:
        """New workspace on a listed image of ``--data`` (``session_id``: a derived, fixed id).

        The image is read once and shared by every session on it (:mod:`.images`)."""
        self._check_room()
        path = self.datastore.path_of(image_id)
        shared = self.images.get(image_id, path)
        source = {"kind": "datastore", "id": image_id, "name": image_id.rsplit("/", 1)[-1], "is_dicom": path.is_dir()}
        return self._create(shared.image, source, session_id, shared=shared, expiry=expiry)

    def create_from_upload(self, files: list[tuple[str, BinaryIO]], expiry: float = 0) -> Workspace:
        """New workspace on uploaded file(s): stored under server-owned names, validated by reading."""
        self._check_room()
        session_id = secrets.token_urlsafe(18)
        directory = self.root / session_id
        try:
            image_path = store_upload(files, directory / "upload", self.upload_limit)
            image = read_image(image_path)
            display = (files[0][0] or "upload").replace("\\", "/").rsplit("/", 1)[-1][:120]
            source = {"kind": "upload", "name": display, "path": image_path.relative_to(directory).as_posix(),
                      "is_dicom": image_path.is_dir()}
            return self._create(image, source, session_id, expiry=expiry)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise

    def _create(self, image, source: dict, session_id: str | None, *, shared=None, expiry: float = 0) -> Workspace:
        from ..io.hu_check import refuse_if_not_hu  # issue 19: masks on a CT not in HU mean nothing

        hint = "the model needs CT in Hounsfield units (apply the scanner's rescale to the image first)"
        if shared is None:
            refuse_if_not_hu(image, source.get("name") or "image", hint=hint)
        elif not shared.hu.plausible:  # checked once when the shared image was read
            raise InputError(shared.hu.message(source.get("name") or "image") + f"; {hint}")
        session_id = session_id or secrets.token_urlsafe(18)
        directory = self.root / session_id
        directory.mkdir(parents=True, exist_ok=True)
        try:
            ws = Workspace.create(directory, session_id, image, source, self.models, self.max_objects,
                                  shared=shared, expiry=expiry)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        self._remember(ws)
        return ws

    # --- find / forget ----------------------------------------------------------------------------
    def _gate(self, session_id: str) -> threading.RLock:
        """One of a fixed set of locks (by hash of the id): loads of one session are serialised."""
        digest = hashlib.blake2b(session_id.encode(), digest_size=4).digest()
        return self._gates[int.from_bytes(digest, "little") % GATES]

    def get(self, session_id: str) -> Workspace:
        check_session_id(session_id)
        self.maybe_sweep()
        with self._lock:
            ws = self._open.get(session_id)
            if ws is not None:
                self._open.move_to_end(session_id)
        if ws is not None:
            if not (ws.directory / "meta.json").is_file():  # removed behind our back (operator)
                self._forget(session_id)
                raise NotFound(f"session {session_id} not found")
            ws.touch()
            return ws
        with self._gate(session_id):  # one thread loads a given session from disk; others wait for it
            with self._lock:
                if session_id in self._open:
                    ws = self._open[session_id]
            if ws is None:
                ws = self._load(session_id)
                self._remember(ws)
            ws.touch()
            return ws

    def _load(self, session_id: str) -> Workspace:
        directory = self.root / session_id
        meta_path = directory / "meta.json"
        if not meta_path.is_file():
            raise NotFound(f"session {session_id} not found")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        source = meta["source"]
        shared = None
        if source["kind"] == "datastore":
            path = self.datastore.path_of(source["id"])
            shared = self.images.get(source["id"], path)
            image = shared.image
        else:
            path = (directory / source["path"]).resolve()
            if not path.is_relative_to(directory.resolve()):
                raise InputError(f"session {session_id}: corrupt state (image outside its folder)")
            image = read_image(path)
        if shared is not None and meta.get("image_key") not in (None, shared.key) and not (directory / "view.nii.gz").is_file():
            meta["image_key"] = shared.key  # the data file changed since: the view follows the image read now
        return Workspace(directory, image, meta, self.models, self.max_objects, shared)

    def _remember(self, ws: Workspace) -> None:
        with self._lock:
            self._open[ws.session_id] = ws
            self._open.move_to_end(ws.session_id)
            while len(self._open) > self.max_open:
                _, old = self._open.popitem(last=False)
                old.release()

    def _forget(self, session_id: str) -> Workspace | None:
        with self._lock:
            ws = self._open.pop(session_id, None)
        if ws is not None:
            with ws.lock:
                ws.release()
        return ws

    def delete(self, session_id: str) -> None:
        check_session_id(session_id)
        directory = self.root / session_id
        if not (directory / "meta.json").is_file():
            raise NotFound(f"session {session_id} not found")
        self._forget(session_id)
        remove_session_dir(self.root, session_id)

    def source_path(self, ws: Workspace) -> Path:
        """The file or DICOM folder the workspace's image was read from (for DICOM-SEG export)."""
        source = ws.meta["source"]
        if source["kind"] == "datastore":
            return self.datastore.path_of(source["id"])
        return ws.directory / source["path"]

    # --- expiry and quota -------------------------------------------------------------------------
    def expiry_of(self, ws: Workspace) -> float:
        return effective_expiry(ws.meta.get("expiry", 0), self.ttl)

    def sessions(self) -> list[SessionEntry]:
        """All sessions on disk, the longest idle first (in-memory access times included)."""
        with self._lock:
            known = {sid: ws.last_access for sid, ws in self._open.items()}
        return scan_sessions(self.root, self.ttl, known)

    def maybe_sweep(self) -> None:
        """Start a sweep in the background when the last one is older than SWEEP_SECONDS."""
        now = time.monotonic()
        if now - self._last_sweep < SWEEP_SECONDS:
            return
        self._last_sweep = now
        threading.Thread(target=self._sweep_quietly, daemon=True).start()

    def _sweep_quietly(self) -> None:
        try:
            self.sweep()
        except Exception:  # a sweep must never take a request down; the next one retries
            log.warning("session sweep failed", exc_info=True)

    def sweep(self, now: float | None = None) -> dict:
        """Remove expired sessions, then the longest idle ones while over the quota, then viewer
        copies no session uses. Returns what it did: ``{"expired", "evicted", "bytes", "in_use"}``."""
        with self._sweep_lock:
            self._last_sweep = time.monotonic()
            now = time.time() if now is None else now
            entries = self.sessions()
            expired, evicted, kept = [], [], []
            for e in entries:
                if e.expires_at < now and now - e.last_access >= MIN_EXPIRY_SECONDS and self._remove_if_idle(e.session_id):
                    expired.append(e)
                else:
                    kept.append(e)
            used = {e.image_key for e in kept if e.image_key}
            views = self.images.remove_unused(used)
            total = sum(e.bytes for e in kept) + dir_bytes(self.images.root)
            in_use = 0
            for e in list(kept):  # oldest access first
                if total <= self.quota_bytes:
                    break
                if now - e.last_access < IN_USE_SECONDS or not self._remove_if_idle(e.session_id):
                    in_use += 1
                    continue
                evicted.append(e)
                kept.remove(e)
                total -= e.bytes
            if evicted:
                used = {e.image_key for e in kept if e.image_key}
                views += self.images.remove_unused(used)
                total = sum(e.bytes for e in kept) + dir_bytes(self.images.root)
            if expired or evicted:
                log.info("sessions: %d expired, %d removed for the disk quota; %.0f MiB in use",
                         len(expired), len(evicted), total / 2**20)
            self._last_result = {"expired": len(expired), "evicted": len(evicted), "bytes": total,
                                 "in_use": in_use, "views_freed": views}
            return self._last_result

    def _remove_if_idle(self, session_id: str) -> bool:
        """Remove a session unless a request holds it right now; True when removed."""
        with self._lock:
            ws = self._open.get(session_id)
        if ws is not None:
            if not ws.lock.acquire(blocking=False):
                return False
            try:
                with self._lock:
                    self._open.pop(session_id, None)
                ws.release()
                remove_session_dir(self.root, session_id)
            finally:
                ws.lock.release()
            return True
        remove_session_dir(self.root, session_id)
        return True

    def _check_room(self) -> None:
        """Refuse a new session when the store is over its quota even after a sweep (a full
        sweep at most every few seconds: opens in a burst use the last one's total)."""
        result = self._last_result
        if result is None or time.monotonic() - self._last_sweep > CHECK_SECONDS or result["bytes"] > self.quota_bytes:
            result = self.sweep()
        if result["bytes"] > self.quota_bytes:
            raise StorageFull(
                f"the server's session storage is full ({result['bytes'] / 2**20:.0f} MiB of "
                f"{self.quota_bytes / 2**20:.0f} MiB, all sessions in use); try again later")
