"""Per-region and per-family summaries of evaluation reports (model card tables).

Reads the ``report.csv`` written by ``ctsam3d evaluate`` (one row per method, case and
structure with ``dice_1 .. dice_K``), groups rows by the structure's body region or family
(:mod:`ctsam3d.anatomy.regions`) and prints Markdown tables of mean Dice after chosen click
counts, plus the groups whose mean Dice *falls* from one click count to the next by more than
``tolerance`` (issue 16: no family may lose Dice as clicks are added).

    python -m ctsam3d.evaluation.by_region docs/results/wholebody_heldout/report.csv \
        [more report.csv ...] [--by region|family|both] [--clicks 1,3,5,10] [--method model]
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..anatomy.regions import classify

__all__ = ["read_rows", "group_curves", "falls", "markdown_table", "main"]


def read_rows(paths: list[str | Path], method: str | None = None) -> list[dict]:
    """Rows of one or more report.csv files: ``{method, case, structure, curve}`` with
    ``curve`` the Dice after 1..K clicks (float array). ``method`` keeps only that method."""
    rows = []
    for p in paths:
        with open(p, newline="", encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                if method is not None and r["method"] != method:
                    continue
                ks = sorted((int(k.split("_")[1]) for k in r if k.startswith("dice_")))
                curve = np.array([float(r[f"dice_{k}"]) for k in ks])
                rows.append({"method": r["method"], "case": r["case"], "structure": r["structure"], "curve": curve})
    return rows


def group_curves(rows: list[dict], by: str = "region") -> dict[tuple[str, str], np.ndarray]:
    """``{(method, group): (n, K) Dice curves}``; ``by`` = ``"region"`` or ``"family"``."""
    if by not in ("region", "family"):
        raise ValueError(f"by must be 'region' or 'family', got {by!r}")
    idx = 0 if by == "region" else 1
    out: dict[tuple[str, str], list] = defaultdict(list)
    for r in rows:
        out[(r["method"], classify(r["structure"])[idx])].append(r["curve"])
    return {k: np.stack(v) for k, v in sorted(out.items())}


def falls(curves: np.ndarray, tolerance: float = 0.01) -> list[tuple[int, float]]:
    """Click counts ``k`` (1-based) where the mean Dice after ``k + 1`` clicks is below the mean
    after ``k`` by more than ``tolerance``: ``[(k, drop)]``."""
    m = curves.mean(axis=0)
    return [(k + 1, round(float(m[k] - m[k + 1]), 4)) for k in range(len(m) - 1) if m[k] - m[k + 1] > tolerance]


def markdown_table(groups: dict[tuple[str, str], np.ndarray], clicks: list[int], label: str, tolerance: float = 0.01) -> str:
    head = f"| method | {label} | n | " + " | ".join(f"Dice@{k}" for k in clicks) + " | falls (click: drop) |"
    lines = [head, "|" + "---|" * (len(clicks) + 4)]
    for (method, group), c in groups.items():
        m = c.mean(axis=0)
        cells = [f"{m[k - 1]:.3f}" if k <= len(m) else "" for k in clicks]
        f = falls(c, tolerance)
        lines.append(f"| {method} | {group} | {len(c)} | " + " | ".join(cells) + " | "
                     + (", ".join(f"{k}→{k + 1}: −{d:.3f}" for k, d in f) or "none") + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ctsam3d.evaluation.by_region", description=__doc__.split("\n\n")[0])
    ap.add_argument("reports", nargs="+", help="report.csv files written by ctsam3d evaluate")
    ap.add_argument("--by", choices=("region", "family", "both"), default="both")
    ap.add_argument("--clicks", default="1,3,5,10", help="click counts to show (default 1,3,5,10)")
    ap.add_argument("--method", default=None, help="only this method's rows (e.g. model)")
    ap.add_argument("--tolerance", type=float, default=0.01, help="a mean drop above this counts as a fall")
    a = ap.parse_args(argv)
    for p in a.reports:
        if not Path(p).is_file():
            print(f"error: {p}: no such report.csv", file=sys.stderr)
            return 2
    try:
        clicks = [int(k) for k in a.clicks.split(",") if k.strip()]
    except ValueError:
        print(f"error: --clicks: expected comma-separated integers, got {a.clicks!r}", file=sys.stderr)
        return 2
    rows = read_rows(a.reports, a.method)
    if not rows:
        print("error: no rows" + (f" for method {a.method!r}" if a.method else ""), file=sys.stderr)
        return 2
    for by in (("region", "family") if a.by == "both" else (a.by,)):
        print(markdown_table(group_curves(rows, by), clicks, by, a.tolerance))
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
