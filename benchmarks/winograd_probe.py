"""Would Winograd convolution speed up the paper decoder's dense per-click decode on CPU?

    python benchmarks/winograd_probe.py [--threads 2] [--runs 5]

Issue 3 asks for the ``ctsam3d-paper`` decoder to be 2x faster than the reference on later
clicks without changing its outputs beyond float tolerance. Its cost is 3x3x3 convolutions
on 32^3 and 16^3 grids with 128-512 channels that oneDNN already runs near this CPU's peak,
so only fewer multiplications could give 2x. Winograd F(2x2x2, 3x3x3) needs 64 instead of
216 multiplications per 8 outputs (3.4x fewer). This probe implements it with PyTorch
tensor ops (input/output transforms as strided adds, the 64 products as one batched matmul,
processed in slabs of z tiles) and times it against the direct oneDNN convolution used by
the decoder, on the decoder's own layer shapes, interleaved in one process. It also reports
each method's largest error against a float64 convolution.

Prints a table and writes ``benchmarks/results/winograd_probe.json``. Not used by the
package: the result (see docs/benchmarks.md) is why.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ctsam3d.modeling.layers import conv3d

ROOT = Path(__file__).resolve().parents[1]
#: F(2, 3) filter transform (4 x 3)
G = torch.tensor([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], dtype=torch.float64)
#: (grid side, in channels, out channels) of the paper decoder's large convs: level 5 (32^3,
#: 128 ch: conv_0/conv_1 and fused gamma-beta 128->256) and level 4 (16^3, 256 ch; 256->512)
SHAPES = [(32, 128, 256), (32, 128, 128), (16, 256, 512), (16, 256, 256)]


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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "winograd_probe.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    rows = []
    with torch.inference_mode():
        for side, cin, cout in SHAPES:
            x = torch.randn((1, cin, side, side, side), generator=g).contiguous(memory_format=torch.channels_last_3d)
            w = 0.05 * torch.randn((cout, cin, 3, 3, 3), generator=g)
            bias = torch.randn(cout, generator=g)
            u = filter_transform(w)
            exact = F.conv3d(x.double(), w.double(), bias.double(), padding=1)
            runs = {"direct": lambda: conv3d(x, w, bias, 1), "winograd": lambda: winograd_conv3d(x, u, bias)}
            err = {k: float((f().double() - exact).abs().max()) for k, f in runs.items()}
            times: dict[str, list[float]] = {k: [] for k in runs}
            for _ in range(args.runs):  # interleaved, so both see the same machine load
                for k, f in runs.items():
                    t0 = time.perf_counter()
                    f()
                    times[k].append(time.perf_counter() - t0)
            med = {k: sorted(v)[len(v) // 2] * 1000 for k, v in times.items()}
            rows.append({
                "grid": side, "cin": cin, "cout": cout,
                "direct_ms": round(med["direct"], 1), "winograd_ms": round(med["winograd"], 1),
                "speedup": round(med["direct"] / med["winograd"], 2),
                "direct_max_err": err["direct"], "winograd_max_err": err["winograd"],
                "max_abs_output": float(exact.abs().max()),
            })
    print(f"| grid | Cin→Cout | direct oneDNN ms | Winograd F(2,3) ms | speed-up | max err direct | max err Winograd |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['grid']}³ | {r['cin']}→{r['cout']} | {r['direct_ms']} | {r['winograd_ms']} | {r['speedup']}× "
              f"| {r['direct_max_err']:.1e} | {r['winograd_max_err']:.1e} |")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "threads": args.threads, "runs": args.runs, "torch": torch.__version__,
        "machine": platform.machine(), "rows": rows,
    }, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
