"""Synthetic CT from a real label map: HU per structure, texture, body, spine, partial volume, noise.

Input is a label map in **canonical orientation** (identity direction, LPS-towards: array
``[z, y, x]`` with x → patient left, y → posterior, z → superior) and its voxel spacing
``(z, y, x)`` in mm. Output is an int16 HU volume ``[z, y, x]`` of the same shape.

One variant (:func:`synthesize_variant`) is:

1. **shape**: the label map warped by a smooth random displacement (a few mm, control
   points every ~40 mm) and a random per-axis scale about its centroid (nearest
   neighbour, same grid), so variants differ in shape, not only in intensity;
2. **contrast phase**: non-contrast, arterial or portal-venous. Non-contrast structures
   take the measured median HU (``hu_stats.json``) shifted by up to ± ``shift_k`` × their
   std (std capped at 15 HU); for the enhancing structures of :data:`PHASE_HU` a contrast
   phase draws the mean from approximate literature ranges (not measured here), e.g.
   aorta 200–380 HU arterial, 130–200 HU portal-venous;
3. **body**: per axial slice an ellipse around the labels and the synthetic spine plus a
   margin (axes smoothed along z), air (exactly -1024 HU) outside; inside, from the skin
   in: subcutaneous fat, an abdominal-wall muscle layer, then a random fat / soft-tissue
   mixture (thresholded low-frequency noise, fat fraction drawn per variant) with
   optional bowel-gas blobs;
4. **bone**: a vertebral column behind the aorta (vertebral bodies with cortical rim and
   cancellous core, discs every ~30 mm, canal, arch, spinous process, paraspinal
   muscles) and optionally rib fragments in the body wall of the upper abdomen; labelled
   structures always stay on top;
5. hollow organs (stomach, duodenum, colon, small bowel) get fluid content and, sometimes,
   a gas layer on their anterior side (patient supine);
6. **texture** (smooth per-structure field, 2–8 HU), **partial volume** (Gaussian blur of
   0.5–1 voxel in-plane, ≤ 2.5 mm along z), **noise** (slightly correlated Gaussian,
   std 5–15 HU), rounding to int16.

Everything random comes from the ``numpy.random.Generator`` passed in, so a seed gives the
same variant.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from .hu_stats import load_hu_stats

__all__ = [
    "SynthConfig",
    "TORSO_LABELS",
    "PHASES",
    "PHASE_HU",
    "labelmap_names",
    "deform_labels",
    "synthesize_ct",
    "synthesize_variant",
]

AIR = -1024

#: ``labelmaps/torso_labels.nii.gz`` (NiiVue demo data): id -> name
TORSO_LABELS = {
    1: "spleen",
    2: "kidney_right",
    3: "kidney_left",
    4: "gallbladder",
    5: "esophagus",
    6: "liver",
    7: "stomach",
    8: "aorta",
    9: "inferior_vena_cava",
    10: "pancreas",
    11: "urinary_bladder",
}

PHASES = ("non_contrast", "arterial", "portal_venous")

#: approximate mean HU ranges of enhancing structures per contrast phase (radiology
#: textbook values, not measured in this project); other structures keep their
#: non-contrast statistics in every phase
PHASE_HU: dict[str, dict[str, tuple[float, float]]] = {
    "aorta": {"arterial": (200, 380), "portal_venous": (130, 200)},
    "iliac_artery_left": {"arterial": (200, 380), "portal_venous": (130, 200)},
    "iliac_artery_right": {"arterial": (200, 380), "portal_venous": (130, 200)},
    "inferior_vena_cava": {"arterial": (60, 130), "portal_venous": (110, 180)},
    "portal_vein_and_splenic_vein": {"arterial": (90, 160), "portal_venous": (150, 220)},
    "liver": {"arterial": (60, 85), "portal_venous": (95, 130)},
    "spleen": {"arterial": (90, 140), "portal_venous": (105, 135)},
    "kidney_left": {"arterial": (140, 220), "portal_venous": (140, 200)},
    "kidney_right": {"arterial": (140, 220), "portal_venous": (140, 200)},
    "pancreas": {"arterial": (100, 140), "portal_venous": (80, 115)},
    "adrenal_gland_left": {"arterial": (50, 80), "portal_venous": (55, 90)},
    "adrenal_gland_right": {"arterial": (50, 80), "portal_venous": (55, 90)},
}

HOLLOW = ("stomach", "duodenum", "colon", "small_bowel")
_FALLBACK = {"p50": 40.0, "std": 15.0}


@dataclass
class SynthConfig:
    """Ranges drawn per variant (uniform unless stated). Lengths in mm, HU in Hounsfield units.

    deform_mm: max displacement amplitude (std of the smooth field, drawn in this range).
    deform_spacing_mm: control-point spacing of the displacement field.
    scale: per-axis scale of the label map about its centroid.
    shift_k: structure mean = median ± shift_k · min(std, 15).
    texture_hu: amplitude (std) of the smooth texture inside structures and tissue.
    noise_hu: std of the (slightly correlated) image noise.
    blur_vox: in-plane partial-volume blur sigma in voxels (z: at most 2.5 mm).
    margin_mm: body margin around labels and spine.
    subcut_fat_mm, wall_muscle_mm: layer thicknesses under the skin.
    fat_fraction: share of fat in the unlabelled inner body.
    phase_p: probabilities of :data:`PHASES`.
    p_spine, p_ribs, p_bowel_gas, p_hollow_gas: probabilities of the optional parts.
    """

    deform_mm: tuple[float, float] = (2.0, 6.0)
    deform_spacing_mm: float = 40.0
    scale: tuple[float, float] = (0.9, 1.1)
    shift_k: float = 1.0
    texture_hu: tuple[float, float] = (2.0, 8.0)
    noise_hu: tuple[float, float] = (5.0, 15.0)
    blur_vox: tuple[float, float] = (0.5, 1.0)
    margin_mm: tuple[float, float] = (15.0, 40.0)
    subcut_fat_mm: tuple[float, float] = (6.0, 30.0)
    wall_muscle_mm: tuple[float, float] = (6.0, 14.0)
    fat_fraction: tuple[float, float] = (0.3, 0.7)
    phase_p: tuple[float, float, float] = (0.4, 0.25, 0.35)
    p_spine: float = 0.95
    p_ribs: float = 0.6
    p_bowel_gas: float = 0.6
    p_hollow_gas: float = 0.6


def labelmap_names(path_or_name: str) -> dict[int, str] | None:
    """Names of the label maps this module knows, from their file name: ``torso_labels*``
    (:data:`TORSO_LABELS`) and ``flare22*`` (the ``flare22`` catalogue); None otherwise."""
    from pathlib import Path

    stem = Path(str(path_or_name)).name.lower()
    if stem.startswith("torso_labels"):
        return dict(TORSO_LABELS)
    if stem.startswith("flare22"):
        from ..anatomy import get_catalogue

        return dict(get_catalogue("flare22").labels)
    return None


# ---- fields ------------------------------------------------------------------------------
def smooth_field(shape, spacing_zyx, sigma_mm: float, rng: np.random.Generator, order: int = 3) -> np.ndarray:
    """Zero-mean, unit-std smooth random field ``[z, y, x]`` (float32) with features of about
    ``sigma_mm``: white noise on a coarse grid (one node per ``sigma_mm``) interpolated up,
    axis by axis (cubic spline for ``order=3``, linear for ``order=1``)."""
    from scipy.interpolate import CubicSpline

    f = None
    for ax, (n, sp) in enumerate(zip(shape, spacing_zyx)):
        nc = int(max(4, np.ceil(n * sp / max(sigma_mm, 1e-3)) + 3))
        pos = np.arange(n) * sp / sigma_mm + 1.0  # coarse node k sits at (k - 1) * sigma_mm
        eye = np.eye(nc)
        if order == 1:
            w = np.stack([np.interp(pos, np.arange(nc), eye[k]) for k in range(nc)], axis=1)
        else:
            w = CubicSpline(np.arange(nc), eye)(pos)
        if f is None:
            f = rng.standard_normal([int(max(4, np.ceil(m * s / max(sigma_mm, 1e-3)) + 3)) for m, s in zip(shape, spacing_zyx)])
        f = np.moveaxis(np.tensordot(w, f, axes=(1, ax)), 0, ax)
    f = f.astype(np.float32)
    f -= f.mean()
    s = float(f.std())
    return f / s if s > 0 else f


def deform_labels(label: np.ndarray, spacing_zyx, rng: np.random.Generator, config: SynthConfig | None = None) -> np.ndarray:
    """Warp a label map ``[z, y, x]`` by a smooth random displacement and per-axis scale.

    The output has the same shape, dtype and grid (nearest-neighbour resampling; what
    leaves the grid is lost). Displacements are in mm (``config.deform_mm``), scales about
    the centroid of the labelled voxels (``config.scale``; half the range along z).
    """
    cfg = config or SynthConfig()
    sp = np.asarray(spacing_zyx, float)
    fg = np.argwhere(label > 0)
    centre = fg.mean(0) if len(fg) else (np.asarray(label.shape) - 1) / 2
    lo, hi = cfg.scale
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    scale = np.array([mid + rng.uniform(-0.5, 0.5) * half, *(mid + rng.uniform(-1, 1, 2) * half)])
    amp = rng.uniform(*cfg.deform_mm)
    grids = np.meshgrid(*[np.arange(n, dtype=np.float32) for n in label.shape], indexing="ij", sparse=True)
    coords = []
    for ax in range(3):
        disp = smooth_field(label.shape, sp, cfg.deform_spacing_mm, rng, order=1) * (amp / sp[ax])
        coords.append((centre[ax] + (grids[ax] - centre[ax]) / scale[ax] + disp).astype(np.float32))
    return ndi.map_coordinates(label, coords, order=0, mode="constant", cval=0).astype(label.dtype)


# ---- anatomy helpers --------------------------------------------------------------------
def _hold(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Fill invalid entries (per z) with the nearest valid one."""
    if not valid.any():
        return values
    idx = np.flatnonzero(valid)
    nearest = idx[np.abs(np.arange(len(valid))[:, None] - idx[None, :]).argmin(1)]
    return values[nearest]


