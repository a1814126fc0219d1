"""Load test of the web server: N simulated users at once on a full-size CT, on loopback.

By default it uses a **512 x 512 x 300** CT built from the shared data by
``benchmarks/fullsize_ct.py`` (the TotalSegmentator example CT, 122 x 101 x 112 at 3 mm,
resampled to 0.715 mm in-plane and 300 slices of 1.12 mm, with CT-like noise; cached in
``~/.cache/ctsam3d/bench``), starts ``ctsam3d serve`` on it in a subprocess with the
default settings (the default model, cross-patch expansion on), and runs N user threads
that all start at the same moment. Each user does what the page does:

1. **open**: ``POST /api/sessions`` on the image, then download the page's display volume
   (``/api/sessions/<id>/view``: full resolution, as a page with GPU rendering loads it;
   ``--display-voxels N``: at most N voxels, what a software-rendered page loads, 10000000).
   "open" is the time until the session exists, "open + display volume" until the viewer has it;
2. **click** for ``seconds`` after its own open, back to back (no think time unless ``--think``):
   ``POST .../clicks`` with a RAS position, then ``GET labels.raw`` for the changed box
   (latency = both, as the page sees it). Every 6 clicks the user starts a new object at a
   random point inside the body (HU > -300); the object's later clicks lie within 12 mm of
   its first one (a user refines the structure they started), about a third of them negative.

Reports open times (each user), click latency p50/p95, the server's own time per click, errors
(target 0), the server's resident memory (idle, peak = ``VmHWM``, end) and what the session
folders hold on disk, as a table and JSON (``benchmarks/results/server_load.json``).

    python benchmarks/server_load.py                     # 8 users, 60 s, 512x512x300, defaults
    python benchmarks/server_load.py --ct my.nii.gz --users 4 --duration 30 --json out.json
    python benchmarks/server_load.py --small             # the bundled 128^3 example CT

From Python (``benchmarks/e2e_latency.py`` does this)::

    from server_load import full_size_ct, run_load
    result = run_load(full_size_ct(), users=8, seconds=60)   # the dict written as JSON
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
FULL_SIZE = (512, 512, 300)  # (i, j, k)
FULL_RES = 2**31 - 1  # the page's max_voxels for full resolution


def _default_model_name() -> str:
    """The model ``ctsam3d serve`` uses without ``--model`` (registry; no torch import)."""
    from ctsam3d.hub.registry import default_model

    entry = default_model()
    return f"default: {entry.name}" if entry is not None else "default: none"

def full_size_ct(size=FULL_SIZE) -> Path:
    """The full-size CT of the issue-20 benchmarks (``benchmarks/fullsize_ct.py``, shared with
    ``e2e_latency.py``): the TotalSegmentator example CT resampled to ``size`` (i, j, k) with
    square 0.715 mm pixels over its larger in-plane extent, ``size[2]`` slices over its 336 mm
    (1.12 mm for 300), CT-like noise (sigma 12 HU, fixed seed) so it compresses like a real scan;
    built once and cached (``$CTSAM3D_BENCH_CACHE``, default ``~/.cache/ctsam3d/bench``)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from fullsize_ct import build

    return Path(build(tuple(size)).ct)


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident memory of a process from /proc (Linux), MiB; ``VmHWM`` is its peak."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return float("nan")
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def disk_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20 if path.exists() else 0.0


class Points:
    """Click positions (RAS mm): random body voxels (HU > -300) and points near a given voxel."""

    def __init__(self, ct_path: Path, seed: int):
        img = sitk.ReadImage(str(ct_path))
        arr = sitk.GetArrayViewFromImage(img)
        step = max(1, int(round(np.prod(arr.shape) ** (1 / 3) / 128)))  # a coarse sample is enough
        self.zyx = np.argwhere(arr[::step, ::step, ::step] > -300) * step
        self.img = img
        self.arr = arr
        self.rng = np.random.default_rng(seed)

    def _ras(self, zyx) -> list[float]:
        lps = self.img.TransformIndexToPhysicalPoint([int(zyx[2]), int(zyx[1]), int(zyx[0])])
        return [-lps[0], -lps[1], lps[2]]

    def body(self) -> np.ndarray:
        return self.zyx[self.rng.integers(0, len(self.zyx))]

    def near(self, zyx, mm: float) -> np.ndarray:
        sp = np.asarray(self.img.GetSpacing())[::-1]
        for _ in range(20):
            cand = np.round(np.asarray(zyx) + self.rng.uniform(-mm, mm, 3) / sp).astype(int)
            cand = np.clip(cand, 0, np.asarray(self.arr.shape) - 1)
            if self.arr[tuple(cand)] > -300:
                return cand
        return np.asarray(zyx)


