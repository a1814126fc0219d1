"""Assemble the FastAPI application: state, security middleware, routes, static page."""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware

from .._version import __version__
from ..errors import ClickError, CtSam3dError
from .config import ServerConfig
from .datastore import Datastore
from .engine import ModelHolder
from .security import (
    BodyLimitMiddleware,
    CrossSiteMiddleware,
    HideKeyedSessions,
    LoginCodes,
    NotFound,
    PathScrubber,
    TokenMiddleware,
    cookie_name,
    install_log_redaction,
    page_cookie_value,
    token_matches,
)
from .store import StorageFull, WorkspaceStore

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).resolve().parent / "static"
LOOPBACK_HOSTS = ["127.0.0.1", "localhost", "::1", "[::1]"]
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


@dataclass
class ServerContext:
    """What every route needs; kept on ``app.state.ctx``."""

    config: ServerConfig
    datastore: Datastore
    models: ModelHolder
    store: WorkspaceStore
    session_key: bytes = b""  # keys MONAI Label's per-(image, client) workspaces (HMAC); never leaves the server
    logins: LoginCodes = field(default_factory=LoginCodes)  # one-time sign-in codes for the page
    scrub: PathScrubber = field(default_factory=PathScrubber)  # server paths -> client names in replies


def niivue_module_path() -> Path | None:
    """Where NiiVue's ES module is: a copy in ``static/vendor/`` or the repository's ``node_modules``.

    ``CTSAM3D_NIIVUE_JS`` overrides both. None when NiiVue is not installed (run ``npm ci``).
    """
    candidates = []
    if os.environ.get("CTSAM3D_NIIVUE_JS"):
        candidates.append(Path(os.environ["CTSAM3D_NIIVUE_JS"]))
    candidates.append(STATIC_DIR / "vendor" / "niivue" / "index.js")
    for base in (Path(__file__).resolve().parents[3], Path.cwd()):
        candidates.append(base / "node_modules" / "@niivue" / "niivue" / "dist" / "index.js")
    return next((p for p in candidates if p.is_file()), None)


def create_app(config: ServerConfig, *, model=None, loopback_only: bool | None = None) -> FastAPI:
    """Build the server.

    Args:
        config: settings (see :class:`ServerConfig`).
        model: an already loaded model to use instead of loading ``config.model``.
        loopback_only: accept only ``Host: 127.0.0.1/localhost/[::1]`` (blocks DNS rebinding
            against a token-less local server). Default: on when ``config.token`` is None.

    Returns:
        the FastAPI app; the model loads on the first click (``app.state.ctx.models.get()``
        loads it now).
    """
    from . import routes_monailabel, routes_view, routes_web

    config.state_dir.mkdir(parents=True, exist_ok=True)
    datastore = Datastore(config.data_dir, config.state_dir / "datastore")
    models = ModelHolder(model if model is not None else config.model, config.device, config.expansion,
                         config.max_concurrent_inference, config.max_patches, untrained=config.allow_untrained,
                         refine=config.refine, mirror=config.mirror)
    store = WorkspaceStore(config.state_dir / "sessions", datastore, models, max_open=config.max_open_sessions,
                           upload_limit=config.max_upload_bytes, max_objects=config.max_objects,
                           ttl=config.session_ttl_s, quota_bytes=int(config.session_quota_mb * 2**20))

    app = FastAPI(title="ctsam3d", version=__version__, docs_url=None, redoc_url=None)
    app.state.ctx = ServerContext(config, datastore, models, store, _session_key(config.state_dir),
                                  scrub=_path_scrubber(config, datastore, store))
    install_log_redaction()

    _add_error_handlers(app)
    app.include_router(routes_web.router)
    app.include_router(routes_view.router)  # the page's display volume
    app.include_router(routes_monailabel.router)

    @app.get("/", include_in_schema=False)
    def index(request: Request):
        if "token" in request.query_params:  # old-style ?token= link: exchange for the cookie, clean the address
            given = request.query_params["token"]
            ok = config.token is not None and token_matches(given, config.token)
            return _signed_in(request, config.token if ok else None)
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})

    @app.get("/login", include_in_schema=False)
    def login(request: Request, code: str = ""):
        """The one-time sign-in link printed at start: sets the page's cookie, redirects to ``/``."""
        if config.token is None:
            return _signed_in(request, None)
        if not app.state.ctx.logins.redeem(code):
            return JSONResponse({"detail": "this sign-in link was used already or has expired: open the page "
                                           "and enter the server's token"}, 403)
        return _signed_in(request, config.token)

    @app.get("/static/vendor/niivue.js", include_in_schema=False)
    def niivue_js():
        path = niivue_module_path()
        if path is None:
            return JSONResponse({"detail": "NiiVue is not installed: run 'npm ci' in the ctsam3d checkout"}, 404)
        return FileResponse(path, media_type="text/javascript")

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        return response

    # Middleware added last runs first: cross-site refusal, size limit, token, then (optionally)
    # host and CORS.
    if config.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=config.cors_origins, allow_methods=["*"],
                           allow_headers=["Authorization", "Content-Type"])
    if loopback_only if loopback_only is not None else config.token is None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=LOOPBACK_HOSTS)
    app.add_middleware(HideKeyedSessions)
    app.add_middleware(TokenMiddleware, token=config.token)
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_upload_bytes)
    app.add_middleware(CrossSiteMiddleware, allowed_origins=config.cors_origins)
    return app


