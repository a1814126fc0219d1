"""Which Winograd convolution speeds up the paper decoder's 3×3×3 convolutions on CPU?

    python benchmarks/winograd_probe.py [--threads 2] [--runs 7]

Issue 3 asks for the ``ctsam3d-paper`` decoder to be 2x faster than the reference without
changing its outputs beyond float tolerance. Its cost is 3x3x3 convolutions on 32^3 and 16^3
grids with 128-512 channels that oneDNN already runs near this CPU's peak, so only fewer
multiplications help. Timed interleaved in one process, on the decoder's layer shapes and on
smaller ones near the size where the package stops using Winograd
(:data:`ctsam3d.modeling.winograd.MIN_WORK`):

* ``direct``: oneDNN's convolution (``torch.mkldnn_convolution``);
* ``3d``: full F(2x2x2, 3x3x3) with PyTorch tensor ops (64 instead of 216 multiplications per
  8 outputs, transforms as strided adds, the products as one batched matmul; same-padded
  shapes only). Not used: its transforms move 8x the data (below);
* ``z2`` / ``z4``: F(2, 3) / F(4, 3) along z only, the products as oneDNN 1x3x3
  convolutions (:mod:`ctsam3d.modeling.winograd`; the package uses F(4, 3)).

Also each method's largest error against a float64 convolution. Prints a table and writes
``benchmarks/results/winograd_probe.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F


ROOT = Path(__file__).resolve().parents[1]
#: F(2, 3) filter transform (4 x 3)
G = torch.tensor([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=torch.float64)


def filter_transform(w: torch.Tensor) -> torch.Tensor:
    """``(Cout, Cin, 3, 3, 3)`` -> ``(64, Cin, Cout)``, tile positions ordered (x, y, z)."""
    u = torch.einsum("ai,bj,ck,oxijk->cbaxo", G, G, G, w.double())
    return u.reshape(64, w.shape[1], w.shape[0]).float().contiguous()


def _input_transform(s: torch.Tensor, dim: int, tiles: int, out: torch.Tensor) -> torch.Tensor:
    """Bᵀd along ``dim`` for 4-wide tiles at stride 2: d0-d2, d1+d2, d2-d1, d1-d3."""
    d = [s[(slice(None),) * dim + (slice(j, j + 2 * tiles, 2),)] for j in range(4)]
    torch.sub(d[0], d[2], out=out[0])
    torch.add(d[1], d[2], out=out[1])
    torch.sub(d[2], d[1], out=out[2])
    torch.sub(d[1], d[3], out=out[3])
    return out


def winograd_conv3d(x: torch.Tensor, u: torch.Tensor, bias: torch.Tensor, zchunk: int = 4) -> torch.Tensor:
    """'Same' 3x3x3 conv of ``x (B, C, D, H, W)`` with transformed filters ``u`` (see above)."""
    b, c, d, h, w = x.shape
    tz_all, ty, tx = ((s + 1) // 2 for s in (d, h, w))
    co = u.shape[2]
    s = F.pad(x.permute(0, 2, 3, 4, 1), (0, 0, 1, 2 * tx + 1 - w, 1, 2 * ty + 1 - h, 1, 2 * tz_all + 1 - d))
    hp, wp = s.shape[2], s.shape[3]
    out = x.new_empty((b, 2 * tz_all, 2 * ty, 2 * tx, co))
    for z0 in range(0, tz_all, zchunk):
        tz = min(zchunk, tz_all - z0)
        zt = _input_transform(s[:, 2 * z0 : 2 * z0 + 2 * tz + 2], 1, tz, x.new_empty((4, b, tz, hp, wp, c)))
        yt = _input_transform(zt, 3, ty, x.new_empty((4, 4, b, tz, ty, wp, c)))
        xt = _input_transform(yt, 5, tx, x.new_empty((4, 4, 4, b, tz, ty, tx, c)))
        n = b * tz * ty * tx
        m = torch.bmm(xt.view(64, n, c), u).view(4, 4, 4, n, co)
        # Aᵀm along each axis: m0+m1+m2, m1-m2-m3
        a = x.new_empty((2, 4, 4, n, co))
        torch.add(m[0], m[1], out=a[0]).add_(m[2])
        torch.sub(m[1], m[2], out=a[1]).sub_(m[3])
        bb = x.new_empty((2, 2, 4, n, co))
        torch.add(a[:, 0], a[:, 1], out=bb[:, 0]).add_(a[:, 2])
        torch.sub(a[:, 1], a[:, 2], out=bb[:, 1]).sub_(a[:, 3])
        cc = x.new_empty((2, 2, 2, n, co))
        torch.add(bb[:, :, 0], bb[:, :, 1], out=cc[:, :, 0]).add_(bb[:, :, 2])
        torch.sub(bb[:, :, 1], bb[:, :, 2], out=cc[:, :, 1]).sub_(bb[:, :, 3])
        blocks = cc.view(2, 2, 2, b, tz, ty, tx, co).permute(3, 4, 2, 5, 1, 6, 0, 7)
        out[:, 2 * z0 : 2 * (z0 + tz)].view(b, tz, 2, ty, 2, tx, 2, co).copy_(blocks)
    return (out[:, :d, :h, :w] + bias).permute(0, 4, 1, 2, 3)


#: (grid, in channels, out channels, padding): the paper decoder's convs (32³: conv_0/conv_1
#: 128→128 and fused γβ 128→256; 16³: 256→256 and 128→512), then γβ boxes (valid convs) and
#: small convs near the threshold
CASES = [
    ((32, 32, 32), 128, 256, 1), ((32, 32, 32), 128, 128, 1), ((16, 16, 16), 128, 512, 1),
    ((16, 16, 16), 256, 256, 1), ((20, 14, 14), 128, 256, 0), ((12, 12, 12), 128, 256, 0),
    ((10, 10, 10), 128, 256, 0), ((8, 8, 8), 256, 256, 1), ((8, 8, 8), 128, 128, 1), ((32, 32, 32), 64, 64, 1),
]


def main() -> None:
    from ctsam3d.modeling.winograd import applies, conv3d_winograd_z

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "winograd_probe.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    cl = torch.channels_last_3d
    rows = []
    with torch.inference_mode():
        for size, cin, cout, pad in CASES:
            x = torch.randn((1, cin, *size), generator=g).relu().contiguous(memory_format=cl)
            w = torch.randn((cout, cin, 3, 3, 3), generator=g) / (3 * cin**0.5)
            bias = torch.randn(cout, generator=g)
            wc = w.contiguous(memory_format=cl)
            exact = F.conv3d(x.double(), w.double(), bias.double(), padding=pad)
            runs = {
                "direct": lambda: torch.mkldnn_convolution(x, wc, bias, [pad] * 3, [1] * 3, [1] * 3, 1),
                "z2": lambda: conv3d_winograd_z(x, w, bias, pad, 2),
                "z4": lambda: conv3d_winograd_z(x, w, bias, pad, 4),
            }
            if pad == 1:
                u = filter_transform(w)
                runs["3d"] = lambda: winograd_conv3d(x, u, bias)
            err = {k: float((f().double() - exact).abs().max()) for k, f in runs.items()}
            times: dict[str, list[float]] = {k: [] for k in runs}
            for _ in range(args.runs):  # interleaved, so all see the same machine load
                for k, f in runs.items():
                    t0 = time.perf_counter()
                    f()
                    times[k].append(time.perf_counter() - t0)
            med = {k: sorted(v)[len(v) // 2] * 1000 for k, v in times.items()}
            rows.append({
                "size": list(size), "cin": cin, "cout": cout, "padding": pad,
                "used_by_package": applies(x, w, pad),
                **{f"{k}_ms": round(v, 2) for k, v in med.items()},
                **{f"{k}_speedup": round(med["direct"] / v, 2) for k, v in med.items() if k != "direct"},
                **{f"{k}_max_err": v for k, v in err.items()},
                "max_abs_output": float(exact.abs().max()),
            })
    print("| grid (pad) | Cin→Cout | used | direct ms | F(4,3) z ms | F(2,3) z ms | F(2³,3³) ms | "
          "speed-up z4 / z2 / 3d | max err direct / z4 / z2 / 3d |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        grid = "×".join(map(str, r["size"]))
        t3 = r.get("3d_ms", "–")
        sp3 = f"{r['3d_speedup']}×" if "3d_speedup" in r else "–"
        e3 = f"{r['3d_max_err']:.1e}" if "3d_max_err" in r else "–"
        print(f"| {grid} ({r['padding']}) | {r['cin']}→{r['cout']} | {'yes' if r['used_by_package'] else 'no'} "
              f"| {r['direct_ms']} | {r['z4_ms']} | {r['z2_ms']} | {t3} | {r['z4_speedup']}× / {r['z2_speedup']}× / {sp3} "
              f"| {r['direct_max_err']:.1e} / {r['z4_max_err']:.1e} / {r['z2_max_err']:.1e} / {e3} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "threads": args.threads, "runs": args.runs, "torch": torch.__version__,
        "machine": platform.machine(), "command": f"python benchmarks/winograd_probe.py --runs {args.runs}",
        "rows": rows,
    }, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