class User(threading.Thread):
    def __init__(self, n: int, url: str, image_id: str, points: Points, start: threading.Event, seconds: float,
                 think_s: float, display_voxels: int | None = None):
        super().__init__(daemon=True)
        self.display_voxels = display_voxels
        self.n, self.url, self.image_id, self.points, self.start_evt = n, url, image_id, points, start
        self.seconds, self.think_s = seconds, think_s
        self.open_s: float | None = None
        self.open_image_s: float | None = None
        self.latency_ms: list[float] = []
        self.server_ms: list[float] = []
        self.stages: list[dict] = []
        self.errors: list[str] = []

    def run(self) -> None:
        rng = np.random.default_rng(1000 + self.n)
        try:
            with httpx.Client(base_url=self.url, timeout=300.0) as c:
                self.start_evt.wait()
                t0 = time.perf_counter()
                sid = c.post("/api/sessions", json={"image": self.image_id}).raise_for_status().json()["session_id"]
                self.open_s = time.perf_counter() - t0
                # as the page: its display volume, full resolution (GPU page) or at most N voxels
                r = c.get(f"/api/sessions/{sid}/view", params={"max_voxels": self.display_voxels or FULL_RES})
                size = len(r.raise_for_status().content)
                self.open_image_s = time.perf_counter() - t0
                if size < 1000:
                    self.errors.append(f"display volume: {size} bytes")
                oid, clicks_in_object, k, anchor = None, 0, 0, None
                deadline = time.monotonic() + self.seconds  # each user clicks for `seconds` after its open
                while time.monotonic() < deadline:
                    if oid is None or clicks_in_object == 6:
                        oid = c.post(f"/api/sessions/{sid}/objects", json={"name": f"o{k}"}).raise_for_status().json()["id"]
                        clicks_in_object = 0
                        anchor = self.points.body()
                    positive = clicks_in_object == 0 or rng.random() > 0.33
                    zyx = anchor if clicks_in_object == 0 else self.points.near(anchor, 12.0)
                    t0 = time.perf_counter()
                    r = c.post(f"/api/sessions/{sid}/objects/{oid}/clicks",
                               json={"ras": self.points._ras(zyx), "positive": bool(positive)})
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
                    self.stages.append(change.get("stages_ms", {}))
                    if self.think_s > 0:
                        time.sleep(self.think_s)
        except Exception as exc:  # a crashed user is an error, reported with the rest
            self.errors.append(f"{type(exc).__name__}: {exc}")


def pct(values) -> dict:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    if v.size == 0:
        return {"p50": None, "p95": None, "max": None, "n": 0}
    return {"p50": round(float(np.percentile(v, 50)), 2), "p95": round(float(np.percentile(v, 95)), 2),
            "max": round(float(v.max()), 2), "n": int(v.size)}


