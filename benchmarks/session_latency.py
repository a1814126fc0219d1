"""Interactive-session latency, cross-patch expansion and memory (issue 5's figures).

Measures, on one device and thread count:

* **first click**: crop + encode + decode of a new patch (expansion off), p50/p95;
* **further click**: a click inside an already encoded patch (decoder only), p50/p95;
* **aorta**: ``../shared/data/totalseg_examples/aorta_crop`` (about 23 cm long) from one click
  at its centre with cross-patch expansion, total time p50/p95, and Dice against the
  TotalSegmentator label with vs without expansion (agreement with TotalSegmentator, not
  manual ground truth);
* **memory**: peak resident set size of a session on a synthetic 512 x 512 x 1000 int16 CT
  (first click, further click, a far click, result()), measured in a fresh subprocess.

Prints a table and writes JSON (``--json``). Latency figures of an untrained model
(``--model ctsam3d-lite``) are valid as latency only; its Dice figures mean nothing.

    python benchmarks/session_latency.py                       # the default model (or lite if none)
    python benchmarks/session_latency.py --model ctsam3d-lite -d cuda --threads 2
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "totalseg_examples" / "aorta_crop"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _pct(values) -> dict:
    v = np.asarray(values, dtype=float)
    return {"p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95)), "n": int(v.size)}


def _load(spec, device):
    from ctsam3d.modeling import load_model
    from ctsam3d.modeling.checkpoint import BUNDLED_DIR

    if spec is None and not (BUNDLED_DIR / "model.safetensors").is_file():
        spec = "ctsam3d-lite"
        print("no bundled weights: using the untrained ctsam3d-lite preset (latency only)", file=sys.stderr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_model(spec, device=device)
    return model, spec or model.model_name


def _sync(device):
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def _dice(a, b) -> float:
    s = int(a.sum()) + int(b.sum())
    return 1.0 if s == 0 else 2.0 * int((a & b).sum()) / s


def bench_clicks(model, ct, centre_ijk, repeats: int, further: int, rng) -> dict:
    """First-click and further-click latencies (expansion off), ms."""
    from ctsam3d.inference.session import Session

    size = np.asarray(ct.GetSize())
    spacing = np.asarray(ct.GetSpacing())
    half = 30.0 / spacing  # +-30 mm around the centre: first clicks land on different patches
    firsts, furthers = [], []
    for r in range(repeats + 1):  # the first round warms up (kernels, allocations)
        s = Session(model, expansion=False)
        s.set_image(ct)
        p = np.clip(np.round(centre_ijk + rng.uniform(-half, half)), 0, size - 1).astype(int)
        rec = s.add_click(tuple(int(v) for v in p))
        if r:
            firsts.append(rec.timing_ms["total"])
        for _ in range(further):
            q = np.clip(p + np.round(rng.uniform(-8, 8, 3) / spacing * spacing.min()), 0, size - 1).astype(int)
            rec = s.add_click(tuple(int(v) for v in q), positive=bool(rng.random() < 0.7))
            assert rec.patches_encoded == 0
            if r:
                furthers.append(rec.timing_ms["total"])
    return {"first_click_ms": _pct(firsts), "further_click_ms": _pct(furthers)}


def bench_aorta(model, repeats: int, folder: Path) -> dict | None:
    """Whole aorta from one click, with and without expansion."""
    import SimpleITK as sitk

    from ctsam3d.clicks import first_click
    from ctsam3d.inference.session import Session
    from ctsam3d.io import read_label, read_volume

    if not (folder / "ct_cropped.nii.gz").is_file():
        print(f"skipping the aorta: {folder} not present", file=sys.stderr)
        return None
    ct = read_volume(folder / "ct_cropped.nii.gz")
    label = sitk.GetArrayFromImage(read_label(folder / "aorta.nii.gz", reference=ct)) > 0
    zyx = first_click(label, spacing_zyx=ct.GetSpacing()[::-1])
    ijk = tuple(int(v) for v in zyx[::-1])
    out = {"click_ijk": ijk, "aorta_length_mm": float(np.ptp(np.nonzero(label)[0]) * ct.GetSpacing()[2])}
    for name, kw in (("with_expansion", {}), ("without_expansion", {"expansion": False})):
        times, dices, recs = [], [], []
        for _ in range(repeats):
            s = Session(model, **kw)
            s.set_image(ct)
            t0 = time.perf_counter()
            rec = s.add_click(ijk)
            mask = sitk.GetArrayFromImage(s.result()) > 0
            times.append((time.perf_counter() - t0) * 1000.0)
            dices.append(_dice(mask, label))
            recs.append(rec)
        out[name] = {
            "total_ms": _pct(times),
            "dice_vs_totalsegmentator": float(np.mean(dices)),
            "patches_decoded": recs[-1].patches_decoded,
            "cpp_evaluations": recs[-1].cpp_evaluations,
            "expansion_stop": recs[-1].expansion_stop,
        }
    return out


def rss_child(args) -> None:
    """Run in a subprocess: a session on a synthetic large CT; print peak RSS as JSON."""
    import SimpleITK as sitk
    import torch

    torch.set_num_threads(args.threads)
    shape = tuple(int(v) for v in args.rss_shape.split(","))
    base = _peak_rss_mb()
    model, _ = _load(args.model, args.device)
    after_model = _peak_rss_mb()
    ct = sitk.Image(list(shape), sitk.sitkInt16)  # (i, j, k), 0 HU (water) everywhere
    ct.SetSpacing((0.8, 0.8, 1.0))
    ct.SetOrigin((-204.8, -204.8, -500.0))
    after_image = _peak_rss_mb()
    from ctsam3d.inference.session import Session

    s = Session(model)
    s.set_image(ct)
    c = np.asarray(shape) // 2
    t0 = time.perf_counter()
    s.add_click(tuple(int(v) for v in c))
    s.add_click(tuple(int(v) for v in c + (5, 5, 5)), positive=False)
    s.add_click((int(c[0]), int(c[1]), int(shape[2] // 8)))
    mask = s.result()
    elapsed = time.perf_counter() - t0
    assert mask.GetSize() == ct.GetSize()
    print(json.dumps({
        "shape_ijk": shape,
        "rss_start_mb": base,
        "rss_after_model_mb": after_model,
        "rss_after_image_mb": after_image,
        "peak_rss_mb": _peak_rss_mb(),
        "session_s": elapsed,
        "n_patches": len(s._objects[s.current_object].patches),
    }))


def bench_rss(args) -> dict:
    cmd = [sys.executable, __file__, "--rss-child", "--threads", str(args.threads), "-d", args.device,
           "--rss-shape", args.rss_shape] + (["--model", args.model] if args.model else [])
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"RSS child failed:\n{res.stderr[-2000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="model name, directory or preset (default: the default model, else ctsam3d-lite)")
    p.add_argument("-d", "--device", default="cpu")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--repeats", type=int, default=5, help="sessions per latency figure (default 5)")
    p.add_argument("--further", type=int, default=6, help="further clicks per session (default 6)")
    p.add_argument("--aorta-repeats", type=int, default=3)
    p.add_argument("--aorta-dir", type=Path, default=SHARED, help="folder with ct_cropped.nii.gz and aorta.nii.gz")
    p.add_argument("--rss-shape", default="512,512,1000", help="synthetic CT size i,j,k for the memory figure")
    p.add_argument("--skip-rss", action="store_true")
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "session_latency.json")
    p.add_argument("--rss-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if args.rss_child:
        rss_child(args)
        return 0
    from ctsam3d.examples import example_case
    from ctsam3d.io import read_volume

    model, model_name = _load(args.model, args.device)
    trained = bool(getattr(model.config, "training", None))
    rng = np.random.default_rng(0)
    aorta_ct = args.aorta_dir / "ct_cropped.nii.gz"
    ct_path = aorta_ct if aorta_ct.is_file() else example_case().ct
    ct = read_volume(ct_path)
    centre = (np.asarray(ct.GetSize()) - 1) / 2.0
    result = {
        "model": model_name,
        "preset": model.config.preset,
        "trained": trained,
        "device": args.device,
        "device_name": torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or platform.machine(),
        "threads": args.threads,
        "torch": torch.__version__,
        "latency_image": str(ct_path.name),
    }
    result.update(bench_clicks(model, ct, centre, args.repeats, args.further, rng))
    result["aorta"] = bench_aorta(model, args.aorta_repeats, args.aorta_dir)
    result["memory"] = None if args.skip_rss else bench_rss(args)

    f = lambda d: f"{d['p50']:8.0f} {d['p95']:8.0f}"  # noqa: E731
    lines = [f"session latency: model {model_name} ({model.config.preset}{'' if trained else ', UNTRAINED: latency only'}), "
             f"device {args.device}, {args.threads} threads", f"{'figure':<44}{'p50':>8} {'p95':>8}"]
    lines.append(f"{'first click (crop+encode+decode), ms':<44}{f(result['first_click_ms'])}")
    lines.append(f"{'further click (decoder only), ms':<44}{f(result['further_click_ms'])}")
    a = result["aorta"]
    if a:
        for k in ("with_expansion", "without_expansion"):
            r = a[k]
            lines.append(f"{'aorta 1 click ' + k.replace('_', ' ') + ', ms':<44}{f(r['total_ms'])}"
                         f"   Dice vs TotalSeg {r['dice_vs_totalsegmentator']:.3f}, {r['patches_decoded']} patches, stop {r['expansion_stop']}")
    m = result["memory"]
    if m:
        lines.append(f"{'peak RSS, ' + 'x'.join(map(str, m['shape_ijk'])) + ' session, MB':<44}{m['peak_rss_mb']:8.0f}"
                     f"          (model {m['rss_after_model_mb']:.0f}, +image {m['rss_after_image_mb']:.0f})")
    print("\n".join(lines))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
