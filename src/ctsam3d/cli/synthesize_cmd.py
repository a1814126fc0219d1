"""``ctsam3d synthesize``: synthetic CT from label maps, or pseudo-structures from real CT, as a cache.

Two kinds of extra training data, written as an ordinary training cache
(:mod:`ctsam3d.data.synth_cache`):

* ``--labelmaps FILE [FILE ...] --variants N``: N synthetic CT variants per label map
  (:mod:`ctsam3d.data.synthetic`: measured HU per structure, contrast phase, body, spine,
  texture, partial volume, noise, smooth deformation), case ids ``<stem>_v###``;
* ``--pseudo-from PATH [PATH ...]``: real CT files or dataset folders, one case of generic
  ``pseudo_###`` structures per CT (:mod:`ctsam3d.data.pseudo`).

All inputs are checked before anything is written; resumable like ``preprocess``. Exit
status 0 when at least one case was written, 1 otherwise.
"""

from __future__ import annotations

import argparse
import sys

NAME = "synthesize"
HELP = "Synthetic CT from label maps / pseudo-structures from real CT, as a training cache"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--labelmaps", nargs="+", metavar="FILE", help="integer label maps (names: sidecar, known file, --catalogue)")
    src.add_argument("--pseudo-from", nargs="+", metavar="PATH", help="real CT files or dataset folders (e.g. ../shared/data/openkbp/train)")
    parser.add_argument("-o", "--output", required=True, help="cache folder (created; resumed when it is a cache)")
    parser.add_argument("--variants", type=int, default=24, help="variants per label map (default 24)")
    parser.add_argument("--min-spacing", type=float, default=1.5,
                        help="subsample label-map axes finer than this (mm, integer stride; 0 = native; default 1.5)")
    parser.add_argument("--catalogue", help="anatomy catalogue naming label ids when there is no sidecar")
    parser.add_argument("--max-cases", type=int, help="pseudo: only the first N CTs")
    parser.add_argument("--max-structures", type=int, default=40, help="pseudo: structures per CT (default 40)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")


def run(args: argparse.Namespace) -> int:
    from ..data.synth_cache import list_ct_files, pseudo_cache, synthesize_cache
    from ..errors import InputError

    if args.workers < 1:
        raise InputError(f"--workers: must be >= 1, got {args.workers}")
    if args.min_spacing < 0:
        raise InputError(f"--min-spacing: must be >= 0 mm, got {args.min_spacing}")
    if args.labelmaps:
        failed = synthesize_cache(args.labelmaps, args.output, variants=args.variants, seed=args.seed,
                                  workers=args.workers, min_spacing=args.min_spacing, catalogue=args.catalogue,
                                  progress=not args.quiet)
        total = args.variants * len(args.labelmaps)
    else:
        if args.max_structures < 1:
            raise InputError(f"--max-structures: must be >= 1, got {args.max_structures}")
        total = len(list_ct_files(args.pseudo_from, args.max_cases))
        failed = pseudo_cache(args.pseudo_from, args.output, max_cases=args.max_cases, n_max=args.max_structures,
                              seed=args.seed, workers=args.workers, progress=not args.quiet)
    ok = total - len(failed)
    print(f"{args.output}: {ok} of {total} cases cached, {len(failed)} skipped", file=sys.stderr)
    return 0 if ok > 0 else 1
