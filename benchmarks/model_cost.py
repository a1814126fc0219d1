"""Model cost per preset: parameters, FLOPs, peak memory, CPU latency of encode and per-click decode.

    python benchmarks/model_cost.py [--presets ctsam3d-lite ctsam3d-paper] [--runs 20] [--threads 2]

For each preset (each in a fresh process, so peak memory is its own):

* parameters (count and float32 MB);
* FLOPs of the encoder per patch and of the decoder per click (``torch.utils.flop_counter``,
  convolutions and matmuls; 1 multiply-add = 2 FLOPs);
* peak resident memory of the process after building the model, one encode and one decode (MB);
* latency with ``--threads`` CPU threads, p50 and p95 over ``--runs`` runs, of encode-once and
  of a per-click decode for a *later click* (three clicks, a previous mask that is random,
  non-zero and different in every voxel — the worst case for prompt folding, no session
  produces it; the table's decode column), a *first click* (one click,
  zero previous mask — also every patch that cross-patch expansion opens), and an *organ
  click*: a later click on each organ of the bundled example CT, prompt built as a session
  builds it (:func:`_organ_prompts`), pooled over the organs; and a *large* click: a later
  click on a synthetic organ that fills most of the patch (:func:`_large_organ_prompt`);
* for ``ctsam3d-paper``, the reference's own per-click decode (``benchmarks/reference_decode.py``,
  same weights, the released code's op order) timed interleaved with ours in the same process,
  the speed-up (ratio of the p50s; also of the best runs, and the median of each run's
  back-to-back pair's ratio, which bursts of load on a shared host disturb less), and the
  largest difference between the two outputs (reference-exact mode).

Prints a table and writes ``benchmarks/results/model_cost.json``. Weights are random (latency
and FLOPs do not depend on them).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import queue
import resource
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def _organ_prompts(model, cfg) -> dict:
    """Later-click prompts as a session builds them, one per organ of the bundled example CT.

    Patch of the preset's size and spacing centred on the organ (labels resampled to the
    canonical grid); clicks from the click simulator (:func:`_later_click_prompt`).
    """
    import numpy as np
    import SimpleITK as sitk
    from scipy import ndimage

    from ctsam3d.examples import example_case
    from ctsam3d.geometry.canonical import to_canonical

    case = example_case()
    lab = sitk.GetArrayFromImage(to_canonical(sitk.ReadImage(str(case.labels)), cfg.spacing_mm, is_label=True))
    size = np.asarray(cfg.patch_size)
    prompts = {}
    for value, name in sorted(case.names.items()):
        organ = lab == value
        if not organ.any():
            continue
        lo = np.round(ndimage.center_of_mass(organ)).astype(int) - size // 2
        padded = np.pad(organ, [(int(s), int(s)) for s in size])
        target = padded[tuple(slice(int(a + s), int(a + 2 * s)) for a, s in zip(lo, size))]
        prompts[f"organ:{name}"] = _later_click_prompt(model, target)
    return prompts


def _later_click_prompt(model, target):
    """The prompt of a later click on ``target`` (bool patch array): a first click at its
    centre, a corrective click against a previous mask that is ``target`` shifted by 3 voxels
    along x with soft edges (logit slope 4 per voxel), stored as a session stores it
    (:class:`ctsam3d.inference.sparse_volume.SparseVolume`: probabilities < 1/256 are 0, and
    those above 255/256 — deeper than ~1.4 voxels inside — all the top level)."""
    import numpy as np
    import torch
    from scipy import ndimage

    from ctsam3d.clicks.simulate import first_click, next_click
    from ctsam3d.inference.sparse_volume import SparseVolume

    size = target.shape
    prev_mask = np.roll(target, 3, axis=2)
    logit = np.where(prev_mask, 4 * ndimage.distance_transform_edt(prev_mask),
                     -4 * ndimage.distance_transform_edt(~prev_mask))
    store = SparseVolume()
    store.write((0, 0, 0), 1.0 / (1.0 + np.exp(-logit)))
    prev = store.read((0, 0, 0), tuple(int(s) for s in size))
    c1 = first_click(target)
    c2, positive = next_click(target, prev > 0.5)
    pos, neg = [c1] + ([c2] if positive else []), ([] if positive else [c2])
    return model.render_prompt([pos], [neg], torch.from_numpy(prev)[None, None])


#: the synthetic large organ: ellipsoid semi-axes (z, y, x) in mm (a liver's extent) and how
#: far inside its surface, along x, the patch is centred
LARGE_ORGAN_SEMI_AXES_MM = (80.0, 90.0, 110.0)
LARGE_ORGAN_DEPTH_MM = 30.0


def _large_organ_prompt(model, cfg):
    """A later click on a large organ that fills most of the patch (synthetic ellipsoid, see
    :data:`LARGE_ORGAN_SEMI_AXES_MM`), prompt built as in :func:`_later_click_prompt`."""
    import numpy as np

    size = np.asarray(cfg.patch_size)
    axes = np.asarray(LARGE_ORGAN_SEMI_AXES_MM) / cfg.spacing_mm
    centre = (size - 1) / 2 + np.array([0.0, 0.0, axes[2] - LARGE_ORGAN_DEPTH_MM / cfg.spacing_mm])
    grid = np.indices(tuple(size)).astype(np.float64)
    r2 = sum(((grid[d] - centre[d]) / axes[d]) ** 2 for d in range(3))
    return _later_click_prompt(model, r2 <= 1.0)


def _measure(preset: str, runs: int, threads: int, queue) -> None:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    sys.path.insert(0, str(HERE))
    from ctsam3d.modeling import build_model, get_preset

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    cfg = get_preset(preset)
    if preset == "ctsam3d-paper":
        cfg.reference_exact = True  # how the released weights run
    model = build_model(cfg).eval()
    n_params = sum(p.numel() for p in model.parameters())
    size = tuple(cfg.patch_size)
    g = torch.Generator().manual_seed(1)
    image = torch.rand((1, 1, *size), generator=g)
    prev = torch.sigmoid(4 * torch.randn((1, 1, *size), generator=g))
    c = [s // 2 for s in size]
    pos = [[tuple(c), (c[0] + 6, c[1] - 5, c[2] + 4)]]
    neg = [[(4, 4, 4)]]
    prompts = {
        "later": model.render_prompt(pos, neg, prev),  # random previous mask, non-zero everywhere
        "first": model.render_prompt([pos[0][:1]], [[]], None),  # zero previous mask
    }
    prompt = prompts["later"]
    prompts.update(_organ_prompts(model, cfg))  # later clicks on real organs
    prompts["large"] = _large_organ_prompt(model, cfg)  # a later click on a patch-filling organ

    model.optimize_for_inference()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with torch.inference_mode():
        feats = model.encode(image)
        model.decode(feats, prompt)
    peak_infer = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # before any other work
    with torch.inference_mode():
        enc_ms, dec_ms = [], []
        for _ in range(runs):
            t = time.perf_counter()
            model.encode(image)
            enc_ms.append((time.perf_counter() - t) * 1e3)
        ref_ms: dict[str, list[float]] = {k: [] for k in prompts}
        dec: dict[str, list[float]] = {k: [] for k in prompts}
        out = {}
        if preset == "ctsam3d-paper":
            from reference_decode import reference_decode

            ref_model = build_model(cfg).eval()
            ref_model.load_state_dict(model.state_dict())
            feats_c = [f.contiguous() for f in feats]
            for kind, pr in prompts.items():
                with torch.no_grad():
                    ref_mask, _ = reference_decode(ref_model, feats_c, pr)
                ours = torch.sigmoid(model.decode(feats, pr)[0])
                out[f"max_abs_diff_vs_reference_{kind}"] = float((ours - ref_mask).abs().max())
        for _ in range(runs):  # interleaved so both see the same machine load
            for kind, pr in prompts.items():
                if preset == "ctsam3d-paper":
                    t = time.perf_counter()
                    reference_decode(ref_model, feats_c, pr)
                    ref_ms[kind].append((time.perf_counter() - t) * 1e3)
                t = time.perf_counter()
                model.decode(feats, pr)
                dec[kind].append((time.perf_counter() - t) * 1e3)
    dec_ms = dec["later"]
    # FLOPs on the standard (autograd-capable) path, which the counter understands
    with torch.no_grad(), torch.enable_grad():
        with FlopCounterMode(display=False) as fc:
            feats_std = model.encode(image)
        enc_flops = fc.get_total_flops()
        with FlopCounterMode(display=False) as fc:
            model.decode([f.detach() for f in feats_std], prompt)
        dec_flops = fc.get_total_flops()
    result = {
        "preset": preset,
        "patch_size": list(size),
        "spacing_mm": cfg.spacing_mm,
        "params": n_params,
        "params_mb_fp32": n_params * 4 / 1e6,
        "encoder_gflops_per_patch": enc_flops / 1e9,
        "decoder_gflops_per_click": dec_flops / 1e9,
        "peak_rss_mb": peak_infer / 1024,  # process peak after model build + one encode + decode
        "rss_mb_model_built": rss0 / 1024,
        "encode_ms_p50": _pct(enc_ms, 0.5),
        "encode_ms_p95": _pct(enc_ms, 0.95),
        "decode_ms_p50": _pct(dec_ms, 0.5),
        "decode_ms_p95": _pct(dec_ms, 0.95),
        **out,
    }
    organs = [k for k in prompts if k.startswith("organ:")]
    if organs:
        support = {k: float((prompts[k][0] != 0).any(0).float().mean()) for k in organs}
        result["organ_prompt_support_fraction"] = {k[6:]: v for k, v in support.items()}
        # the pooled organ row: every organ's runs together
        dec["organ"] = [t for k in organs for t in dec[k]]
        if ref_ms[organs[0]]:
            ref_ms["organ"] = [t for k in organs for t in ref_ms[k]]
            out["max_abs_diff_vs_reference_organ"] = max(out[f"max_abs_diff_vs_reference_{k}"] for k in organs)
            result.update(out)
    for kind in dec:
        result[f"decode_{kind}_click_ms_p50"] = _pct(dec[kind], 0.5)
        result[f"decode_{kind}_click_ms_p95"] = _pct(dec[kind], 0.95)
        if ref_ms.get(kind):
            result[f"reference_decode_{kind}_click_ms_p50"] = _pct(ref_ms[kind], 0.5)
            result[f"reference_decode_{kind}_click_ms_p95"] = _pct(ref_ms[kind], 0.95)
            result[f"decode_{kind}_click_speedup_p50"] = (
                result[f"reference_decode_{kind}_click_ms_p50"] / result[f"decode_{kind}_click_ms_p50"]
            )
            # robust to bursts of load on a shared host: the best of the runs, and the median of
            # the ratios of each run's back-to-back pair (reference then ours, same prompt)
            result[f"decode_{kind}_click_speedup_best"] = min(ref_ms[kind]) / min(dec[kind])
            result[f"decode_{kind}_click_speedup_paired_median"] = _pct(
                [r / o for r, o in zip(ref_ms[kind], dec[kind])], 0.5
            )
    queue.put(result)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["ctsam3d-lite", "ctsam3d-paper"])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(HERE / "results" / "model_cost.json"))
    args = ap.parse_args(argv)

    import torch

    machine = {
        "cpu": _cpu_name(),
        "logical_cpus": os.cpu_count(),
        "threads": args.threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average_start": os.getloadavg(),
    }
    results = []
    ctx = mp.get_context("spawn")
    for preset in args.presets:
        q = ctx.Queue()
        p = ctx.Process(target=_measure, args=(preset, args.runs, args.threads, q))
        p.start()
        while True:  # a child that dies (an exception) must not leave us waiting forever
            try:
                res = q.get(timeout=5)
                break
            except queue.Empty:
                if not p.is_alive():
                    raise SystemExit(f"model_cost: measuring {preset} failed (exit code {p.exitcode}); see above")
        p.join()
        results.append(res)
    machine["load_average_end"] = os.getloadavg()

    hdr = f"{'preset':15} {'params':>9} {'MB':>6} {'enc GF':>7} {'dec GF':>7} {'peak MB':>8} " \
          f"{'enc p50/p95 ms':>15} {'dec p50/p95 ms':>15}"
    print(f"machine: {machine['cpu']}, {args.threads} threads, torch {machine['torch']}, "
          f"load avg {machine['load_average_start'][0]:.1f}")
    print(hdr)
    for r in results:
        print(f"{r['preset']:15} {r['params'] / 1e6:8.2f}M {r['params_mb_fp32']:6.1f} "
              f"{r['encoder_gflops_per_patch']:7.2f} {r['decoder_gflops_per_click']:7.2f} {r['peak_rss_mb']:8.0f} "
              f"{r['encode_ms_p50']:7.0f}/{r['encode_ms_p95']:<7.0f} {r['decode_ms_p50']:7.0f}/{r['decode_ms_p95']:<7.0f}")
        for kind in ("first", "later", "organ", "large"):
            if f"decode_{kind}_click_ms_p50" not in r:
                continue
            line = (f"{'':15} {kind} click: decode p50/p95 {r[f'decode_{kind}_click_ms_p50']:.0f}/"
                    f"{r[f'decode_{kind}_click_ms_p95']:.0f} ms")
            if f"reference_decode_{kind}_click_ms_p50" in r:
                line += (f"; reference {r[f'reference_decode_{kind}_click_ms_p50']:.0f}/"
                         f"{r[f'reference_decode_{kind}_click_ms_p95']:.0f} ms; speed-up "
                         f"{r[f'decode_{kind}_click_speedup_p50']:.2f}x (best of runs "
                         f"{r[f'decode_{kind}_click_speedup_best']:.2f}x, paired median "
                         f"{r[f'decode_{kind}_click_speedup_paired_median']:.2f}x); max |ours - reference| = "
                         f"{r[f'max_abs_diff_vs_reference_{kind}']:.1e}")
            print(line)
        for stat in ("p50", "best", "paired_median"):
            per_organ = [(k[len("decode_organ:"):-len(f"_click_speedup_{stat}")], v) for k, v in r.items()
                         if k.startswith("decode_organ:") and k.endswith(f"_click_speedup_{stat}")]
            if per_organ:
                print(f"{'':15} per organ speed-up ({stat}): " + ", ".join(f"{k} {v:.2f}x" for k, v in per_organ))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "command": " ".join(["python", "benchmarks/model_cost.py",
                                                                         *(argv or sys.argv[1:])]),
                               "results": results}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
