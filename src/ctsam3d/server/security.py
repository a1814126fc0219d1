"""Security pieces of the server: cross-site refusal, API token, request-size limit, safe
names and paths, and keeping secrets and server paths out of logs and replies.

* Cross-site requests: a page on another origin (any website the user visits) can make a
  browser send simple requests (form posts, ``no-cors`` fetches) to a local server. Browsers
  mark every request with ``Sec-Fetch-Site`` (to loopback and HTTPS) and state-changing ones
  with ``Origin``; :class:`CrossSiteMiddleware` refuses a request a browser marks as coming
  from another site or origin (403) unless that origin was allowed with ``--cors-origin``.
  Top-level navigations (a link to the page) stay allowed for GET. Clients that are not
  browsers (3D Slicer's MONAI Label client, curl, scripts) send neither header and pass.
* Token: when the server has one, every API call must carry it: ``Authorization: Bearer
  <token>``, ``?token=<token>``, or the page's HttpOnly cookie (set by ``/login?code=``, a
  one-time sign-in link printed at start, or by ``/?token=``, both redirecting to a clean
  ``/``). The page itself and its static files (no data in them) and MONAI Label's ``/auth/``
  discovery routes are open; everything else answers 401 (missing) or 403 (wrong).
* Size limit: a request body larger than ``max_bytes`` is refused with 413 before it is
  read (by ``Content-Length``; chunked bodies without it get 411).
* Names: ids that reach the filesystem are checked against a strict pattern; paths under
  ``--data`` are resolved (symlinks followed) and must stay inside it.
* Logs and replies: :class:`RedactSecrets` masks ``token=`` / ``code=`` values and session ids
  in the access log; :class:`PathScrubber` turns server paths in error replies into the names
  the client knows (a datastore id, its upload's file name).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from ..errors import InputError

OPEN_PATHS = ("/", "/index.html", "/favicon.ico", "/login", "/auth/", "/auth/token")
OPEN_PREFIXES = ("/static/",)
COOKIE_PREFIX = "ctsam3d_auth"
SAFE_METHODS = ("GET", "HEAD")

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
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                        (b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                        (b"cache-control", b"no-store")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def request_token(scope) -> str | None:
    """The token a request carries (``Authorization: Bearer`` header first, then ``?token=``)."""
    value = _header(scope, b"authorization")
    if value is not None:
        scheme, _, cred = value.partition(" ")
        if scheme.lower() == "bearer" and cred.strip():
            return cred.strip()
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    values = query.get("token")
    return values[0] if values else None


def cookie_name(scope) -> str:
    """Name of the page's sign-in cookie: one per port (browsers share cookies across ports)."""
    host = _header(scope, b"host") or ""
    port = host.rsplit(":", 1)[1] if re.search(r":\d+$", host) else ""
    return f"{COOKIE_PREFIX}_{port or 'default'}"


def page_cookie_value(token: str) -> str:
    """What the sign-in cookie holds: derived from the token (not the token itself)."""
    return hmac.new(token.encode(), b"ctsam3d page cookie v1", hashlib.sha256).hexdigest()


def request_cookies(scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in scope.get("headers", []):
        if key == b"cookie":
            for part in value.decode("latin-1").split(";"):
                name, eq, val = part.strip().partition("=")
                if eq:
                    out.setdefault(name, val)
    return out


def token_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a presented token with the server's token."""
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


class TokenMiddleware:
    """ASGI middleware: refuse API calls without the right token (no-op when ``token`` is None).

    Accepted: ``Authorization: Bearer <token>``, ``?token=<token>``, or the page's sign-in
    cookie (:func:`page_cookie_value`, HttpOnly, set by ``/login`` or ``/?token=``).
    """

    def __init__(self, app, token: str | None) -> None:
        self.app = app
        self.token = token
        self.cookie = page_cookie_value(token) if token is not None else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self.token is None:
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES) or scope.get("method") == "OPTIONS":
            return await self.app(scope, receive, send)
        given = request_token(scope)
        if given is None:
            cookie = request_cookies(scope).get(cookie_name(scope))
            if cookie is not None and hmac.compare_digest(cookie.encode(), self.cookie.encode()):
                return await self.app(scope, receive, send)
            return await _send_json(send, 401, "this server needs a token: send 'Authorization: Bearer <token>' "
                                    "(or open the sign-in link printed at start)")
        if not token_matches(given, self.token):
            return await _send_json(send, 403, "wrong token")
        return await self.app(scope, receive, send)


