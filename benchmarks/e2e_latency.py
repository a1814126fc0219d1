"""End-to-end latency as a user feels it, on full-size CTs (issue 20).

Three measurements, each of the whole path a user waits for:

1. **CLI**: ``ctsam3d segment`` with one click on a 512 x 512 x 133 CT, the whole process
   (interpreter start to exit): wall time and peak resident memory (``os.wait4``'s
   ``ru_maxrss`` of the child). Targets: <= 3 s, <= 1.5 GB.
2. **Web page** in headless Chromium with software WebGL (Debian ``/usr/bin/chromium``,
   ``--disable-gpu``: SwiftShader), 512 x 512 x 300 CT, a ``ctsam3d serve`` subprocess with
   default settings: *open* = from pressing Open until the CT is drawn (the page's own clock,
   checked against this script's); *click* = from the mouse click on the canvas until the
   overlay has been updated and drawn (``gl.finish`` and the next animation frame), per click,
   p50 / p95. Clicks are placed inside organs (liver, spleen, kidneys, stomach) through the
   canvas, as a user does; every third click is negative. Targets: open <= 10 s, click p50 <= 1 s.
3. **Server under load**: calls ``benchmarks/server_load.py``'s ``run_load`` (8 users, 60 s,
   default settings) on the 512 x 512 x 300 CT, when that function is present.

The CTs are built from the shared TotalSegmentator example by :mod:`fullsize_ct` (resampled to
512 x 512 x N with CT-like noise; cached under ``~/.cache/ctsam3d/bench``).

    python benchmarks/e2e_latency.py                     # all three, 3 CLI runs, 12 clicks
    python benchmarks/e2e_latency.py --only cli --repeat 5
    python benchmarks/e2e_latency.py --only web --clicks 20 --json benchmarks/results/x.json

Prints a table and writes JSON (default ``benchmarks/results/e2e_latency.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from fullsize_ct import ORGANS, build  # noqa: E402

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]
TARGETS = {"cli_wall_s": 3.0, "cli_peak_mb": 1536.0, "web_open_s": 10.0, "web_click_p50_ms": 1000.0,
           "server_click_p50_ms": 1000.0, "server_click_p95_ms": 3000.0, "server_open_s": 5.0, "server_rss_mb": 4096.0}


def pct(values) -> dict:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if v.size == 0:
        return {"p50": None, "p95": None, "min": None, "max": None, "n": 0}
    return {"p50": round(float(np.percentile(v, 50)), 1), "p95": round(float(np.percentile(v, 95)), 1),
            "min": round(float(v.min()), 1), "max": round(float(v.max()), 1), "n": int(v.size)}


# ----------------------------------------------------------------------------------- 1. CLI
def run_cli(case, repeat: int, model: str | None) -> dict:
    """``ctsam3d segment`` one click on the organ voxel nearest the liver's centroid, ``repeat`` times."""
    click = case.organ_voxel(5)
    exe = shutil.which("ctsam3d") or str(Path(sys.executable).with_name("ctsam3d"))
    runs = []
    with tempfile.TemporaryDirectory(prefix="ctsam3d-e2e-") as tmp:
        for n in range(repeat):
            out = Path(tmp) / f"mask{n}.nii.gz"
            cmd = [exe, "segment", "-i", str(case.ct), "-o", str(out), "--click", ",".join(map(str, click))]
            cmd += ["--model", model] if model else []
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            lines: list[tuple[float, str]] = []  # (seconds since start, progress line)

            def read_lines(pipe=proc.stderr, lines=lines, t0=t0):
                for raw in iter(pipe.readline, b""):
                    lines.append((time.perf_counter() - t0, raw.decode(errors="replace").rstrip()))

            reader = threading.Thread(target=read_lines, daemon=True)
            reader.start()
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t0
            reader.join(10)
            proc.stderr.close()
            stderr = "\n".join(text for _, text in lines)
            # longest wait without a line: start -> first line, between lines, last line -> exit
            marks = [0.0] + [t for t, _ in lines] + [wall]
            silent = max(b - a for a, b in zip(marks, marks[1:]))
            if os.waitstatus_to_exitcode(status) != 0 or not out.is_file():
                raise SystemExit(f"ctsam3d segment failed: {stderr[-2000:]}")
            runs.append({"wall_s": round(wall, 3), "peak_mb": round(usage.ru_maxrss / 1024, 1),
                         "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
                         "progress_lines": len(lines), "longest_silence_s": round(silent, 2),
                         "first_line_s": round(lines[0][0], 2) if lines else None})
            print(f"  cli run {n + 1}: {wall:.2f} s (CPU {runs[-1]['cpu_s']:.1f} s), peak {usage.ru_maxrss / 1024:.0f} MiB, "
                  f"first line after {runs[-1]['first_line_s']} s, longest silence {silent:.2f} s", flush=True)
        last_log = stderr.strip().splitlines()
    return {"ct": str(case.ct.name), "size_ijk": list(case.size_ijk), "click_ijk": list(click), "runs": runs,
            "wall_s": pct([r["wall_s"] for r in runs]), "peak_mb": pct([r["peak_mb"] for r in runs]),
            "longest_silence_s": pct([r["longest_silence_s"] for r in runs]), "cpu_s": pct([r["cpu_s"] for r in runs]),
            "command": " ".join(["ctsam3d", "segment", "-i", "CT", "-o", "mask.nii.gz", "--click", ",".join(map(str, click))]),
            "log_of_last_run": last_log}


