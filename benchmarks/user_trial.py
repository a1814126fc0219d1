"""A user's trial on a torso CT the model never saw: the CLI and the web page, one click per organ.

The CT is TotalSegmentator's DICOM example (held out from training; `../shared/data`). For each
structure the click is the evaluation protocol's first click, read from the committed held-out
report (`docs/results/wholebody_heldout/report.json`, ``per_case[].clicks``), so the figures can
be set beside the report's Dice@1.

* **CLI**: ``ctsam3d segment -i <the DICOM folder> -o mask.nii.gz --click i,j,k`` as a fresh
  process per structure (default model and settings): wall time of the whole process and Dice of
  the written mask against the label map.
* **Page**: ``ctsam3d serve`` with the CT (as NIfTI) in its data folder, the page in headless
  Chromium with software WebGL (as ``benchmarks/e2e_latency.py``); open the CT, one left click
  per structure in a new object; time from the click until the page reports the overlay drawn,
  and Dice of the object's mask fetched from the server (``/objects/{id}/mask.nii.gz``).

Prints a table and writes JSON (``--json``)::

    python benchmarks/user_trial.py --json benchmarks/results/user_trial_heldout_dicom.json
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
import time
from pathlib import Path

import SimpleITK as sitk
from e2e_latency import CHROMIUM_FLAGS, _browser, _ras, _start_server  # (benchmarks/ is on sys.path)

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data" / "totalseg_examples"
REPORT = HERE.parent / "docs" / "results" / "wholebody_heldout" / "report.json"


def protocol_clicks(structures: list[str]) -> dict[str, tuple[int, int, int]]:
    """ITK index ``(i, j, k)`` of the protocol's first click per structure (the report's records)."""
    rows = json.loads(REPORT.read_text())["per_case"]
    out = {}
    for r in rows:
        if r["case"] == "example_ct_dicom" and r["method"] == "model" and r["structure"] in structures:
            z, y, x, _ = r["clicks"][0]
            out[r["structure"]] = (int(x), int(y), int(z))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--structures", default="spleen,liver,aorta,stomach")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    if not (SHARED / "example_ct_dicom").is_dir():
        raise SystemExit(f"needs {SHARED / 'example_ct_dicom'} (../shared/data)")
    import httpx
    from playwright.sync_api import sync_playwright

    from ctsam3d.anatomy import normalize_name
    from ctsam3d.evaluation.metrics import dice
    from ctsam3d.io import read_label, read_volume

    names = [s.strip() for s in a.structures.split(",") if s.strip()]
    clicks = protocol_clicks(names)
    ct = read_volume(SHARED / "example_ct_dicom")
    labels = sitk.GetArrayFromImage(read_label(SHARED / "example_seg_dicom.nii.gz", reference=ct))
    cmap = json.loads((SHARED / "totalseg_class_map.json").read_text())["total"]
    ids = {normalize_name(v): int(k) for k, v in cmap.items()}
    work = Path(tempfile.mkdtemp(prefix="ctsam3d-trial-"))
    res: dict = {"machine": platform.platform(), "cpus": os.cpu_count(), "ct": "example_ct_dicom (held out)",
                 "command": " ".join(["python", "benchmarks/user_trial.py", *sys.argv[1:]]), "structures": {}}
    try:
        env = dict(os.environ, PYTHONWARNINGS="ignore")
        for name in names:
            out = work / f"{name}.nii.gz"
            i, j, k = clicks[name]
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "ctsam3d.cli.main", "segment", "-q", "-i", str(SHARED / "example_ct_dicom"),
                                   "-o", str(out), "--click", f"{i},{j},{k}"], env=env, capture_output=True, text=True)
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                raise SystemExit(f"ctsam3d segment failed for {name}: {proc.stderr[-1000:]}")
            mask = sitk.GetArrayFromImage(sitk.ReadImage(str(out))) > 0
            res["structures"][name] = {"click_ijk": [i, j, k], "cli_s": round(wall, 2),
                                       "cli_dice": round(dice(mask, labels == ids[name]), 4)}
            print(f"CLI {name}: Dice {res['structures'][name]['cli_dice']:.3f}, {wall:.1f} s", flush=True)

        (work / "data").mkdir()
        sitk.WriteImage(ct, str(work / "data" / "ct.nii.gz"))
        server, url = _start_server(work / "data", work / "state", None, a.threads)
        try:
            with sync_playwright() as p:
                b = p.chromium.launch(executable_path=_browser(), headless=True, args=CHROMIUM_FLAGS)
                page = b.new_page(viewport={"width": 1400, "height": 900})
                page.set_default_timeout(300_000)
                page.goto(url + "/")
                page.wait_for_function("document.body.dataset.ready === '1'")
                page.select_option("#datastore", "ct.nii.gz")
                page.click("#open-btn")
                page.wait_for_function("document.body.dataset.session")
                sid = page.evaluate("() => document.body.dataset.session")
                for n, name in enumerate(names):
                    if n:
                        page.evaluate("() => window.ctsam3d.newObject()")
                    pos = page.evaluate("(ras) => window.ctsam3d.clientPointOfRas(ras, 0)", _ras(ct, clicks[name]))
                    page.evaluate("() => window.ctsam3d.idle()")
                    edits = int(page.evaluate("() => Number(document.body.dataset.edits || 0)"))
                    t0 = time.perf_counter()
                    page.mouse.click(pos[0], pos[1], button="left")
                    page.wait_for_function(f"Number(document.body.dataset.edits || 0) > {edits}", polling=50)
                    ms = (time.perf_counter() - t0) * 1000
                    oid, token = page.evaluate("() => [window.ctsam3d.state.active, window.ctsam3d.state.token]")
                    headers = {"Authorization": f"Bearer {token}"} if token else {}
                    r = httpx.get(f"{url}/api/sessions/{sid}/objects/{oid}/mask.nii.gz", headers=headers, timeout=60)
                    r.raise_for_status()
                    (work / "page.nii.gz").write_bytes(r.content)
                    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(work / "page.nii.gz"))) > 0
                    res["structures"][name].update(page_click_to_overlay_ms=round(ms), page_dice=round(dice(mask, labels == ids[name]), 4))
                    print(f"page {name}: Dice {res['structures'][name]['page_dice']:.3f}, click -> overlay {ms:.0f} ms", flush=True)
                shot = HERE.parent / ".ctsam3d_artifacts" / "user_trial_page.png"  # not committed
                shot.parent.mkdir(exist_ok=True)
                page.screenshot(path=str(shot))
                b.close()
        finally:
            server.terminate()
            server.wait(20)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'structure':14s} {'click (i,j,k)':>16s} {'CLI Dice':>9s} {'CLI s':>6s} {'page Dice':>10s} {'click->overlay ms':>18s}")
    for name, r in res["structures"].items():
        print(f"{name:14s} {str(tuple(r['click_ijk'])):>16s} {r['cli_dice']:9.3f} {r['cli_s']:6.1f} "
              f"{r.get('page_dice', float('nan')):10.3f} {r.get('page_click_to_overlay_ms', 0):18d}")
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(res, indent=1) + "\n")
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