def _origin_of_host(scope) -> tuple[str, int] | None:
    """(host, port) this request was sent to, from its ``Host`` header."""
    host = (_header(scope, b"host") or "").strip().lower()
    if not host:
        return None
    default = 443 if scope.get("scheme") in ("https", "wss") else 80
    m = re.fullmatch(r"(\[[^\]]*\]|[^:]*)(?::(\d+))?", host)
    if not m:
        return None
    return m.group(1), int(m.group(2)) if m.group(2) else default


def _parse_origin(origin: str) -> tuple[str, int] | None:
    try:
        parts = urlsplit(origin.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return host, port if port is not None else (443 if parts.scheme == "https" else 80)


def cross_site_refusal(scope, allowed_origins=()) -> str | None:
    """Why a request must be refused as cross-site, or None when it may proceed.

    * ``Origin`` in ``allowed_origins`` (``--cors-origin``): allowed.
    * ``Sec-Fetch-Site: same-origin`` or ``none`` (typed address, bookmark): allowed.
    * ``Sec-Fetch-Site: same-site`` / ``cross-site`` (another port of the same host is
      "same-site"): refused, except a top-level navigation with GET/HEAD (a link to the page).
    * No ``Sec-Fetch-Site`` (plain-HTTP non-loopback hosts, older browsers): an ``Origin``
      other than this server's own (``null`` included) is refused.
    * Neither header: not a browser (MONAI Label client, curl): allowed; the token, when the
      server has one, still applies.
    """
    origin = _header(scope, b"origin")
    if origin is not None and origin.strip() in allowed_origins:
        return None
    site = (_header(scope, b"sec-fetch-site") or "").strip().lower()
    method = scope.get("method", "GET")
    if site in ("same-origin", "none"):
        return None
    if site:
        mode = (_header(scope, b"sec-fetch-mode") or "").strip().lower()
        if method in SAFE_METHODS and mode == "navigate":
            return None
        return (f"cross-site request refused ({site}): a page on another origin cannot use this server "
                "(start it with --cors-origin to allow one)")
    if origin is None:
        return None
    mine = _origin_of_host(scope)
    if mine is not None and _parse_origin(origin) == mine:
        return None
    return (f"cross-origin request refused (Origin {origin.strip()[:80]!r}): a page on another origin cannot "
            "use this server (start it with --cors-origin to allow one)")


class CrossSiteMiddleware:
    """ASGI middleware: answer 403 to requests a browser marks as cross-site (see
    :func:`cross_site_refusal`), before any body is read. CORS preflights (OPTIONS) pass to
    the CORS layer, which grants nothing unless ``--cors-origin`` names the origin."""

    def __init__(self, app, allowed_origins=()) -> None:
        self.app = app
        self.allowed = tuple(o.strip() for o in allowed_origins)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") == "OPTIONS":
            return await self.app(scope, receive, send)
        reason = cross_site_refusal(scope, self.allowed)
        if reason is not None:
            return await _send_json(send, 403, reason)
        return await self.app(scope, receive, send)


class LoginCodes:
    """One-time sign-in codes for the page (``/login?code=``): the URL printed at start holds
    a code, not the token; a code works once and for ``ttl`` seconds. At most ``limit`` codes
    are outstanding (the oldest is dropped)."""

    def __init__(self, ttl: float = 900.0, limit: int = 16) -> None:
        self.ttl = ttl
        self.limit = limit
        self._codes: dict[str, float] = {}
        self._lock = threading.Lock()

    def issue(self) -> str:
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._purge()
            while len(self._codes) >= self.limit:
                self._codes.pop(next(iter(self._codes)))
            self._codes[code] = time.monotonic() + self.ttl
        return code

    def redeem(self, code: str | None) -> bool:
        """True once for a code issued less than ``ttl`` seconds ago."""
        if not code:
            return False
        with self._lock:
            self._purge()
            for known in list(self._codes):
                if hmac.compare_digest(known.encode(), code.encode()):
                    del self._codes[known]
                    return True
        return False

    def _purge(self) -> None:
        now = time.monotonic()
        for code in [c for c, t in self._codes.items() if t < now]:
            del self._codes[code]


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


KEYED_PREFIX = "ds-"
_KEYED_LEN = len(KEYED_PREFIX) + 48


def keyed_session_id(key: bytes, image_id: str, client_id: str) -> str:
    """Id of the workspace MONAI Label's session-less infer calls use for (image, client):
    ``ds-`` + 192 bits of HMAC-SHA256 under the server's secret (``<state>/session-key``), so
    no client can compute another's id."""
    mac = hmac.new(key, f"{image_id}\x00{client_id}".encode(), hashlib.sha256).hexdigest()
    return KEYED_PREFIX + mac[:48]


def is_keyed_session(session_id: str) -> bool:
    """True for those internal workspaces (the random session ids clients get are 24 characters)."""
    return isinstance(session_id, str) and len(session_id) == _KEYED_LEN and session_id.startswith(KEYED_PREFIX)


_SESSION_IN_PATH_SEGMENT = re.compile(r"/sessions?/([^/]+)")


class HideKeyedSessions:
    """ASGI middleware: a request naming an internal keyed workspace (in a ``/session(s)/<id>``
    path or a ``session_id`` parameter) gets the same 404 as an unknown session, on every route."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            ids = _SESSION_IN_PATH_SEGMENT.findall(scope.get("path", ""))
            ids += parse_qs(scope.get("query_string", b"").decode("latin-1")).get("session_id", [])
            for sid in ids:
                if is_keyed_session(sid):
                    return await _send_json(send, 404, f"session {sid} not found")
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


# --- keeping secrets out of logs ------------------------------------------------------------------
_SECRET_QUERY = re.compile(r"([?&](?:token|code)=)[^&\s\"]*", re.IGNORECASE)
_SESSION_IN_PATH = re.compile(r"(/sessions?/|[?&]session_id=)([A-Za-z0-9_-]{8,64})")


def log_tag(session_id: str) -> str:
    """A short, non-reversible tag of a session id for logs (the id itself grants access)."""
    return "sid:" + hashlib.sha256(str(session_id).encode()).hexdigest()[:8]


def redact(text: str) -> str:
    """``text`` with ``token=`` / ``code=`` query values masked and session ids replaced by tags."""
    text = _SECRET_QUERY.sub(r"\1[redacted]", text)
    return _SESSION_IN_PATH.sub(lambda m: m.group(1) + log_tag(m.group(2)), text)


class RedactSecrets(logging.Filter):
    """Logging filter for uvicorn's access log: masks secrets in the request line's arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.msg, str) and not record.args:
            record.msg = redact(record.msg)
        return True