# ----------------------------------------------------------------------------------- 2. web page
def _browser() -> str | None:
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def _start_server(data: Path, state: Path, model: str | None, threads: int):
    import httpx

    from ctsam3d.server.background import free_port

    port = free_port()
    cmd = [sys.executable, "-m", "ctsam3d.cli.main", "serve", "-q", "--port", str(port), "--data", str(data),
           "--state-dir", str(state), "-d", "cpu"] + (["--model", model] if model else [])
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore")
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    while True:
        try:
            if httpx.get(url + "/api/config", timeout=2).status_code == 200:
                return server, url
        except httpx.HTTPError:
            pass
        if server.poll() is not None or time.monotonic() - t0 > 180:
            raise SystemExit(f"server did not start: {server.stderr.read().decode()[-2000:]}")
        time.sleep(0.25)


def _ras(img, ijk) -> list[float]:
    lps = img.TransformIndexToPhysicalPoint([int(v) for v in ijk])
    return [-lps[0], -lps[1], lps[2]]


def run_web(case, clicks: int, model: str | None, threads: int, view: str | None, timeout_s: float) -> dict:
    import SimpleITK as sitk
    from playwright.sync_api import sync_playwright

    browser = _browser()
    if browser is None:
        raise SystemExit("no chromium (Debian: apt-get install chromium)")
    img = sitk.ReadImage(str(case.labels))
    targets = case.organ_voxels(clicks, seed=1)
    work = Path(tempfile.mkdtemp(prefix="ctsam3d-e2e-web-"))
    (work / "data").mkdir()
    shutil.copy(case.ct, work / "data" / "ct.nii.gz")  # a copy: the data folder refuses links out of it
    server, url = _start_server(work / "data", work / "state", model, threads)
    errors: list[str] = []
    result: dict = {"ct": case.ct.name, "size_ijk": list(case.size_ijk), "view": view or "page default"}
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=browser, headless=True, args=CHROMIUM_FLAGS)
            page = b.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(timeout_s * 1000)
            page.on("pageerror", lambda e: errors.append(str(e)))
            t0 = time.perf_counter()
            page.goto(url + "/")
            page.wait_for_function("document.body.dataset.ready === '1'")
            result["page_ready_s"] = round(time.perf_counter() - t0, 2)
            result["renderer"] = page.evaluate("() => window.ctsam3d.renderer || null")
            if view:
                page.click(f"[data-view={view}]")
            page.select_option("#datastore", "ct.nii.gz")
            t0 = time.perf_counter()
            page_t0 = page.evaluate("() => performance.now()")
            page.click("#open-btn")
            page.wait_for_function("document.body.dataset.session && (window.__seen ??= performance.now())", polling=100)
            result["open_s_script"] = round(time.perf_counter() - t0, 2)
            result["open_click_delay_ms"] = page.evaluate(f"() => window.ctsam3d.state.timings.open_pressed - {page_t0}")
            result["open_seen_ms"] = page.evaluate(f"() => window.__seen - {page_t0}")
            timings = page.evaluate("() => window.ctsam3d.state.timings || null")
            result["open_s"] = round(timings["open_ms"] / 1000, 2) if timings and "open_ms" in timings else result["open_s_script"]
            result["open_stages_ms"] = {**((timings or {}).get("open_stages") or {}), "server_open_ms": (timings or {}).get("open_server_ms")}
            page_ms, script_ms, server_ms, box_voxels, apply_ms, request_ms, queue_ms = [], [], [], [], [], [], []
            for n, (label_id, ijk) in enumerate(targets):
                positive = n % 3 != 2
                if n % 3 == 0 and n:
                    page.evaluate("() => window.ctsam3d.newObject && window.ctsam3d.newObject()")
                pos = page.evaluate("(ras) => window.ctsam3d.clientPointOfRas(ras, 0)", _ras(img, ijk))
                page.evaluate("() => window.ctsam3d.idle()")  # the crosshair move's redraw done: not part of the click
                edits = int(page.evaluate("() => Number(document.body.dataset.edits || 0)"))
                t0 = time.perf_counter()
                page.mouse.click(pos[0], pos[1], button="left" if positive else "right")
                page.wait_for_function(f"Number(document.body.dataset.edits || 0) > {edits}", polling=50)
                script_ms.append((time.perf_counter() - t0) * 1000)
                last = page.evaluate("() => window.ctsam3d.state.lastClick")
                page_ms.append(last.get("overlay_ms", last.get("ms")))
                server_ms.append(last.get("server_ms"))
                box_voxels.append(last.get("box_voxels"))
                apply_ms.append(last.get("apply_ms"))
                request_ms.append(last.get("request_ms"))
                queue_ms.append(last.get("queue_ms"))
                print(f"  click {n + 1} ({'+' if positive else '-'} {ORGANS.get(label_id, label_id)}): "
                      f"{page_ms[-1]:.0f} ms on the page ({script_ms[-1]:.0f} ms seen by the script; server {server_ms[-1]} ms)",
                      flush=True)
            result["markers"] = page.evaluate("() => window.ctsam3d.markerCount ? window.ctsam3d.markerCount() : null")
            result["status_text"] = page.evaluate("() => document.getElementById('status').textContent")
            shot = HERE.parent / ".ctsam3d_artifacts" / "e2e_page.png"  # not committed
            shot.parent.mkdir(exist_ok=True)
            page.screenshot(path=str(shot))
            result["screenshot"] = str(shot.relative_to(HERE.parent))
            b.close()
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(work, ignore_errors=True)
    result.update(click_ms=pct(page_ms), click_ms_script=pct(script_ms), server_ms=pct(server_ms), apply_ms=pct(apply_ms),
                  request_ms=pct(request_ms), queue_ms=pct(queue_ms),
                  click_ms_each=[round(v, 1) for v in page_ms], box_voxels=box_voxels, page_errors=errors)
    return result


