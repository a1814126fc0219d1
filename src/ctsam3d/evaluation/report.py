"""Aggregate protocol results and write report.json, report.csv and PNG plots.

``report.json`` keys:

* ``protocol``: the rules (see :func:`ctsam3d.evaluation.protocol.describe_protocol`);
* ``methods``: ``{method: {dice_at_click, nsd_at_click, noc, noc_failures, n, time_per_click_s,
  start_s, peak_gpu_memory_mb}}``;
* ``dice_at_click`` / ``nsd_at_click``: ``{method: {"1": mean, ..., "K": mean}}``;
* ``noc``: ``{method: {"80": mean, "85": mean, "90": mean}}``;
* ``per_structure``: ``{method: {structure: {dice_at_click, nsd_at_click, noc, noc_failures, n}}}``;
* ``per_case``: one record per (case, structure, method) with the curves and the clicks;
* ``failures``: ``[{case, structure?, method?, error}]``; ``skipped``: absent structures;
* ``peak_rss_mb`` (whole process), ``data``, ``format``, ``elapsed_s``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

__all__ = ["summarize", "write_report", "plot_report"]


def _curve_means(rows: list[dict], key: str, K: int) -> dict[str, float]:
    if not rows:
        return {}
    a = np.array([r[key] for r in rows], float)
    return {str(k + 1): round(float(a[:, k].mean()), 4) for k in range(K)}


def _noc_stats(rows: list[dict], K: int) -> tuple[dict, dict]:
    if not rows:
        return {}, {}
    keys = rows[0]["noc"].keys()
    mean = {t: round(float(np.mean([r["noc"][t] for r in rows])), 3) for t in keys}
    fail = {t: round(float(np.mean([r["noc"][t] > K for r in rows])), 4) for t in keys}
    return mean, fail


def _summary(rows: list[dict], K: int) -> dict:
    noc, fail = _noc_stats(rows, K)
    return {"n": len(rows), "dice_at_click": _curve_means(rows, "dice", K),
            "nsd_at_click": _curve_means(rows, "nsd", K), "noc": noc, "noc_failures": fail}


def summarize(records: list[dict], methods: list[str], K: int, extra: dict[str, dict] | None = None) -> dict:
    """Means per method and per (method, structure) from per-instance records."""
    out: dict = {"methods": {}, "dice_at_click": {}, "nsd_at_click": {}, "noc": {}, "per_structure": {}}
    for m in methods:
        rows = [r for r in records if r["method"] == m]
        s = _summary(rows, K)
        times = np.array([t for r in rows for t in r["time_s"]], float)
        s["time_per_click_s"] = ({"mean": round(float(times.mean()), 4), "p50": round(float(np.percentile(times, 50)), 4),
                                  "p95": round(float(np.percentile(times, 95)), 4), "clicks": int(times.size)}
                                 if times.size else {})
        s.update((extra or {}).get(m, {}))
        out["methods"][m] = s
        out["dice_at_click"][m] = s["dice_at_click"]
        out["nsd_at_click"][m] = s["nsd_at_click"]
        out["noc"][m] = s["noc"]
        structures = sorted({r["structure"] for r in rows})
        out["per_structure"][m] = {st: _summary([r for r in rows if r["structure"] == st], K) for st in structures}
    return out


def write_report(report: dict, out_dir: Path) -> list[Path]:
    """Write report.json, report.csv and the plots into ``out_dir``; returns the paths written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / "report.json", out_dir / "report.csv"]
    paths[0].write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    K = report["protocol"]["clicks"]
    thresholds = [f"{round(t * 100)}" for t in report["protocol"]["noc_thresholds"]]
    with paths[1].open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "case", "structure", "voxels", "clicks_made"]
                   + [f"dice_{k}" for k in range(1, K + 1)] + [f"nsd_{k}" for k in range(1, K + 1)]
                   + [f"noc_{t}" for t in thresholds] + ["mean_time_per_click_s"])
        for r in report["per_case"]:
            w.writerow([r["method"], r["case"], r["structure"], r["voxels"], len(r["clicks"])]
                       + [f"{v:.4f}" for v in r["dice"]] + [f"{v:.4f}" for v in r["nsd"]]
                       + [r["noc"][t] for t in thresholds]
                       + [f"{np.mean(r['time_s']):.4f}" if r["time_s"] else ""])
    paths += plot_report(report, out_dir)
    return paths


def plot_report(report: dict, out_dir: Path) -> list[Path]:
    """``dice_vs_clicks.png`` (mean Dice and NSD per method) and ``dice_per_structure.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    K = report["protocol"]["clicks"]
    ks = np.arange(1, K + 1)
    written = []
    methods = [m for m in report["methods"] if report["methods"][m]["n"]]
    if not methods:
        return written
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for m in methods:
        s = report["methods"][m]
        axes[0].plot(ks, [s["dice_at_click"][str(k)] for k in ks], marker="o", label=f"{m} (n={s['n']})")
        axes[1].plot(ks, [s["nsd_at_click"][str(k)] for k in ks], marker="o", label=m)
    tol = report["protocol"]["nsd_tolerance_mm"]
    for ax, what in zip(axes, ("mean Dice", f"mean NSD @ {tol:g} mm")):
        ax.set_xlabel("clicks")
        ax.set_ylabel(what)
        ax.set_xticks(ks)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower right")
    fig.suptitle(f"{report.get('title') or report.get('data', '')}", fontsize=9)
    p = Path(out_dir) / "dice_vs_clicks.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    written.append(p)

    structures = sorted({st for m in methods for st in report["per_structure"][m]})
    if structures:
        cols = min(4, len(structures))
        rows = int(np.ceil(len(structures) / cols))
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False,
                                 constrained_layout=True, sharey=True)
        for ax, st in zip(axes.ravel(), structures):
            for m in methods:
                s = report["per_structure"][m].get(st)
                if s:
                    ax.plot(ks, [s["dice_at_click"][str(k)] for k in ks], marker=".", label=m)
            n = max(report["per_structure"][m].get(st, {}).get("n", 0) for m in methods)
            ax.set_title(f"{st} (n={n})", fontsize=9)
            ax.set_ylim(0, 1)
            ax.grid(alpha=0.3)
        for ax in axes.ravel()[len(structures):]:
            ax.axis("off")
        axes[0, 0].legend(fontsize=7, loc="lower right")
        fig.supxlabel("clicks")
        fig.supylabel("mean Dice")
        p = Path(out_dir) / "dice_per_structure.png"
        fig.savefig(p, dpi=100)
        plt.close(fig)
        written.append(p)
    return written
