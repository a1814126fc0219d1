"""``ctsam3d preprocess -i DATA -o CACHE``: build the training cache from a dataset.

Reorients every case to identity direction (lossless) at its native spacing unless
``--spacing`` is given, writes compact int16/uint8 arrays plus per-structure sample voxels,
in parallel (``--workers``), resumably (cases already in the cache are skipped). A case
that cannot be read is reported and skipped; the exit status is 0 when at least one case
was cached and 1 otherwise.
"""

from __future__ import annotations

import argparse
import logging
import sys

NAME = "preprocess"
HELP = "Build the training cache from a dataset"

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-i", "--input", required=True, help="dataset folder, or a manifest (.csv/.json)")
    parser.add_argument("-o", "--output", required=True, help="cache folder (created; resumed when it exists)")
    parser.add_argument(
        "--format",
        default="auto",
        choices=["auto", "totalseg", "nnunet", "pairs", "manifest"],
        help="dataset layout (default: guess)",
    )
    parser.add_argument("--split", help="only cases of this split (train, val, test) when the layout has splits")
    parser.add_argument("--catalogue", default="openkbp", help="anatomy catalogue naming label ids (pairs/manifest)")
    parser.add_argument("--spacing", type=float, help="resample to this isotropic spacing in mm (default: keep native)")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    parser.add_argument("--no-compress", action="store_true", help="write memory-mappable .npy instead of compressed .npz")
    parser.add_argument("--limit", type=int, help="only the first N cases (quick trials)")


def run(args: argparse.Namespace) -> int:
    from ..data.adapters import open_dataset
    from ..data.cache import preprocess
    from ..errors import InputError

    if args.spacing is not None and not args.spacing > 0:
        raise InputError(f"--spacing: must be > 0 mm, got {args.spacing}")
    if args.workers < 1:
        raise InputError(f"--workers: must be >= 1, got {args.workers}")
    cases = open_dataset(args.input, args.format, split=args.split, catalogue=args.catalogue)
    if args.limit:
        cases = cases[: args.limit]
    failed = preprocess(
        cases,
        args.output,
        spacing=args.spacing,
        workers=args.workers,
        compress=not args.no_compress,
        progress=not args.quiet,
    )
    ok = len(cases) - len(failed)
    print(f"{args.output}: {ok} of {len(cases)} cases cached, {len(failed)} skipped", file=sys.stderr)
    return 0 if ok > 0 else 1
