"""Security pieces of the server: API token, request-size limit, safe names and paths.

* Token: when the server has one, every API call must carry it, either as
  ``Authorization: Bearer <token>`` or as the query parameter ``?token=<token>``. The page
  itself and its static files (no data in them) and MONAI Label's ``/auth/`` discovery
  routes are open; everything else answers 401 (missing) or 403 (wrong).
* Size limit: a request body larger than ``max_bytes`` is refused with 413 before it is
  read (by ``Content-Length``; chunked bodies without it get 411).
* Names: ids that reach the filesystem are checked against a strict pattern; paths under
  ``--data`` are resolved (symlinks followed) and must stay inside it.
"""

from __future__ import annotations

import hmac
import json
import re
from pathlib import Path
from urllib.parse import parse_qs

from ..errors import InputError

OPEN_PATHS = ("/", "/index.html", "/favicon.ico", "/auth/", "/auth/token")
OPEN_PREFIXES = ("/static/",)



class NotFound(LookupError):
    """A session, object, image or label named by the client does not exist (HTTP 404)."""


_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
_TAG = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


async def _send_json(send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def request_token(scope) -> str | None:
    """The token a request carries (``Authorization: Bearer`` header first, then ``?token=``)."""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, cred = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and cred.strip():
                return cred.strip()
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    values = query.get("token")
    return values[0] if values else None


def token_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a presented token with the server's token."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


class TokenMiddleware:
    """ASGI middleware: refuse API calls without the right token (no-op when ``token`` is None)."""

    def __init__(self, app, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self.token is None:
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES) or scope.get("method") == "OPTIONS":
            return await self.app(scope, receive, send)
        given = request_token(scope)
        if given is None:
            return await _send_json(send, 401, "this server needs a token: send 'Authorization: Bearer <token>' or ?token=<token>")
        if not token_matches(given, self.token):
            return await _send_json(send, 403, "wrong token")
        return await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """ASGI middleware: answer 413 to request bodies over ``max_bytes`` before they are read.

    The size is known from ``Content-Length`` (the ASGI server holds the client to it); a
    chunked body without ``Content-Length`` gets 411, since its size is unknown in advance
    (browsers, ``requests``, ``httpx`` and MONAI Label's client all send the length).
    """

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers", []))
        length = headers.get(b"content-length")
        if length is None:
            if b"transfer-encoding" in headers:
                return await _send_json(send, 411, "send the request with a Content-Length header (chunked bodies are not accepted)")
            return await self.app(scope, receive, send)
        try:
            too_big = int(length) > self.max_bytes
        except ValueError:
            return await _send_json(send, 400, "invalid Content-Length header")
        if too_big:
            return await _send_json(
                send, 413, f"request body over the server's upload limit of {self.max_bytes / 2**20:g} MiB (--max-upload-mb)"
            )
        return await self.app(scope, receive, send)


def check_session_id(value: str) -> str:
    """Return ``value`` if it looks like a session id we issue, else raise :class:`InputError`."""
    if not isinstance(value, str) or not _SESSION_ID.match(value):
        raise InputError(f"session id {value[:80]!r}: not a valid session id")
    return value


def check_tag(value: str, what: str = "tag") -> str:
    """A short name used inside server-owned file names (letters, digits, ``_.-``; not ``.``/``..``)."""
    if not isinstance(value, str) or not _TAG.match(value) or set(value) == {"."}:
        raise InputError(f"{what} {value[:80]!r}: use 1-64 letters, digits, '_', '.', '-'")
    return value


def resolve_under(root: Path, relative: str, *, what: str = "image") -> Path:
    """``root / relative`` resolved (symlinks followed); it must stay inside ``root``.

    Raises:
        InputError: ``relative`` is absolute, contains NUL, or resolves outside ``root``
            (``..`` components or a symlink pointing elsewhere).
    """
    if not isinstance(relative, str) or not relative or "\x00" in relative:
        raise InputError(f"{what} {relative!r}: empty or invalid name")
    rel = Path(relative)
    if rel.is_absolute() or relative.startswith(("/", "\\")):
        raise InputError(f"{what} {relative!r}: absolute paths are not accepted; use an id from the datastore listing")
    base = root.resolve()
    target = (base / rel).resolve()
    if not target.is_relative_to(base):
        raise InputError(f"{what} {relative!r}: outside the server's data folder")
    return target