def _spine_path(label, names, spacing_zyx, rng):
    """Per-slice vertebral body centre (y, x) in voxels and radius in mm, from the aorta (or IVC)."""
    nz = label.shape[0]
    sy, sx = spacing_zyx[1], spacing_zyx[2]
    ref_id = next((i for i, n in names.items() if n == "aorta"), None)
    dx_mm = rng.uniform(8, 18)  # vertebral centre lies to the patient's right (-x) of the aorta
    if ref_id is None:
        ref_id = next((i for i, n in names.items() if n == "inferior_vena_cava"), None)
        dx_mm = -rng.uniform(10, 25)  # ... and to the left of the IVC
    cy, cx = np.zeros(nz), np.zeros(nz)
    valid = np.zeros(nz, bool)
    if ref_id is not None:
        for z in range(nz):
            pts = np.argwhere(label[z] == ref_id)
            if len(pts):
                cy[z], cx[z] = pts.mean(0)
                valid[z] = True
    if not valid.any():  # no vessel: posterior part of the labelled region, midline
        fg = np.argwhere(label > 0)
        if not len(fg):
            return None
        cy[:], cx[:] = fg[:, 1].max(), fg[:, 2].mean()
        valid[:] = True
        dx_mm = 0.0
    cy, cx = _hold(cy, valid), _hold(cx, valid)
    sig = max(1.0, 15.0 / spacing_zyx[0])
    cy, cx = ndi.gaussian_filter1d(cy, sig, mode="nearest"), ndi.gaussian_filter1d(cx, sig, mode="nearest")
    radius = rng.uniform(16, 22) + np.linspace(0, rng.uniform(0, 4), nz)[::-1]  # larger caudally
    dy_mm = radius + rng.uniform(4, 10)  # aorta sits in front of the vertebral body
    return cy + dy_mm / sy, cx - dx_mm / sx, radius


