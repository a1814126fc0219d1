"""A local stand-in for ModelScope's HTTP file interface (http.server in a thread).

Serves the two endpoints ctsam3d uses (see ``ctsam3d.hub.modelscope``): the file listing
``/api/v1/models/{owner}/{name}/repo/files`` and one file ``/api/v1/models/{owner}/{name}/repo?FilePath=``,
with ``Range: bytes=N-`` answered by 206. Faults on demand: a transfer cut after N bytes (the
connection closes mid-body), a fixed HTTP status, a file served with other bytes than listed.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

MODEL_ID = "xiuan123/CT-SAM3D"


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


@dataclass
class Served:
    """One repository file: what is listed (size, sha256) and what is actually sent (``body``)."""

    body: Path
    size: int | None = None  # listed size (default: the body's)
    sha256: str | None = None  # listed sha256 (default: the body's; "" = not listed)


@dataclass
class Hub:
    files: dict[str, Served] = field(default_factory=dict)
    model_id: str = MODEL_ID
    status: int | None = None  # answer every request with this status
    cut: dict[str, int] = field(default_factory=dict)  # path -> close after this many body bytes (once)
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path or "listing", Range)

    def listing(self) -> dict:
        out = []
        for path, f in self.files.items():
            sha = sha256_of(f.body) if f.sha256 is None else f.sha256
            entry = {"Name": path.rsplit("/", 1)[-1], "Path": path, "Type": "blob", "Revision": "abc",
                     "Size": f.body.stat().st_size if f.size is None else f.size}
            if sha:
                entry["Sha256"] = sha
            out.append(entry)
        out.append({"Name": "docs", "Path": "docs", "Type": "tree", "Size": 0})
        return {"Code": 200, "Success": True, "Message": "success", "RequestId": "x", "Data": {"Files": out}}


def _handler(hub: Hub):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        def _send(self, status: int, body: bytes, ctype="application/json", extra=None):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            parts = urlsplit(self.path)
            query = parse_qs(parts.query)
            base = f"/api/v1/models/{hub.model_id}/repo"
            if hub.status is not None:
                hub.requests.append((parts.path, self.headers.get("Range")))
                return self._send(hub.status, b'{"Code": 10010, "Message": "no"}')
            if parts.path == base + "/files":
                hub.requests.append(("listing", None))
                return self._send(200, json.dumps(hub.listing()).encode())
            if parts.path != base or "FilePath" not in query:
                return self._send(404, b'{"Code": 404, "Message": "not found"}')
            path = query["FilePath"][0]
            hub.requests.append((path, self.headers.get("Range")))
            f = hub.files.get(path)
            if f is None:
                return self._send(404, b'{"Code": 404, "Message": "no such file"}')
            total = f.body.stat().st_size
            start = 0
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes=") and rng.endswith("-"):
                start = int(rng[6:-1])
                if start >= total:
                    return self._send(416, b"", extra={"Content-Range": f"bytes */{total}"})
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{total - 1}/{total}")
            else:
                self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(total - start))
            self.end_headers()
            limit = hub.cut.pop(path, None)
            with open(f.body, "rb") as fh:
                fh.seek(start)
                sent = 0
                while block := fh.read(1 << 20):
                    if limit is not None and sent + len(block) > limit:
                        self.wfile.write(block[: limit - sent])
                        self.wfile.flush()
                        self.close_connection = True
                        return  # connection closes mid-body
                    self.wfile.write(block)
                    sent += len(block)

    return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # a client that hangs up is expected here
        pass


class FakeModelScope:
    """``with FakeModelScope(hub) as url:`` serves ``hub`` on 127.0.0.1 (a free port)."""

    def __init__(self, hub: Hub):
        self.hub = hub
        self.server = _QuietServer(("127.0.0.1", 0), _handler(hub))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
