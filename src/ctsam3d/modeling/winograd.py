"""3×3×3 convolution with Winograd F(4, 3) along z: half the multiplications, same function.

A stride-1 3×3×3 convolution computes each output plane from three input planes: 3 plane-by-
kernel products per output plane. Winograd's minimal filtering F(m, 3) (Lavin & Gray, CVPR
2016) gives a tile of ``m`` neighbouring output planes from ``m + 2`` (zero-padded) input planes
``d = x[mt − p … mt + m + 1 − p]`` with ``m + 2`` products:

    U = Bᵀ d                 (input transform: ``m + 2`` linear combinations of input planes)
    M_k = conv_yx(U_k, g_k)  with g = G w along the kernel's z taps (computed once, float64)
    y = Aᵀ M                 (output transform: ``m`` linear combinations of the products)

where ``conv_yx`` is a 1×3×3 convolution (oneDNN, near this CPU's peak). F(4, 3): 6 products
per 4 planes, 1.5 instead of 3 per plane; F(2, 3): 2. In exact arithmetic this *is* the
convolution; in float32 it differs by rounding only: F(4, 3)'s largest error against a float64
convolution is ~3× the direct convolution's (2–4e-5 on unit-scale outputs), F(2, 3)'s no larger
(``benchmarks/winograd_probe.py``; ``tests/modeling/test_winograd.py`` bounds both at 16 float32
rounding units of each output's absolute sum); the paper decoder's masks stay within 2e-6 of the
reference's decode and as close to the released golden masks as before (2e-5).

Only the z axis is transformed: the transforms move 1.5× (F(4, 3)) the input and output, little
enough that two cores' memory bandwidth does not eat the saving (the full 3-D F(2³, 3³) moves
8× and was slower, ``benchmarks/winograd_probe.py``). Tiles are processed a few at a time
(:data:`TILE_CHUNK`) so the transformed planes stay in cache. Used by
:func:`ctsam3d.modeling.layers.conv3d` for CPU float32 inference on wide convolutions
(:func:`applies`); training and GPU keep the standard convolution.

Shapes: ``x`` ``(B, Cin, D, H, W)`` (best channels-last), weight ``(Cout, Cin, 3, 3, 3)``,
padding ``p`` ∈ {0, 1} on every axis; output ``(B, Cout, D + 2p − 2, H + 2p − 2, W + 2p − 2)``,
channels-last.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .derived import cached

#: output planes per Winograd tile: F(TILE, 3)
TILE = 4
#: tiles per round of transforms and products
TILE_CHUNK = 4
#: narrowest convolution worth transforming (input and output channels): narrower ones run
#: below oneDNN's peak already and the transforms cost more than the products they save
MIN_CHANNELS = 128
#: smallest convolution worth transforming, in Cin · Cout · output voxels: a 128 → 256 conv on
#: 10³ output voxels (33 M) gained nothing and 256 → 256 on 8³ (34 M) lost, 128 → 256 on
#: 18 × 12 × 12 (85 M) gained 1.1× (``benchmarks/winograd_probe.py``, 2 threads)
MIN_WORK = 40_000_000
#: fewest output planes along z
MIN_OUT_PLANES = 4


def applies(x: torch.Tensor, weight: torch.Tensor, padding: int) -> bool:
    """Whether :func:`conv3d_winograd_z` is used for this stride-1 convolution (the caller has
    already established CPU float32 inference)."""
    if weight.dim() != 5 or tuple(weight.shape[2:]) != (3, 3, 3) or padding not in (0, 1):
        return False
    cout, cin = weight.shape[:2]
    size = [s + 2 * padding - 2 for s in x.shape[2:]]
    return (
        min(cin, cout) >= MIN_CHANNELS
        and size[0] >= MIN_OUT_PLANES
        and cin * cout * size[0] * size[1] * size[2] >= MIN_WORK
    )


#: Winograd F(m, 3) transforms (Lavin & Gray 2016), per output tile size m: Bᵀ (input planes
#: → transformed planes), G (kernel taps → transformed kernels), Aᵀ (products → output planes)
TRANSFORMS = {
    2: (
        ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1)),
        ((1, 0, 0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0, 0, 1)),
        ((1, 1, 1, 0), (0, 1, -1, -1)),
    ),
    4: (
        (
            (4, 0, -5, 0, 1, 0),
            (0, -4, -4, 1, 1, 0),
            (0, 4, -4, -1, 1, 0),
            (0, -2, -1, 2, 1, 0),
            (0, 2, -1, -2, 1, 0),
            (0, 4, 0, -5, 0, 1),
        ),
        (
            (1 / 4, 0, 0),
            (-1 / 6, -1 / 6, -1 / 6),
            (-1 / 6, 1 / 6, -1 / 6),
            (1 / 24, 1 / 12, 1 / 6),
            (1 / 24, -1 / 12, 1 / 6),
            (0, 0, 1),
        ),
        ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1)),
    ),
}


def filters(weight: torch.Tensor, m: int = 2) -> tuple[torch.Tensor, ...]:
    """The ``m + 2`` transformed ``(Cout, Cin, 1, 3, 3)`` channels-last filters of ``weight``
    ``(Cout, Cin, 3, 3, 3)`` for F(m, 3) along z, computed in float64. Cached on the weight
    tensor until it changes (:func:`ctsam3d.modeling.derived.cached`)."""

    def make(weights):
        g = torch.tensor(TRANSFORMS[m][1], dtype=torch.float64)
        u = torch.einsum("ak,oikyx->aoiyx", g, weights[0].detach().double()).unsqueeze(3)
        return tuple(t.to(weight.dtype).contiguous(memory_format=torch.channels_last_3d) for t in u)

    return cached(weight, f"winograd_z{m}", (weight,), make)


def _planes(x: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """Planes ``lo … hi − 1`` of ``x`` along z, zero where outside ``x`` (a view when inside)."""
    d = x.shape[2]
    if lo >= 0 and hi <= d:
        return x[:, :, lo:hi]
    inner = x[:, :, max(lo, 0) : min(hi, d)]
    return F.pad(inner, (0, 0, 0, 0, max(0, -lo), max(0, hi - d))).contiguous(memory_format=torch.channels_last_3d)


def input_transform(m: int, d: list[torch.Tensor]) -> list[torch.Tensor]:
    """Bᵀ d: the ``m + 2`` transformed planes from the ``m + 2`` input planes ``d`` (tensors of
    one shape), with shared partial sums (F(4, 3): 14 passes instead of 22)."""
    if m == 2:
        d0, d1, d2, d3 = d
        return [d0 - d2, d1 + d2, d2 - d1, d1 - d3]
    d0, d1, d2, d3, d4, d5 = d
    s, t = d1 + d2, d3 + d4
    sm, tm = d1 - d2, d4 - d3
    e, f = d4 - d2, d3 - d1
    return [
        torch.add(d4, d0, alpha=4).add_(d2, alpha=-5),
        t.add_(s, alpha=-4),
        tm.add_(sm, alpha=4),
        torch.add(e, f, alpha=2),
        e.add_(f, alpha=-2),
        torch.add(d5, d1, alpha=4).add_(d3, alpha=-5),
    ]


def output_transform(m: int, mk: list[torch.Tensor], out: list[torch.Tensor]) -> None:
    """Aᵀ M into ``out`` (the ``m`` output-plane views, each as long as the products along z or
    shorter: a tile's last planes may lie past the output), with shared partial sums (F(4, 3):
    10 passes instead of 17)."""
    if m == 2:
        m0, m1, m2, m3 = mk
        (n0, n1), (o0, o1) = (o.shape[2] for o in out), out
        torch.add(m1[:, :, :n0], m2[:, :, :n0], out=o0).add_(m0[:, :, :n0])
        if n1:
            torch.sub(m1[:, :, :n1], m2[:, :, :n1], out=o1).sub_(m3[:, :, :n1])
        return
    m0, m1, m2, m3, m4, m5 = mk
    a, b = m1 + m2, m1 - m2
    c, dd = m3 + m4, m3 - m4
    rows = [(a, c, 1, m0), (b, dd, 2, None), (a, c, 4, None), (b, dd, 8, m5)]
    for (x, y, alpha, extra), o in zip(rows, out):
        n = o.shape[2]
        if n:
            torch.add(x[:, :, :n], y[:, :, :n], alpha=alpha, out=o)
            if extra is not None:
                o.add_(extra[:, :, :n])


def conv3d_winograd_z(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: int, m: int | None = None,
    chunk: int = TILE_CHUNK,
) -> torch.Tensor:
    """Stride-1 3×3×3 convolution of ``x`` (best channels-last, or a channel slice of such) with
    ``weight``, zero padding ``padding`` (0 or 1) on every axis, by F(``m``, 3) along z; see the
    module docstring. Inference only."""
    b, _, d, h, w = x.shape
    p, m = padding, m or TILE
    do, ho, wo = d + 2 * p - 2, h + 2 * p - 2, w + 2 * p - 2
    g = filters(weight, m)
    out = torch.empty((b, weight.shape[0], do, ho, wo), dtype=x.dtype, memory_format=torch.channels_last_3d)
    tiles = -(-do // m)
    for t0 in range(0, tiles, chunk):
        n = min(chunk, tiles - t0)
        z0 = m * t0  # first output plane of the chunk; its input planes start at z0 - p
        s = _planes(x, z0 - p, z0 - p + m * n + 2)
        u = input_transform(m, [s[:, :, j : j + m * (n - 1) + 1 : m] for j in range(m + 2)])
        mk = [
            torch.mkldnn_convolution(
                uk.contiguous(memory_format=torch.channels_last_3d), gk, bias if k == 1 else None,
                [0, p, p], [1] * 3, [1] * 3, 1,
            )
            for k, (uk, gk) in enumerate(zip(u, g))
        ]  # the bias enters every output plane through M1 (Aᵀ's column 1 is all ones)
        output_transform(m, mk, [out[:, :, z0 + r : z0 + m * n : m] for r in range(m)])
    return out