def install_log_redaction(logger_name: str = "uvicorn.access") -> None:
    """Add :class:`RedactSecrets` to ``logger_name`` once (survives uvicorn's logging setup,
    which replaces handlers but keeps logger filters)."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(f, RedactSecrets) for f in logger.filters):
        logger.addFilter(RedactSecrets())


# --- no server paths in replies -------------------------------------------------------------------
_PATH_TAIL = r"(?P<tail>/[^\s\"'(),;:]*)?"


class PathScrubber:
    """Rewrites server paths in a message into names the client knows.

    Args:
        data_dirs: the data folder (as given and resolved): ``<data>/sub/ct.nii.gz`` becomes
            ``sub/ct.nii.gz`` (the datastore id).
        upload_dirs: folders holding uploads (session uploads, datastore uploads, temporary
            folders): any path under them becomes the upload's label (``upload 'ct.nii.gz'``
            when the route named it, else ``the uploaded file``).
        other_dirs: any other server folder (state folder, temporary folder, home, the
            installation): a path under it becomes ``a server file``.
        model_paths: the model's checkpoint: ``the server's model``.
    """

    def __init__(self, data_dirs=(), upload_dirs=(), other_dirs=(), model_paths=()) -> None:
        rules: dict[str, tuple[re.Pattern, str]] = {}
        for kind, dirs in (("data", data_dirs), ("upload", upload_dirs), ("model", model_paths), ("other", other_dirs)):
            for d in dirs:
                root = str(d).rstrip("/") if d else ""
                if root in ("", ".", "/") or root in rules:
                    continue
                # a root ending in '*' matches names starting with it (tempfile's "ctsam3d-xyz" folders)
                head = re.escape(root[:-1]) + r"[^\s\"'(),;:/]*" if root.endswith("*") else re.escape(root)
                rules[root] = (re.compile(r"(?<![\w./-])" + head + _PATH_TAIL + r"(?![\w-])"), kind)
        # the most specific (longest) root first: <state>/sessions before <state> before /tmp
        self.rules = [rules[r] for r in sorted(rules, key=len, reverse=True)]

    def __call__(self, text: str, upload_label: str | None = None) -> str:
        for pattern, kind in self.rules:
            text = pattern.sub(lambda m, k=kind: self._name(k, m.group("tail"), upload_label), text)
        return text

    @staticmethod
    def _name(kind: str, tail: str | None, upload_label: str | None) -> str:
        if kind == "data":
            rel = (tail or "").strip("/")
            return rel if rel else "the data folder"
        if kind == "upload":
            return upload_label or "the uploaded file"
        if kind == "model":
            return "the server's model"
        return "a server file"
