"""Model cost per preset: parameters, FLOPs, peak memory, CPU latency of encode and per-click decode.

    python benchmarks/model_cost.py [--presets ctsam3d-lite ctsam3d-paper] [--runs 20] [--threads 2]

For each preset (each in a fresh process, so peak memory is its own):

* parameters (count and float32 MB);
* FLOPs of the encoder per patch and of the decoder per click (``torch.utils.flop_counter``,
  convolutions and matmuls; 1 multiply-add = 2 FLOPs);
* peak resident memory of the process after encode + decode (MB);
* latency with ``--threads`` CPU threads, p50 and p95 over ``--runs`` runs, of encode-once and
  of a per-click decode (two clicks and a dense previous mask: a typical later click);
* for ``ctsam3d-paper``, the reference's own per-click decode (``benchmarks/reference_decode.py``,
  same weights, the released code's op order) timed interleaved with ours in the same process,
  the speed-up, and the largest difference between the two outputs (reference-exact mode).

Prints a table and writes ``benchmarks/results/model_cost.json``. Weights are random (latency
and FLOPs do not depend on them).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
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
    prompt = model.render_prompt(pos, neg, prev)

    # FLOPs on the standard (autograd-capable) path, which the counter understands
    with torch.no_grad(), torch.enable_grad():
        with FlopCounterMode(display=False) as fc:
            feats_std = model.encode(image)
        enc_flops = fc.get_total_flops()
        with FlopCounterMode(display=False) as fc:
            model.decode([f.detach() for f in feats_std], prompt)
        dec_flops = fc.get_total_flops()

    model.optimize_for_inference()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with torch.inference_mode():
        feats = model.encode(image)
        model.decode(feats, prompt)
        enc_ms, dec_ms = [], []
        for _ in range(runs):
            t = time.perf_counter()
            model.encode(image)
            enc_ms.append((time.perf_counter() - t) * 1e3)
        ref_ms, out = [], {}
        if preset == "ctsam3d-paper":
            from reference_decode import reference_decode

            ref_model = build_model(cfg).eval()
            ref_model.load_state_dict(model.state_dict())
            feats_c = [f.contiguous() for f in feats]
            with torch.no_grad():
                ref_mask, _ = reference_decode(ref_model, feats_c, prompt)
            ours = torch.sigmoid(model.decode(feats, prompt)[0])
            out["max_abs_diff_vs_reference"] = float((ours - ref_mask).abs().max())
        for _ in range(runs):  # interleaved so both see the same machine load
            if preset == "ctsam3d-paper":
                t = time.perf_counter()
                reference_decode(ref_model, feats_c, prompt)
                ref_ms.append((time.perf_counter() - t) * 1e3)
            t = time.perf_counter()
            model.decode(feats, prompt)
            dec_ms.append((time.perf_counter() - t) * 1e3)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "preset": preset,
        "patch_size": list(size),
        "spacing_mm": cfg.spacing_mm,
        "params": n_params,
        "params_mb_fp32": n_params * 4 / 1e6,
        "encoder_gflops_per_patch": enc_flops / 1e9,
        "decoder_gflops_per_click": dec_flops / 1e9,
        "peak_rss_mb": peak_mb,
        "peak_rss_mb_before_inference": rss0 / 1024,
        "encode_ms_p50": _pct(enc_ms, 0.5),
        "encode_ms_p95": _pct(enc_ms, 0.95),
        "decode_ms_p50": _pct(dec_ms, 0.5),
        "decode_ms_p95": _pct(dec_ms, 0.95),
        **out,
    }
    if ref_ms:
        result["reference_decode_ms_p50"] = _pct(ref_ms, 0.5)
        result["reference_decode_ms_p95"] = _pct(ref_ms, 0.95)
        result["decode_speedup_p50"] = result["reference_decode_ms_p50"] / result["decode_ms_p50"]
        result["decode_speedup_per_pair_median"] = _pct([r / d for r, d in zip(ref_ms, dec_ms)], 0.5)
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
        res = q.get()
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
        if "reference_decode_ms_p50" in r:
            print(f"{'':15} reference decode p50/p95 {r['reference_decode_ms_p50']:.0f}/{r['reference_decode_ms_p95']:.0f} ms; "
                  f"speed-up {r['decode_speedup_p50']:.2f}x (per-pair median {r['decode_speedup_per_pair_median']:.2f}x); "
                  f"max |ours - reference| = {r['max_abs_diff_vs_reference']:.1e}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "command": " ".join(["python", "benchmarks/model_cost.py",
                                                                         *(argv or sys.argv[1:])]),
                               "results": results}, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