def _signed_in(request: Request, token: str | None) -> RedirectResponse:
    """Redirect to the clean page address; with ``token``, set the page's HttpOnly sign-in cookie."""
    response = RedirectResponse("/", status_code=303, headers={"Cache-Control": "no-store"})
    if token is not None:
        response.set_cookie(cookie_name(request.scope), page_cookie_value(token), httponly=True, samesite="strict",
                            path="/", secure=request.url.scheme == "https")
    return response


def _session_key(state_dir: Path) -> bytes:
    """The server's secret for keyed workspace ids: ``<state>/session-key`` (mode 0600), created once."""
    path = state_dir / "session-key"
    try:
        key = bytes.fromhex(path.read_text(encoding="ascii").strip())
        if len(key) >= 32:
            return key
    except (FileNotFoundError, ValueError):
        pass
    key = secrets.token_bytes(32)
    tmp = path.with_name(f"session-key.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(key.hex())
    os.replace(tmp, path)
    return key


def _forms(path) -> list[str]:
    """A folder as given, absolute and resolved (messages may name it in any of these forms)."""
    if path is None:
        return []
    p = Path(path)
    return [str(p), os.path.abspath(p), str(p.resolve())]


def _path_scrubber(config: ServerConfig, datastore: Datastore, store: WorkspaceStore) -> PathScrubber:
    tmp = tempfile.gettempdir()
    model = [config.model] if isinstance(config.model, str) and ("/" in config.model or os.sep in config.model) else []
    others = [config.state_dir, tmp, Path.home(), Path.cwd(), Path(__file__).resolve().parents[2], sys.prefix,
              sys.base_prefix]
    return PathScrubber(
        data_dirs=_forms(config.data_dir),
        upload_dirs=[f for d in (store.root, datastore.images_dir) for f in _forms(d)]
        + [os.path.join(f, "ctsam3d-*") for f in _forms(tmp)],
        other_dirs=[f for d in others for f in _forms(d)],
        model_paths=[f for d in model for f in _forms(d)],
    )


def _add_error_handlers(app: FastAPI) -> None:
    """Errors become ``{"detail": one line}``; server paths in the message are replaced by the
    names the client knows (datastore id, its upload's file name; see :class:`PathScrubber`)."""

    def detail(request: Request, status: int, exc) -> JSONResponse:
        text = " ".join(str(exc).split()).strip("'\"")
        text = app.state.ctx.scrub(text, getattr(request.state, "upload_label", None))
        return JSONResponse({"detail": text}, status_code=status)

    @app.exception_handler(ClickError)
    async def _click(request: Request, exc: ClickError):
        return detail(request, 422, exc)

    @app.exception_handler(CtSam3dError)
    async def _user(request: Request, exc: CtSam3dError):
        return detail(request, 507 if isinstance(exc, StorageFull) else 400, exc)

    @app.exception_handler(NotFound)
    async def _missing(request: Request, exc: NotFound):
        return detail(request, 404, exc)

    @app.exception_handler(json.JSONDecodeError)
    async def _json(request: Request, exc: json.JSONDecodeError):
        return detail(request, 400, f"not valid JSON: {exc}")

