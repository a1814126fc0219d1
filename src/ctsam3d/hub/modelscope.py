"""ModelScope's plain HTTP file interface, used with urllib (no hub SDK).

As ModelScope's own client (``modelscope/hub/api.py``, ``file_download.py``) uses it:

* file listing: ``GET {endpoint}/api/v1/models/{owner}/{name}/repo/files?Revision={rev}&Recursive=true``
  answers JSON ``{"Code": 200, "Success": true, "Message": ..., "Data": {"Files": [...]}}``; each
  file has ``Name``, ``Path`` (relative to the repository), ``Type`` (``"blob"`` for a file,
  ``"tree"`` for a folder), ``Size`` (bytes) and, for stored blobs, ``Sha256``. A ``Code`` other
  than 200 is an error described by ``Message``.
* one file: ``GET {endpoint}/api/v1/models/{owner}/{name}/repo?Revision={rev}&FilePath={path}``
  (both values URL-encoded); it honours ``Range: bytes=N-`` (the client resumes with it).

The endpoint is ``https://www.modelscope.cn`` unless ``$CTSAM3D_MODELSCOPE_ENDPOINT`` (or the
``--endpoint`` option) names another, e.g. a mirror or a local test server.
"""

from __future__ import annotations

import json
import os
import posixpath
from dataclasses import dataclass
from urllib.parse import quote, quote_plus, urlsplit

from .transfer import HubError, open_url

DEFAULT_ENDPOINT = "https://www.modelscope.cn"
ENDPOINT_ENV = "CTSAM3D_MODELSCOPE_ENDPOINT"
#: The authors' model page, linked from github.com/alibaba-damo-academy/ct-sam3d.
RELEASED_MODEL_ID = "xiuan123/CT-SAM3D"
DEFAULT_REVISION = "master"
MAX_LISTING_BYTES = 8 << 20


def endpoint(override: str | None = None) -> str:
    """The hub's base URL: ``override``, else ``$CTSAM3D_MODELSCOPE_ENDPOINT``, else ModelScope's."""
    url = (override or os.environ.get(ENDPOINT_ENV) or DEFAULT_ENDPOINT).rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise HubError(f"--endpoint {url!r}: expected an http(s) URL like {DEFAULT_ENDPOINT}")
    return url


def _model_path(model_id: str) -> str:
    owner, _, name = model_id.partition("/")
    if not owner or not name or "/" in name:
        raise HubError(f"model id {model_id!r}: expected owner/name")
    return f"{quote(owner, safe='')}/{quote(name, safe='')}"


def listing_url(base: str, model_id: str, revision: str = DEFAULT_REVISION) -> str:
    return f"{base}/api/v1/models/{_model_path(model_id)}/repo/files?Revision={quote_plus(revision)}&Recursive=true"


def file_url(base: str, model_id: str, path: str, revision: str = DEFAULT_REVISION) -> str:
    return (f"{base}/api/v1/models/{_model_path(model_id)}/repo?Revision={quote_plus(revision)}"
            f"&FilePath={quote_plus(path)}")


@dataclass(frozen=True)
class RepoFile:
    """One file of a model repository as the listing describes it."""

    path: str
    size: int | None
    sha256: str | None


def parse_listing(data: bytes, where: str) -> list[RepoFile]:
    """The files (not folders) of a listing response; HubError when it is not one."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise HubError(f"{where}: the answer is not JSON (not a ModelScope file listing)") from None
    if not isinstance(doc, dict):
        raise HubError(f"{where}: unexpected answer (not a ModelScope file listing)")
    if doc.get("Code") != 200:
        msg = str(doc.get("Message") or "no message")[:200]
        raise HubError(f"{where}: ModelScope refused the listing (code {doc.get('Code')}: {msg})")
    files = (doc.get("Data") or {}).get("Files") if isinstance(doc.get("Data"), dict) else None
    if not isinstance(files, list):
        raise HubError(f"{where}: the listing has no Data.Files")
    out = []
    for f in files:
        if not isinstance(f, dict) or f.get("Type", "blob") != "blob":
            continue
        path = f.get("Path") or f.get("Name")
        if not isinstance(path, str) or not path:
            continue
        size = f.get("Size")
        sha = f.get("Sha256")
        out.append(RepoFile(path, int(size) if isinstance(size, int) and size >= 0 else None,
                            sha.lower() if isinstance(sha, str) and len(sha) == 64 else None))
    return out


def list_files(base: str, model_id: str, revision: str = DEFAULT_REVISION, *, timeout: float = 60) -> list[RepoFile]:
    """The repository's files (one HTTP request). HubError on any failure, in one line."""
    url = listing_url(base, model_id, revision)
    where = f"ModelScope model {model_id}"
    with open_url(url, what=where, timeout=timeout) as resp:
        data = resp.read(MAX_LISTING_BYTES + 1)
    if len(data) > MAX_LISTING_BYTES:
        raise HubError(f"{where}: file listing larger than {MAX_LISTING_BYTES >> 20} MiB; refusing it")
    return parse_listing(data, where)


def pick_release_files(files: list[RepoFile], model_id: str = RELEASED_MODEL_ID) -> tuple[RepoFile, RepoFile | None]:
    """``params.pth`` (the one nearest the repository root; else the only ``.pth``/``.pt``) and the
    ``config.py`` beside it (None when the repository has none there)."""
    weights = sorted((f for f in files if posixpath.basename(f.path) == "params.pth"), key=lambda f: (f.path.count("/"), f.path))
    if not weights:
        weights = [f for f in files if f.path.endswith((".pth", ".pt"))]
        if len(weights) != 1:
            shown = ", ".join(f.path for f in files[:12]) or "no files"
            raise HubError(f"ModelScope model {model_id}: no params.pth in the repository (it has: {shown})")
    params = weights[0]
    folder = posixpath.dirname(params.path)
    want = posixpath.join(folder, "config.py") if folder else "config.py"
    return params, next((f for f in files if f.path == want), None)
