"""Assemble the FastAPI application: state, security middleware, routes, static page."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware

from .._version import __version__
from ..errors import ClickError, CtSam3dError
from .config import ServerConfig
from .datastore import Datastore
from .engine import ModelHolder
from .security import BodyLimitMiddleware, NotFound, TokenMiddleware
from .store import WorkspaceStore

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
    from . import routes_monailabel, routes_web

    config.state_dir.mkdir(parents=True, exist_ok=True)
    datastore = Datastore(config.data_dir, config.state_dir / "datastore")
    models = ModelHolder(model if model is not None else config.model, config.device, config.expansion, config.max_concurrent_inference)
    store = WorkspaceStore(config.state_dir / "sessions", datastore, models, max_open=config.max_open_sessions,
                           upload_limit=config.max_upload_bytes, max_objects=config.max_objects)

    app = FastAPI(title="ctsam3d", version=__version__, docs_url=None, redoc_url=None)
    app.state.ctx = ServerContext(config, datastore, models, store)

    _add_error_handlers(app)
    app.include_router(routes_web.router)
    app.include_router(routes_monailabel.router)

    @app.get("/", include_in_schema=False)
    def index():
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})

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

    # Middleware added last runs first: size limit, then token, then (optionally) host and CORS.
    if config.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=config.cors_origins, allow_methods=["*"],
                           allow_headers=["Authorization", "Content-Type"])
    if loopback_only if loopback_only is not None else config.token is None:
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=LOOPBACK_HOSTS)
    app.add_middleware(TokenMiddleware, token=config.token)
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_upload_bytes)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    def detail(status: int, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc).strip("'\"")}, status_code=status)

    @app.exception_handler(ClickError)
    async def _click(_: Request, exc: ClickError):
        return detail(422, exc)

    @app.exception_handler(CtSam3dError)
    async def _user(_: Request, exc: CtSam3dError):
        return detail(400, exc)

    @app.exception_handler(NotFound)
    async def _missing(_: Request, exc: NotFound):
        return detail(404, exc)

    @app.exception_handler(json.JSONDecodeError)
    async def _json(_: Request, exc: json.JSONDecodeError):
        return detail(400, f"not valid JSON: {exc}")

