"""Entry point of the ``ctsam3d`` command.

Each subcommand lives in its own module ``ctsam3d.cli.<module>`` exposing

* ``NAME``: the subcommand name,
* ``HELP``: a one-line description,
* ``add_arguments(parser)``: add its options to an ``argparse`` parser,
* ``run(args) -> int``: do the work and return the exit code.

Modules are imported lazily so ``ctsam3d info`` does not import torch.
Errors derived from :class:`ctsam3d.errors.CtSam3dError` are printed as one line
(``ctsam3d: error: ...``) and exit with status 2; ``--verbose`` also shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback

from .._version import __version__
from ..errors import CtSam3dError

# (subcommand, module). The order is the order of `ctsam3d --help`.
SUBCOMMANDS: list[tuple[str, str, str]] = [
    ("info", "ctsam3d.cli.info_cmd", "Print geometry, HU range and labels of a volume or DICOM folder"),
    ("segment", "ctsam3d.cli.segment_cmd", "Segment a structure from clicks and write the mask"),
    ("demo", "ctsam3d.cli.demo_cmd", "Run the bundled model on the bundled example CT"),
    ("preprocess", "ctsam3d.cli.preprocess_cmd", "Build the training cache from a dataset"),
    ("synthesize", "ctsam3d.cli.synthesize_cmd", "Synthetic CT / pseudo-structures as a training cache"),
    ("train", "ctsam3d.cli.train_cmd", "Train a model from a config file"),
    ("evaluate", "ctsam3d.cli.evaluate_cmd", "Evaluate methods with simulated clicks"),
    ("serve", "ctsam3d.cli.serve_cmd", "Web tool and MONAI Label-compatible server"),
    ("sessions", "ctsam3d.cli.sessions_cmd", "List or clear the web server's stored sessions"),
    ("convert-checkpoint", "ctsam3d.cli.convert_cmd", "Convert the released CT-SAM3D params.pth"),
    ("models", "ctsam3d.cli.models_cmd", "List bundled and installed models and the default"),
    ("download", "ctsam3d.cli.download_cmd", "Download and install the released CT-SAM3D weights"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ctsam3d",
        description="Promptable 3D segmentation of anatomy in CT (CT-SAM3D).",
    )
    parser.add_argument("--version", action="version", version=f"ctsam3d {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name, help_text in SUBCOMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:  # subcommand not built yet / optional dependency missing
            if exc.name and exc.name.startswith("ctsam3d"):
                continue
            raise
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info messages")
        p.add_argument("-v", "--verbose", action="store_true", help="show tracebacks and debug messages")
        module.add_arguments(p)
        p.set_defaults(_run=module.run, _fast_exit=bool(getattr(module, "FAST_EXIT", False)))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 1
    level = logging.WARNING if args.quiet else (logging.DEBUG if args.verbose else logging.INFO)
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)
    try:
        code = int(args._run(args) or 0)
    except CtSam3dError as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"ctsam3d: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("ctsam3d: interrupted", file=sys.stderr)
        return 130
    if argv is None and args._fast_exit:  # the program itself (not a call from Python): see _exit_now
        _exit_now(code)
    return code


def _exit_now(code: int) -> None:
    """End the process at once after a subcommand that set ``FAST_EXIT`` succeeded.

    Its outputs are complete (written and renamed into place) when it returns; the interpreter's
    teardown after a PyTorch run (module and thread-pool finalisation) took about 1 s of a 3-5 s
    ``ctsam3d segment`` on a 2-core machine, for nothing the user gets. Streams and log handlers
    are flushed first.
    """
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
