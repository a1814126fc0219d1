"""Load test of the web server: N simulated users clicking at once on loopback.

Starts ``ctsam3d serve`` in a subprocess on a free loopback port (the bundled example CT as
its data folder), then N user threads each open their own session and click for a fixed time,
as the page does: ``POST .../clicks`` with a RAS position, then ``GET labels.raw`` for the
changed box. Every 6 clicks a user starts a new object; about a third of the later clicks
are negative. The run is bounded: users stop at the deadline (requests time out after 120 s).

Reports clicks per second, p50/p95 latency (click + overlay fetch, and the server's own time
per click), errors (target 0) and the server's resident memory (peak and at the end), as a
table and JSON.

    python benchmarks/server_load.py                               # 8 users, 60 s, CPU
    python benchmarks/server_load.py --model ctsam3d-lite -d cuda --json out.json
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

import httpx
import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident memory of a process from /proc (Linux), MiB; ``VmHWM`` is its peak."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def body_points_ras(ct_path: Path, n: int, seed: int) -> list[list[float]]:
    """``n`` random world positions (RAS mm) of voxels inside the body (HU > -300)."""
    img = sitk.ReadImage(str(ct_path))
    zyx = np.argwhere(sitk.GetArrayFromImage(img) > -300)
    rng = np.random.default_rng(seed)
    out = []
    for z, y, x in zyx[rng.integers(0, len(zyx), n)]:
        lps = img.TransformIndexToPhysicalPoint((int(x), int(y), int(z)))
        out.append([-lps[0], -lps[1], lps[2]])
    return out


class User(threading.Thread):
    def __init__(self, n: int, url: str, points: list[list[float]], deadline: float):
        super().__init__(daemon=True)
        self.n, self.url, self.points, self.deadline = n, url, points, deadline
        self.latency_ms: list[float] = []
        self.server_ms: list[float] = []
        self.errors: list[str] = []

    def run(self) -> None:
        rng = np.random.default_rng(self.n)
        try:
            with httpx.Client(base_url=self.url, timeout=120.0) as c:
                sid = c.post("/api/sessions", json={"image": "example_ct.nii.gz"}).raise_for_status().json()["session_id"]
                oid, clicks_in_object, k = None, 0, 0
                while time.monotonic() < self.deadline:
                    if oid is None or clicks_in_object == 6:
                        oid = c.post(f"/api/sessions/{sid}/objects", json={"name": f"o{k}"}).raise_for_status().json()["id"]
                        clicks_in_object = 0
                    positive = clicks_in_object == 0 or rng.random() > 0.33
                    t0 = time.perf_counter()
                    r = c.post(f"/api/sessions/{sid}/objects/{oid}/clicks",
                               json={"ras": self.points[k % len(self.points)], "positive": bool(positive)})
                    k += 1
                    clicks_in_object += 1
                    if r.status_code != 200:
                        self.errors.append(f"click {r.status_code}: {r.text[:200]}")
                        continue
                    change = r.json()
                    if change["box"]:
                        (z0, y0, x0), (z1, y1, x1) = change["box"]
                        raw = c.get(f"/api/sessions/{sid}/labels.raw", params={"box": f"{z0},{y0},{x0},{z1},{y1},{x1}"})
                        if raw.status_code != 200 or len(raw.content) != (z1 - z0) * (y1 - y0) * (x1 - x0):
                            self.errors.append(f"labels.raw {raw.status_code}")
                            continue
                    self.latency_ms.append((time.perf_counter() - t0) * 1e3)
                    self.server_ms.append(change["server_ms"])
        except Exception as exc:  # a crashed user is an error, reported with the rest
            self.errors.append(f"{type(exc).__name__}: {exc}")


def pct(values) -> dict:
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        return {"p50": None, "p95": None, "n": 0}
    return {"p50": round(float(np.percentile(v, 50)), 1), "p95": round(float(np.percentile(v, 95)), 1), "n": int(v.size)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--users", type=int, default=8)
    p.add_argument("--duration", type=float, default=60.0, help="seconds of clicking (default 60)")
    p.add_argument("--model", default=None, help="default: bundled starter, or the untrained ctsam3d-lite when absent")
    p.add_argument("-d", "--device", default="cpu")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads of the server (OMP_NUM_THREADS)")
    p.add_argument("--expansion", action="store_true", help="cross-patch expansion on (default off: untrained models run away)")
    p.add_argument("--max-concurrent", type=int, default=1, help="server: clicks computed at the same time")
    p.add_argument("--label", default="", help="free text stored in the JSON (machine, pinning, ...)")
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "server_load.json")
    args = p.parse_args()

    from ctsam3d.examples import example_case
    from ctsam3d.modeling.checkpoint import BUNDLED_DIR, WEIGHTS_FILE
    from ctsam3d.server.background import free_port

    model = args.model
    if model is None and not (BUNDLED_DIR / WEIGHTS_FILE).is_file():
        model = "ctsam3d-lite"
        print("no bundled starter weights: using the untrained ctsam3d-lite preset (latency only)", file=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="ctsam3d-load-"))
    (work / "data").mkdir()
    shutil.copy(example_case().ct, work / "data" / "example_ct.nii.gz")
    port = free_port()
    cmd = [sys.executable, "-m", "ctsam3d.cli.main", "serve", "-q", "--port", str(port), "--data", str(work / "data"),
           "--state-dir", str(work / "state"), "-d", args.device, "--max-concurrent", str(args.max_concurrent)]
    cmd += ["--model", model] if model else []
    cmd += [] if args.expansion else ["--no-expansion"]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads), PYTHONWARNINGS="ignore")
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        t_start = time.monotonic()
        while True:
            try:
                if httpx.get(url + "/info/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() - t_start > 180:
                raise SystemExit(f"server did not start: {server.stderr.read().decode()[-2000:]}")
            time.sleep(0.25)
        rss_idle = rss_mb(server.pid)
        peak = [rss_idle]
        stop = threading.Event()

        def watch():
            while not stop.wait(0.5):
                peak.append(rss_mb(server.pid))

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        points = body_points_ras(work / "data" / "example_ct.nii.gz", 500, seed=0)
        deadline = time.monotonic() + args.duration
        users = [User(n, url, points[n * 7:] + points[: n * 7], deadline) for n in range(args.users)]
        t0 = time.monotonic()
        for u in users:
            u.start()
        for u in users:
            u.join(args.duration + 150)
        wall = time.monotonic() - t0
        stop.set()
        healthy = httpx.get(url + "/info/", timeout=10).status_code == 200
        hwm = rss_mb(server.pid, "VmHWM")
        rss_end = rss_mb(server.pid)
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(work, ignore_errors=True)

    latency = [v for u in users for v in u.latency_ms]
    server_ms = [v for u in users for v in u.server_ms]
    errors = [e for u in users for e in u.errors]
    result = {
        "users": args.users, "duration_s": args.duration, "wall_s": round(wall, 1), "model": model or "bundled starter",
        "device": args.device, "threads": args.threads, "expansion": args.expansion, "max_concurrent": args.max_concurrent,
        "clicks": len(latency), "clicks_per_s": round(len(latency) / wall, 2),
        "latency_ms": pct(latency), "server_ms": pct(server_ms),
        "per_user_clicks": [len(u.latency_ms) for u in users],
        "errors": len(errors), "error_samples": errors[:5], "healthy_after": healthy,
        "server_rss_mb": {"idle": round(rss_idle, 1), "peak": round(max(max(peak), hwm), 1), "end": round(rss_end, 1)},
        "machine": platform.platform(), "cpus": os.cpu_count(), "label": args.label,
    }
    rows = [
        ("users x seconds", f"{args.users} x {args.duration:g}"),
        ("clicks (total)", str(result["clicks"])),
        ("clicks per second", f"{result['clicks_per_s']:.2f}"),
        ("click + overlay latency p50 / p95 ms", f"{result['latency_ms']['p50']} / {result['latency_ms']['p95']}"),
        ("server time per click p50 / p95 ms", f"{result['server_ms']['p50']} / {result['server_ms']['p95']}"),
        ("errors", str(result["errors"])),
        ("server RSS idle / peak / end MiB", "{idle} / {peak} / {end}".format(**result["server_rss_mb"])),
    ]
    print(f"server load: model {result['model']}, device {args.device}, {args.threads} threads, "
          f"expansion {'on' if args.expansion else 'off'}, max-concurrent {args.max_concurrent}")
    for k, v in rows:
        print(f"  {k:<40}{v:>22}")
    for e in errors[:5]:
        print("  error:", e)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0 if not errors and healthy else 1


if __name__ == "__main__":
    sys.exit(main())