def run_load(ct_path: Path | str, users: int = 8, seconds: float = 60.0, *, model: str | None = None,
             device: str = "cpu", threads: int = 2, expansion: bool = True, max_concurrent: int | None = None,
             think_s: float = 0.0, display_voxels: int | None = None, extra_args: list[str] | None = None,
             label: str = "", verbose: bool = True) -> dict:
    """Run the load test and return its result (the JSON document; see the module docstring).

    Args:
        ct_path: CT file offered to the users (copied into a temporary ``--data`` folder).
        users: simulated users, all starting at once; seconds: clicking time after the opens.
        model, device, expansion, max_concurrent: ``ctsam3d serve`` settings (None / True: its defaults).
        threads: torch CPU threads of the server process (``OMP_NUM_THREADS``).
        think_s: pause of each user after each click (0: back to back).
        display_voxels: open with the page's display volume of at most this many voxels
            (``view?max_voxels=``) instead of full resolution.
        extra_args: more ``ctsam3d serve`` arguments.
    """
    from ctsam3d.server.background import free_port

    ct_path = Path(ct_path)
    work = Path(tempfile.mkdtemp(prefix="ctsam3d-load-"))
    (work / "data").mkdir()
    image_id = "ct" + "".join(ct_path.suffixes[-2:]) if ct_path.name.endswith(".nii.gz") else "ct" + ct_path.suffix
    shutil.copy(ct_path, work / "data" / image_id)
    port = free_port()
    cmd = [sys.executable, "-m", "ctsam3d.cli.main", "serve", "-q", "--port", str(port), "--data", str(work / "data"),
           "--state-dir", str(work / "state"), "-d", device]
    cmd += ["--max-concurrent", str(max_concurrent)] if max_concurrent else []
    cmd += ["--model", model] if model else []
    cmd += [] if expansion else ["--no-expansion"]
    cmd += list(extra_args or [])
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONWARNINGS="ignore")
    log_path = Path(tempfile.mkstemp(prefix="ctsam3d-load-server-", suffix=".log")[1])
    log_file = open(log_path, "wb")
    server = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log_file)
    url = f"http://127.0.0.1:{port}"
    points = Points(ct_path, seed=0)
    try:
        t_start = time.monotonic()
        while True:
            try:
                if httpx.get(url + "/info/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() - t_start > 180:
                raise SystemExit(f"server did not start: {log_path.read_text(errors='replace')[-2000:]}")
            time.sleep(0.25)
        rss_idle = rss_mb(server.pid)
        peak = [rss_idle]
        stop = threading.Event()

        def watch():
            while not stop.wait(0.5) and server.poll() is None:
                peak.append(rss_mb(server.pid))

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        go = threading.Event()
        pool = [User(n, url, image_id, points, go, seconds, think_s, display_voxels) for n in range(users)]
        for u in pool:
            u.start()
        t0 = time.monotonic()
        go.set()
        for u in pool:
            u.join(seconds + 600)
        wall = time.monotonic() - t0
        stop.set()
        try:
            healthy = httpx.get(url + "/info/", timeout=30).status_code == 200
        except httpx.HTTPError:
            healthy = False
        exit_code = server.poll()
        hwm = rss_mb(server.pid, "VmHWM") if exit_code is None else float("nan")
        rss_end = rss_mb(server.pid) if exit_code is None else float("nan")
        state_mb = disk_mb(work / "state")
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(work, ignore_errors=True)
        log_file.close()
    server_log = log_path.read_text(errors="replace")[-3000:]
    log_path.unlink(missing_ok=True)
    if exit_code is not None:
        print(f"server exited during the run with code {exit_code}; its log ends:\n{server_log}", file=sys.stderr)

    latency = [v for u in pool for v in u.latency_ms]
    server_ms = [v for u in pool for v in u.server_ms]
    errors = [e for u in pool for e in u.errors]
    stage_names = sorted({k for u in pool for st in u.stages for k in st})
    stages = {k: pct([st.get(k, 0.0) for u in pool for st in u.stages]) for k in stage_names}
    result = {
        "ct": {"name": ct_path.name, "size_ijk": list(points.img.GetSize()),
               "spacing_mm": [round(s, 4) for s in points.img.GetSpacing()]},
        "users": users, "duration_s": seconds, "wall_s": round(wall, 1), "think_s": think_s,
        "opened_with": f"view?max_voxels={display_voxels}" if display_voxels else "view (full resolution)",
        "model": model or _default_model_name(), "device": device, "threads": threads, "expansion": expansion,
        "max_concurrent": max_concurrent or "default", "extra_args": list(extra_args or []),
        "open_s": pct([u.open_s for u in pool]), "open_image_s": pct([u.open_image_s for u in pool]),
        "open_s_each": [None if u.open_s is None else round(u.open_s, 2) for u in pool],
        "clicks": len(latency), "clicks_per_s": round(len(latency) / seconds, 2),
        "latency_ms": pct(latency), "server_ms": pct(server_ms), "server_stages_ms": stages,
        "per_user_clicks": [len(u.latency_ms) for u in pool],
        "errors": len(errors), "error_samples": errors[:5], "healthy_after": healthy, "server_exit": exit_code,
        "server_rss_mb": {"idle": round(rss_idle, 1), "peak": round(float(np.nanmax(peak + [hwm])), 1), "end": round(rss_end, 1)},
        "state_dir_mb": round(state_mb, 1),
        "machine": platform.platform(), "cpus": os.cpu_count(), "load_avg_after": list(os.getloadavg()),
        "label": label,
    }
    if verbose:
        print_table(result)
    return result


def print_table(result: dict) -> None:
    ct = result["ct"]
    o, oi, lat, srv = result["open_s"], result["open_image_s"], result["latency_ms"], result["server_ms"]
    rows = [
        ("CT (i x j x k)", "x".join(map(str, ct["size_ijk"]))),
        ("users x seconds (think s)", f"{result['users']} x {result['duration_s']:g} ({result['think_s']:g})"),
        ("open p50 / max s", f"{o['p50']} / {o['max']}"),
        ("open + display volume p50 / max s", f"{oi['p50']} / {oi['max']}"),
        ("clicks (total) / per second", f"{result['clicks']} / {result['clicks_per_s']:.2f}"),
        ("click + overlay p50 / p95 ms", f"{lat['p50']} / {lat['p95']}"),
        ("server time per click p50 / p95 ms", f"{srv['p50']} / {srv['p95']}"),
        *((f"  {k} p50 / p95 ms", f"{v['p50']} / {v['p95']}") for k, v in result["server_stages_ms"].items()),
        ("errors", str(result["errors"])),
        ("server RSS idle / peak / end MiB", "{idle} / {peak} / {end}".format(**result["server_rss_mb"])),
        ("state folder after the run MiB", str(result["state_dir_mb"])),
    ]
    print(f"server load: model {result['model']}, device {result['device']}, {result['threads']} threads, "
          f"expansion {'on' if result['expansion'] else 'off'}, max-concurrent {result['max_concurrent']}")
    for k, v in rows:
        print(f"  {k:<40}{v:>24}")
    for e in result["error_samples"]:
        print("  error:", e)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ct", type=Path, default=None, help="CT file (default: the 512x512x300 case built from ../shared)")
    p.add_argument("--small", action="store_true", help="use the bundled 128^3 example CT instead")
    p.add_argument("--users", type=int, default=8)
    p.add_argument("--duration", type=float, default=60.0, help="seconds of clicking (default 60)")
    p.add_argument("--think", type=float, default=0.0, help="seconds each user waits after a click (default 0)")
    p.add_argument("--display-voxels", type=int, default=None, metavar="N",
                   help="open with the page's display volume of at most N voxels (software-rendered page: 10000000) "
                        "instead of the full-resolution image")
    p.add_argument("--model", default=None, help="default: the server's default model ('ctsam3d models')")
    p.add_argument("-d", "--device", default="cpu")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads of the server (OMP_NUM_THREADS)")
    p.add_argument("--no-expansion", action="store_true", help="cross-patch expansion off (default on, as the server)")
    p.add_argument("--max-concurrent", type=int, default=None, help="server: clicks computed at the same time")
    p.add_argument("--serve-arg", action="append", default=[], help="extra 'ctsam3d serve' argument (repeatable)")
    p.add_argument("--label", default="", help="free text stored in the JSON (machine, load, ...)")
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "server_load.json")
    args = p.parse_args()

    if args.small:
        from ctsam3d.examples import example_case

        ct = Path(example_case().ct)
    else:
        ct = args.ct or full_size_ct()
    result = run_load(ct, args.users, args.duration, model=args.model, device=args.device, threads=args.threads,
                      expansion=not args.no_expansion, max_concurrent=args.max_concurrent, think_s=args.think,
                      display_voxels=args.display_voxels,
                      extra_args=args.serve_arg, label=args.label)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0 if not result["errors"] and result["healthy_after"] else 1


if __name__ == "__main__":
    sys.exit(main())
