"""``ctsam3d train --config FILE``: train (or resume) a model; see docs/training.md."""

from __future__ import annotations

import argparse

NAME = "train"
HELP = "Train a model from a config file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..train import add_arguments as add

    add(parser)


def run(args: argparse.Namespace) -> int:
    from ..train import run_from_args

    return run_from_args(args)