def _body(label, spacing_zyx, extra_pts, margin_mm, rng) -> np.ndarray:
    """Per-slice ellipse containing labels and ``extra_pts`` (list per z of (N,2) y,x voxels)."""
    nz, ny, nx = label.shape
    sy, sx = spacing_zyx[1], spacing_zyx[2]
    ratio = rng.uniform(1.2, 1.5)  # width / depth
    cy, cx, a = np.zeros(nz), np.zeros(nz), np.zeros(nz)
    valid = np.zeros(nz, bool)
    for z in range(nz):
        pts = np.argwhere(label[z] > 0).astype(float)
        if extra_pts is not None and len(extra_pts[z]):
            pts = np.concatenate([pts, extra_pts[z]]) if len(pts) else extra_pts[z]
        if not len(pts):
            continue
        ym, xm = pts[:, 0] * sy, pts[:, 1] * sx
        cy[z], cx[z] = (ym.min() + ym.max()) / 2, (xm.min() + xm.max()) / 2
        r = np.sqrt(((xm - cx[z])) ** 2 + ((ym - cy[z]) * ratio) ** 2).max()
        a[z] = r  # semi-axis along x; along y: r / ratio
        valid[z] = True
    if not valid.any():
        return np.zeros(label.shape, bool)
    cy, cx, a = _hold(cy, valid), _hold(cx, valid), _hold(a, valid)
    win = max(1, int(round(60.0 / spacing_zyx[0])))
    a = ndi.maximum_filter1d(a, 2 * win + 1, mode="nearest")
    sig = max(1.0, 20.0 / spacing_zyx[0])
    cy, cx, a = (ndi.gaussian_filter1d(v, sig, mode="nearest") for v in (cy, cx, a))
    a = a + margin_mm
    b = a / ratio + margin_mm * 0.3
    yy = (np.arange(ny) * sy)[None, :, None]
    xx = (np.arange(nx) * sx)[None, None, :]
    return ((xx - cx[:, None, None]) / a[:, None, None]) ** 2 + ((yy - cy[:, None, None]) / b[:, None, None]) ** 2 <= 1.0