# ----------------------------------------------------------------------------------- 3. server load
def run_server(case, users: int, seconds: float) -> dict:
    try:
        import server_load
    except ImportError as exc:  # pragma: no cover
        return {"skipped": f"benchmarks/server_load.py not importable ({exc})"}
    if not hasattr(server_load, "run_load"):
        return {"skipped": "benchmarks/server_load.py has no run_load(ct_path, users, seconds)"}
    return server_load.run_load(case.ct, users=users, seconds=seconds, verbose=True)


# ----------------------------------------------------------------------------------- report
def _mark(value, target, lower_is_better=True) -> str:
    if value is None:
        return "–"
    return "yes" if (value <= target if lower_is_better else value >= target) else "NO"


def table(res: dict) -> list[tuple[str, str, str, str]]:
    rows = []
    if "cli" in res:
        c = res["cli"]
        rows += [("CLI segment 512x512x133, wall s (p50 of %d; min-max)" % c["wall_s"]["n"],
                  f"{c['wall_s']['p50']} ({c['wall_s']['min']}-{c['wall_s']['max']})", "<= 3", _mark(c["wall_s"]["p50"], 3.0)),
                 ("  CPU time user+sys s (p50; the CLI uses both cores at times)", f"{c['cpu_s']['p50']}", "", ""),
                 ("CLI peak RSS MiB (max)", f"{c['peak_mb']['max']}", "<= 1536", _mark(c["peak_mb"]["max"], 1536)),
                 ("CLI longest step without a new progress line s (max)", f"{c['longest_silence_s']['max']}", "",
                  "")]
    if "web" in res:
        w = res["web"]
        rows += [("page open 512x512x300 s (press Open -> CT drawn)", f"{w['open_s']}", "<= 10", _mark(w["open_s"], 10.0)),
                 ("click -> overlay drawn ms p50 / p95 (%d clicks; script clock)" % w["click_ms_script"]["n"],
                  f"{w['click_ms_script']['p50']} / {w['click_ms_script']['p95']}", "p50 <= 1000",
                  _mark(w["click_ms_script"]["p50"], 1000)),
                 ("  same, page clock (pointerup -> drawn) ms p50 / p95", f"{w['click_ms']['p50']} / {w['click_ms']['p95']}", "", ""),
                 ("  server time per click ms p50 / p95", f"{w['server_ms']['p50']} / {w['server_ms']['p95']}", "", ""),
                 ("  page: click -> server's answer ms p50 (of which before sending)",
                  f"{w['request_ms']['p50']} ({w['queue_ms']['p50']})", "", ""),
                 ("  page: box fetch + overlay update + draw ms p50", f"{w['apply_ms']['p50']}", "", ""),
                 ("  markers shown after the clicks", f"{w.get('markers')}", "", "")]
    if "server" in res:
        s = res["server"]
        if "skipped" in s:
            rows.append(("server 8 users", s["skipped"], "", ""))
        else:
            lat, o = s["latency_ms"], s["open_s"]
            rows += [(f"server {s['users']} users x {s['duration_s']:g} s: errors", str(s["errors"]), "0", _mark(s["errors"], 0)),
                     ("  click + overlay ms p50 / p95", f"{lat['p50']} / {lat['p95']}", "<= 1000 / 3000",
                      "yes" if lat["p50"] is not None and lat["p50"] <= 1000 and lat["p95"] <= 3000 else "NO"),
                     ("  session open s max", f"{o['max']}", "<= 5", _mark(o["max"], 5.0)),
                     ("  server RSS peak MiB", f"{s['server_rss_mb']['peak']}", "<= 4096", _mark(s["server_rss_mb"]["peak"], 4096))]
    return rows


