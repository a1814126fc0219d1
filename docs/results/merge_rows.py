"""Put freshly computed method rows into an existing evaluation report, keeping its other rows.

Used by ``regenerate.sh`` with ``MODEL_ROWS_ONLY=1``: the model rows are recomputed (they depend
on the session and the weights) while the classical baselines' rows (random walker, region
growing: they depend on neither) are carried over from the committed report, which saves
their CPU time. The merged report is summarised by the same code as ``ctsam3d evaluate``
(``ctsam3d.evaluation.report.summarize`` / ``write_report``: report.json, report.csv, plots),
and records both origins under ``merged_from``.

Refuses (exit 2, one line) when the two reports do not share data, format, protocol, cases and
skipped structures, or when the kept rows' (case, structure) pairs differ from the new ones.

    python docs/results/merge_rows.py --new NEW_DIR --base BASE_DIR \
        --keep random-walker,region-growing -o OUT_DIR [--command TEXT]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ctsam3d.evaluation.report import summarize, write_report


def _load(folder: str) -> dict:
    path = Path(folder) / "report.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"merge_rows: {path}: cannot read a report ({exc})")


def _origin(report: dict, methods: list[str]) -> dict:
    return {"methods": methods, "command": report.get("command"), "environment": report.get("environment"),
            "elapsed_s": report.get("elapsed_s"), "peak_rss_mb": report.get("peak_rss_mb")}


#: Protocol fields added to reports later, with the only behaviour before they existed
#: (``--first-prompt`` came after the 2026-11-27 reports; until then interaction 1 was a click).
PROTOCOL_DEFAULTS = {"first_prompt": "click"}


def _protocol(report: dict) -> dict:
    return {**PROTOCOL_DEFAULTS, **report.get("protocol", {})}


def merge(new: dict, base: dict, keep: list[str], command: str | None = None) -> dict:
    if _protocol(new) != _protocol(base):
        raise SystemExit("merge_rows: the reports differ in 'protocol'; rerun every method instead")
    for key in ("data", "format", "cases"):
        if new.get(key) != base.get(key):
            raise SystemExit(f"merge_rows: the reports differ in {key!r}; rerun every method instead")
    key = lambda s: (s["case"], s["structure"], s["reason"])  # noqa: E731
    if sorted(map(key, new["skipped"])) != sorted(map(key, base["skipped"])):
        raise SystemExit("merge_rows: the reports skipped different structures; rerun every method instead")
    missing = [m for m in keep if m not in base["methods"]]
    if missing:
        raise SystemExit(f"merge_rows: the base report has no {missing[0]!r} rows")
    new_methods = [m for m in new["methods"] if m not in keep]
    pairs_new = {(r["case"], r["structure"]) for r in new["per_case"]}
    for m in keep:
        pairs = {(r["case"], r["structure"]) for r in base["per_case"] if r["method"] == m}
        if pairs != pairs_new:
            raise SystemExit(f"merge_rows: {m!r} rows cover other (case, structure) pairs than the new rows")
    names = new_methods + keep
    rank = {m: i for i, m in enumerate(names)}
    order: dict = {}
    for r in new["per_case"]:
        order.setdefault((r["case"], r["structure"]), len(order))
    records = [r for r in new["per_case"] if r["method"] in new_methods] + \
              [r for r in base["per_case"] if r["method"] in keep]
    records.sort(key=lambda r: (order[(r["case"], r["structure"])], rank[r["method"]]))
    drop = {"n", "dice_at_click", "nsd_at_click", "noc", "noc_failures", "time_per_click_s"}
    extra = {m: {k: v for k, v in (new if m in new_methods else base)["methods"][m].items() if k not in drop}
             for m in names}
    report = {
        "title": new["title"], "data": new["data"], "format": new["format"], "protocol": new["protocol"],
        **summarize(records, names, new["protocol"]["clicks"], extra),
        "command": command or new["command"],
        "merged_from": [_origin(new, new_methods), _origin(base, keep)],
        "environment": new["environment"],
        "cases": new["cases"],
        "per_case": records,
        "failures": [f for f in new["failures"] if f.get("method") not in keep]
                    + [f for f in base["failures"] if f.get("method") in keep],
        "skipped": new["skipped"],
        "peak_rss_mb": new["peak_rss_mb"],
        "elapsed_s": new["elapsed_s"],
    }
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--new", required=True, help="folder of the report with the recomputed rows")
    p.add_argument("--base", required=True, help="folder of the report whose --keep rows are carried over")
    p.add_argument("--keep", required=True, help="comma-separated methods to carry over from --base")
    p.add_argument("-o", "--output", required=True, help="folder to write the merged report into")
    p.add_argument("--command", default=None, help="what to record as the report's command (default: --new's)")
    a = p.parse_args(argv)
    keep = [m.strip() for m in a.keep.split(",") if m.strip()]
    report = merge(_load(a.new), _load(a.base), keep, a.command)
    write_report(report, Path(a.output))
    print(f"merged: {Path(a.output) / 'report.json'} ({', '.join(report['methods'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
