"""``ctsam3d models``: the bundled and installed models, what each was trained on, the default.

The default (marked ``*``) is what ``load_model()``, ``ctsam3d segment`` and ``ctsam3d serve``
use without ``--model``: the released CT-SAM3D weights when installed (``ctsam3d download``),
else the bundled default (:data:`ctsam3d.hub.registry.BUNDLED`). Preset names are untrained
networks, listed apart; the CLI and server refuse them without ``--untrained``. A preset name
that a bundled model bears (``ctsam3d-lite-wb``) loads that trained model; with ``--untrained``
it gives the fresh preset.
"""

from __future__ import annotations

import argparse
import json
import sys

NAME = "models"
HELP = "List bundled and installed models and the default"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")


def run(args: argparse.Namespace) -> int:
    from ..hub.paths import HOME_ENV, models_dir
    from ..hub.registry import RELEASED_NAME, find_model, list_models, unlisted_bundled
    from ..modeling.presets import PRESETS

    entries = list_models()
    if args.json:
        json.dump({"models": [e.to_json() for e in entries], "untrained_presets": sorted(PRESETS),
                   "models_dir": str(models_dir())}, sys.stdout, indent=1)
        print()
        return 0
    rows = [("name", "source", "preset", "default", "trained on")]
    rows += [(e.name, e.source, e.preset, "*" if e.default else "", e.anatomy) for e in entries]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r[:4], widths)) + "  " + r[4])
    if not entries:
        print("(no trained model: the package ships no weights and none is installed)")
    for folder in unlisted_bundled():
        print(f"(not listed: {folder} is named like the preset {folder.name!r}; "
              f"give it an entry in ctsam3d.hub.registry.BUNDLED to ship it)")
    if not any(e.name == RELEASED_NAME and e.source == "installed" for e in entries):
        print(f"\nnot installed: {RELEASED_NAME}, the authors' released weights (107 whole-body structures, "
              f"Apache-2.0, ~300 MB): 'ctsam3d download' installs it and makes it the default")
    print(f"\nuntrained presets (refused by the CLI and server without --untrained): {', '.join(sorted(PRESETS))}")
    for name in sorted(n for n in PRESETS if find_model(n) is not None):
        print(f"  {name}: the name alone loads the trained model listed above; --untrained gives the fresh preset")
    print(f"installed models live in {models_dir()} (set ${HOME_ENV} to move them)")
    return 0