def print_table(res: dict) -> None:
    rows = table(res)
    w = max(len(r[0]) for r in rows)
    print(f"\n{'measure':<{w}}  {'value':>22}  {'target':>14}  met")
    for name, value, target, ok in rows:
        print(f"{name:<{w}}  {value:>22}  {target:>14}  {ok}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", choices=["cli", "web", "server"], action="append", help="run only these parts (repeatable)")
    p.add_argument("--repeat", type=int, default=3, help="CLI runs (default 3; the median is reported)")
    p.add_argument("--clicks", type=int, default=12, help="clicks on the page (default 12)")
    p.add_argument("--view", default=None, help="page view to use (multi, axial, ...; default: the page's default)")
    p.add_argument("--users", type=int, default=8)
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--model", default=None, help="model for CLI and page (default: the bundled one)")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the page's server")
    p.add_argument("--timeout", type=float, default=300.0, help="browser wait limit, s")
    p.add_argument("--json", type=Path, default=HERE / "results" / "e2e_latency.json")
    p.add_argument("--label", default="", help="free text stored in the JSON (conditions)")
    a = p.parse_args()
    parts = a.only or ["cli", "web", "server"]
    res: dict = {"machine": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version(),
                 "label": a.label, "load_avg_before": list(os.getloadavg()), "targets": TARGETS,
                 "command": " ".join(["python", "benchmarks/e2e_latency.py", *sys.argv[1:]])}
    if "cli" in parts:
        print("CLI: ctsam3d segment, 512 x 512 x 133", flush=True)
        res["cli"] = run_cli(build((512, 512, 133)), a.repeat, a.model)
    if "web" in parts:
        print("web page: headless Chromium, software WebGL, 512 x 512 x 300", flush=True)
        res["web"] = run_web(build((512, 512, 300)), a.clicks, a.model, a.threads, a.view, a.timeout)
    if "server" in parts:
        print(f"server: {a.users} users x {a.seconds:g} s, 512 x 512 x 300", flush=True)
        res["server"] = run_server(build((512, 512, 300)), a.users, a.seconds)
    res["load_avg_after"] = list(os.getloadavg())
    print_table(res)
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(res, indent=1) + "\n")
    print(f"\nwrote {a.json}")


if __name__ == "__main__":
    main()