def _depth_mm(body: np.ndarray, spacing_zyx) -> np.ndarray:
    """In-plane distance (mm) of each body voxel to the skin, per axial slice."""
    out = np.zeros(body.shape, np.float32)
    for z in range(body.shape[0]):
        if body[z].any():
            out[z] = ndi.distance_transform_edt(body[z], sampling=spacing_zyx[1:])
    return out


def _draw_mean(name: str, phase: str, stats: dict, k: float, rng) -> float:
    ranges = PHASE_HU.get(name, {})
    if phase in ranges:
        return float(rng.uniform(*ranges[phase]))
    s = stats.get(name, _FALLBACK)
    return float(s.get("p50", s.get("mean", 40.0)) + rng.uniform(-k, k) * min(float(s["std"]), 15.0))


# ---- the volume -------------------------------------------------------------------------
def synthesize_ct(
    label: np.ndarray,
    names: dict[int, str],
    spacing_zyx,
    rng: np.random.Generator,
    *,
    stats: dict | None = None,
    config: SynthConfig | None = None,
    phase: str | None = None,
) -> tuple[np.ndarray, dict]:
    """A CT-like volume for a canonical label map (see the module doc).

    Args:
        label: integer label map ``[z, y, x]`` in canonical orientation (x → L, y → P, z → S).
        names: label id -> structure name (ids missing here are treated as soft tissue).
        spacing_zyx: voxel size in mm ``(z, y, x)``.
        rng: source of all randomness.
        stats: HU table (:func:`ctsam3d.data.hu_stats.load_hu_stats`; default: the committed one).
        config: ranges (:class:`SynthConfig`).
        phase: one of :data:`PHASES` (default: drawn with ``config.phase_p``).

    Returns:
        ``(ct, info)``: int16 HU ``[z, y, x]`` (air outside the body exactly -1024) and a dict
        with the drawn ``phase``, ``noise_hu``, ``blur_vox`` and per-structure ``means`` (HU
        before texture, blur and noise).
    """
    cfg = config or SynthConfig()
    table = stats or load_hu_stats()
    st, bg = table["structures"], table["background"]
    sp = np.asarray(spacing_zyx, float)
    shape = label.shape
    phase = phase or PHASES[int(rng.choice(3, p=np.asarray(cfg.phase_p) / sum(cfg.phase_p)))]
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")

    # spine geometry first: the body must contain it
    spine = _spine_path(label, names, sp, rng) if rng.random() < cfg.p_spine else None
    extra = None
    if spine is not None:
        vy, vx, rad = spine
        extra = []
        for z in range(shape[0]):
            r = rad[z]
            back = r + rng.uniform(55, 70)  # canal, arch, spinous process and paraspinal muscles
            pts_mm = np.array([[0, -r - 5], [0, r + 5], [back, 0], [r + 20, -45], [r + 20, 45], [-r, 0]])
            extra.append(np.column_stack([vy[z] + pts_mm[:, 0] / sp[1], vx[z] + pts_mm[:, 1] / sp[2]]))
    body = _body(label, sp, extra, rng.uniform(*cfg.margin_mm), rng) | (label > 0)
    depth = _depth_mm(body, sp)

    # tissue: subcutaneous fat, wall muscle, fat / soft-tissue mixture, bowel gas
    fat_m, fat_s = bg.get("fat", {"mean": -95.0})["mean"], 8.0
    soft_m = bg.get("soft_tissue", {"mean": 20.0})["mean"]
    muscle = st.get("iliopsoas_left", {"p50": 50.0})["p50"]
    hu = np.full(shape, float(AIR), np.float32)
    t_fat = rng.uniform(*cfg.subcut_fat_mm) * (1 + 0.25 * smooth_field(shape, sp, 60.0, rng, order=1))
    t_mus = rng.uniform(*cfg.wall_muscle_mm)
    mix = smooth_field(shape, sp, rng.uniform(12, 30), rng)
    thr = np.quantile(mix[::2, ::4, ::4], rng.uniform(*cfg.fat_fraction))
    inner = body & (depth >= t_fat + t_mus)
    hu[body] = fat_m + rng.uniform(-15, 15)
    hu[body & (depth >= t_fat) & ~inner] = muscle + rng.uniform(-10, 10)
    soft = inner & (mix > thr)
    hu[soft] = soft_m + rng.uniform(0, 25)
    if rng.random() < cfg.p_bowel_gas:
        gas_f = smooth_field(shape, sp, rng.uniform(6, 12), rng)
        gas = soft & (gas_f > np.quantile(gas_f[::2, ::4, ::4], 1 - rng.uniform(0.005, 0.03)))
        hu[gas] = rng.uniform(-950, -750)

    # spine, canal, paraspinal muscles; ribs
    if spine is not None:
        vy, vx, rad = spine
        period = rng.uniform(28, 34)
        disc_h = rng.uniform(6, 10)
        phase_z = rng.uniform(0, period)
        cort, canc, disc = rng.uniform(450, 800), rng.uniform(150, 280), rng.uniform(70, 110)
        yy = (np.arange(shape[1]) * sp[1])[:, None]
        xx = (np.arange(shape[2]) * sp[2])[None, :]
        for z in range(shape[0]):
            if not body[z].any():
                continue
            y0, x0, r = vy[z] * sp[1], vx[z] * sp[2], rad[z]
            dyv, dxv = yy - y0, xx - x0
            rr = np.sqrt((dxv / 1.1) ** 2 + (dyv / 0.9) ** 2)
            in_disc = ((z * sp[0] + phase_z) % period) < disc_h
            free = body[z] & (label[z] == 0)
            # paraspinal muscles, then the vertebra on top
            for side in (-1, 1):
                m = ((dxv - side * 28) / 22) ** 2 + ((dyv - r - 28) / 26) ** 2 <= 1
                hu[z][m & free] = muscle + rng.uniform(-8, 8)
            ccy = r + 11  # canal centre behind the body
            canal = dxv**2 + (dyv - ccy) ** 2 <= 8.5**2
            if in_disc:
                hu[z][(rr <= r) & free] = disc
            else:
                hu[z][(rr <= r) & free] = canc
                hu[z][(rr <= r) & (rr > r - 2.5) & free] = cort
                arch = (dxv**2 + (dyv - ccy) ** 2 <= 14**2) & ~canal & (dyv > r - 2)
                spinous = (np.abs(dxv) <= 4) & (dyv > ccy) & (dyv <= ccy + 35)
                hu[z][(arch | spinous) & free] = cort * 0.8
            hu[z][canal & free] = rng.uniform(15, 35)
        organs_up = [i for i, n in names.items() if n in ("liver", "spleen")]
        if organs_up and rng.random() < cfg.p_ribs:
            zs = np.flatnonzero(np.isin(label, organs_up).any(axis=(1, 2)))
            ang = np.arctan2(
                (np.arange(shape[1]) * sp[1])[:, None] - vy.mean() * sp[1] + 40,
                (np.arange(shape[2]) * sp[2])[None, :] - vx.mean() * sp[2],
            )
            rib_period = rng.uniform(18, 26)
            for z in zs:
                zmm = z * sp[0]
                band = body[z] & (depth[z] >= t_fat[z] + 0.3 * t_mus) & (depth[z] <= t_fat[z] + 0.3 * t_mus + 7) & (label[z] == 0)
                # ribs cut obliquely: short arcs whose angular position moves with z
                on = np.cos(ang * 6 + zmm * 2 * np.pi / rib_period) > 0.8
                hu[z][band & on] = rng.uniform(300, 600)

    # labelled structures (on top), hollow-organ content
    means = {}
    for i in sorted(int(v) for v in np.unique(label) if v != 0):
        name = names.get(i, f"label_{i}")
        m = label == i
        mean = _draw_mean(name, phase, st, cfg.shift_k, rng)
        if name in HOLLOW:
            mean = float(rng.uniform(5, 40))
        means[name] = round(mean, 1)
        hu[m] = mean
        if name in HOLLOW and rng.random() < cfg.p_hollow_gas:
            ys = np.argwhere(m)[:, 1]
            cut = np.quantile(ys, rng.uniform(0.05, 0.35))  # gas rises anteriorly (small y)
            gas = m.copy()
            gas[:, int(np.ceil(cut)) :, :] = False
            hu[gas & ndi.binary_erosion(m, iterations=1)] = rng.uniform(-950, -800)  # keep a 1-voxel wall

    # texture (per structure amplitude; one field), partial volume, noise
    tex = smooth_field(shape, sp, rng.uniform(3, 8), rng) * rng.uniform(*cfg.texture_hu)
    hu[body] += tex[body]
    sig = rng.uniform(*cfg.blur_vox)
    hu = ndi.gaussian_filter(hu, (min(sig, 2.5 / sp[0]), sig, sig))
    noise_hu = rng.uniform(*cfg.noise_hu)
    noise = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 0.6)
    noise *= noise_hu / max(float(noise.std()), 1e-6)
    hu += noise
    hu[~body] = AIR
    ct = np.clip(np.rint(hu), AIR, 3071).astype(np.int16)
    return ct, {"phase": phase, "noise_hu": round(noise_hu, 1), "blur_vox": round(sig, 2), "means": means}


def synthesize_variant(
    label: np.ndarray,
    names: dict[int, str],
    spacing_zyx,
    rng: np.random.Generator,
    *,
    stats: dict | None = None,
    config: SynthConfig | None = None,
    deform: bool = True,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Deform the label map (:func:`deform_labels`) and synthesise its CT (:func:`synthesize_ct`).

    Returns:
        ``(ct int16 [z, y, x], label uint8 [z, y, x], info)`` on the input grid.
    """
    lab = deform_labels(label, spacing_zyx, rng, config) if deform else label
    ct, info = synthesize_ct(lab, names, spacing_zyx, rng, stats=stats, config=config)
    return ct, lab.astype(np.uint8), info
