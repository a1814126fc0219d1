"""``ctsam3d download``: fetch, verify, convert and install the released CT-SAM3D weights.

    ctsam3d download                        # from ModelScope (xiuan123/CT-SAM3D), ~300 MB
    ctsam3d download --from params.pth      # a file fetched on another machine (config.py beside it)

Installs ``ct-sam3d-released`` into ``$CTSAM3D_HOME/models/`` (default
``~/.cache/ctsam3d/models/``); from then on it is the default model of ``load_model()``, the
CLI and the server (``ctsam3d models`` shows it). An interrupted download resumes when the
command is run again. See :mod:`ctsam3d.hub.install` for the verification and the install.
Nothing else in ctsam3d downloads anything.
"""

from __future__ import annotations

import argparse
import logging

NAME = "download"
HELP = "Download and install the released CT-SAM3D weights"
log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..hub.modelscope import DEFAULT_ENDPOINT, DEFAULT_REVISION, ENDPOINT_ENV, RELEASED_MODEL_ID

    parser.add_argument("--from", dest="from_file", default=None, metavar="FILE",
                        help="install from a params.pth already on this machine (no network)")
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="with --from: the released config.py (default: the one beside FILE, if any)")
    parser.add_argument("--force", action="store_true", help="reinstall even when already installed")
    parser.add_argument("--endpoint", default=None, metavar="URL",
                        help=f"hub address (default ${ENDPOINT_ENV} or {DEFAULT_ENDPOINT})")
    parser.add_argument("--model-id", default=RELEASED_MODEL_ID, help=f"ModelScope model (default {RELEASED_MODEL_ID})")
    parser.add_argument("--revision", default=DEFAULT_REVISION, help=f"branch or tag (default {DEFAULT_REVISION})")
    parser.add_argument("--retries", type=int, default=2, help="resume an interrupted transfer this many times (default 2)")


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from ..hub.install import install_released
    from ..hub.registry import RELEASED_ANATOMY

    if args.retries < 0:
        raise InputError(f"--retries {args.retries}: must be >= 0")
    if args.config is not None and args.from_file is None:
        raise InputError("--config: only with --from (a download takes the config.py published beside params.pth)")
    if args.from_file is None:
        log.info("downloading the released CT-SAM3D weights (%s on ModelScope, Apache-2.0)", args.model_id)
    result = install_released(from_file=args.from_file, config_file=args.config, endpoint=args.endpoint,
                              model_id=args.model_id, revision=args.revision, force=args.force,
                              progress=not args.quiet, retries=args.retries)
    if result.already:
        print(f"{result.name} is already installed in {result.path} (--force reinstalls)")
        return 0
    if result.recorded:
        log.info("recorded size and sha256 of the files; later downloads and --from files must match them")
    print(f"installed {result.name} in {result.path} ({RELEASED_ANATOMY}); "
          f"it is now the default model ('ctsam3d models' lists all)")
    return 0
