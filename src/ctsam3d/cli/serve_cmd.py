"""``ctsam3d serve``: the web tool and the MONAI Label-compatible server (see docs/server.md).

Binds 127.0.0.1 by default. Binding any other address needs a token: the one given with
``--token`` (or ``$CTSAM3D_TOKEN``) or a random one generated at start and written to
``<state-dir>/token`` (mode 0600); every API call must then carry it (``Authorization: Bearer
<token>``). The token itself is never printed or logged: the address printed at start holds a
one-time sign-in code that sets the page's HttpOnly cookie and redirects to a clean ``/``.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
from pathlib import Path

from ..errors import InputError

NAME = "serve"
HELP = "Web tool and MONAI Label-compatible server"
log = logging.getLogger(__name__)


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(base) / "ctsam3d" / "server"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--data", type=Path, default=None, metavar="DIR",
                        help="folder of CT volumes / DICOM series offered in the page and MONAI Label's datastore (read-only)")
    parser.add_argument("--model", default=None,
                        help="model name ('ctsam3d models'), model directory, .safetensors or released params.pth "
                             "(default: the released weights when installed, else the bundled default)")
    parser.add_argument("--untrained", action="store_true",
                        help="--model names a preset's freshly initialised weights (meaningless masks, for testing): a preset name is "
                             "refused without it, and ctsam3d-lite-wb means the bundled trained model unless it is given")
    parser.add_argument("-d", "--device", default="cpu", help="cpu, cuda, cuda:N, mps (gpu, gpu:N accepted)")
    parser.add_argument("--token", default=os.environ.get("CTSAM3D_TOKEN") or None,
                        help="API token (default $CTSAM3D_TOKEN); required on a non-loopback --host "
                             "(generated into <state-dir>/token when not given)")
    parser.add_argument("--state-dir", type=Path, default=None, metavar="DIR",
                        help=f"where sessions (uploads, clicks, masks) are kept (default {default_state_dir()})")
    parser.add_argument("--max-upload-mb", type=float, default=1024.0, help="largest upload accepted, MiB (default 1024)")
    parser.add_argument("--no-expansion", action="store_true", help="switch off cross-patch expansion")
    parser.add_argument("--no-refine", action="store_true",
                        help="threshold the model's probabilities at 0.5, without the intensity-guided boundary refinement")
    parser.add_argument("--no-mirror", action="store_true",
                        help="decode each patch once, without averaging it with its left-right mirror (about half the model time per click)")
    parser.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                        help="allow cross-origin calls from ORIGIN (repeatable; default: none)")
    parser.add_argument("--max-concurrent", type=int, default=2,
                        help="clicks computed at the same time across all users (default 2; 1: one decode in memory at a time)")
    parser.add_argument("--session-ttl", type=float, default=24.0, metavar="HOURS",
                        help="remove a session idle this long (default 24; caps the expiry MONAI Label clients ask for)")
    parser.add_argument("--session-quota-gb", type=float, default=20.0, metavar="GB",
                        help="disk the stored sessions may use; the longest idle go first beyond it (default 20)")
    parser.add_argument("--max-patches", type=int, default=None, metavar="N",
                        help="cross-patch expansion: at most N neighbour patches per click (default 16)")


def write_token(state_dir: Path, token: str) -> Path:
    """Write a generated token to ``<state_dir>/token``, readable by the owner only."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / "token"
    tmp = state_dir / f".token.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(token + "\n")
    os.replace(tmp, path)
    return path


def normalize_device(device: str) -> str:
    """``gpu`` / ``gpu:N`` -> ``cuda`` / ``cuda:N``; other names unchanged."""
    d = device.strip().lower()
    return "cuda" + d[3:] if d.startswith("gpu") else d


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from ..server import ServerConfig, create_app, is_loopback

    if args.data is not None and not args.data.is_dir():
        raise InputError(f"--data {args.data}: not a folder")
    if not args.session_ttl > 0 or not args.session_quota_gb > 0:
        raise InputError("--session-ttl and --session-quota-gb: must be positive")
    if args.max_patches is not None and args.max_patches < 0:
        raise InputError("--max-patches: must be >= 0")
    if args.max_upload_mb <= 0:
        raise InputError("--max-upload-mb: must be positive")
    token = args.token
    if token is not None and len(token) < 8:
        raise InputError("--token: use at least 8 characters")
    state_dir = args.state_dir or default_state_dir()
    token_file = None
    if token is None and not is_loopback(args.host):
        token = secrets.token_urlsafe(24)
        token_file = write_token(state_dir, token)
    config = ServerConfig(
        state_dir=state_dir,
        data_dir=args.data,
        model=args.model,
        allow_untrained=args.untrained,
        device=normalize_device(args.device),
        token=token,
        max_upload_mb=args.max_upload_mb,
        expansion=not args.no_expansion,
        cors_origins=list(args.cors_origin),
        max_concurrent_inference=args.max_concurrent,
        session_ttl_s=args.session_ttl * 3600.0,
        session_quota_mb=args.session_quota_gb * 1024.0,
        max_patches=args.max_patches,
        refine=False if args.no_refine else None,
        mirror=False if args.no_mirror else None,
    )
    app = create_app(config)
    app.state.ctx.models.get()  # load the model now: a bad checkpoint fails here, not at the first click
    about = app.state.ctx.models.describe()
    print(f"ctsam3d serve: model {about['name']} (trained on {about['trained_on']})", flush=True)
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    url = f"http://{'[' + shown + ']' if ':' in shown else shown}:{args.port}/"
    if token is None:
        print(f"ctsam3d serve: open {url}  (state in {config.state_dir})", flush=True)
    else:
        code = app.state.ctx.logins.issue()
        print(f"ctsam3d serve: open {url}login?code={code}  (one-time sign-in link, valid 15 min; "
              f"state in {config.state_dir})", flush=True)
        where = f"in {token_file} (readable by you only)" if token_file else "the --token you gave"
        print(f"ctsam3d serve: API token (3D Slicer password, 'Authorization: Bearer', the page's token box): {where}",
              flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning" if args.quiet else "info")
    return 0
