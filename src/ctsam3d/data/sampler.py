"""Patch sampler: (case, structure) draws -> augmented model patches and CPP pairs.

Every patch is resampled from a cached case (:mod:`ctsam3d.data.cache`, identity
direction, native spacing) with **one affine** that combines the patch placement (centre
on a voxel of the structure plus jitter), the model's isotropic spacing and the spatial
augmentation (:mod:`ctsam3d.data.augment`), using ``torch.nn.functional.affine_grid`` /
``grid_sample`` — trilinear for CT (padding -1024 HU), nearest for labels (padding 0).
Only the box of the volume the patch touches is converted to float, so CPU sampling stays
cheap; the same code runs on CUDA tensors (``device="cuda"``) for GPU-side sampling.

Draws are balanced: a structure name is drawn uniformly among the names present in the
data, then a case that contains it, so small structures are seen as often as large ones.
Only structures *present* in a case are drawn (a structure absent from a case's label map
is unknown there, never a negative). With several sources (``groups``: the cache each case
came from, ``group_weights``: probability that a draw uses each), a draw first picks the
source, then a name among that source's names, then a case of that source.

CPP pairs (``cpp=True``): a neighbour patch V is the patch U shifted by 0.5–1 patch side
(32–64 voxels for 64³; in U's rotated frame) towards one of the 26 neighbours; it is kept when it
contains at least ``cpp_min_voxels`` of the structure (a few directions are tried, the
later ones aimed at a structure voxel outside U). The target is a Gaussian heatmap at the
deepest voxel of ``structure ∩ V``. The shift is a whole number of patch voxels, returned as
``cpp_offset`` ``(dz, dy, dx)``: V's voxel ``i`` is U's voxel ``i + offset`` (as
``start_v - start_u`` on a session's lattice), which moves U's arrays into V's grid for a CPP
net with ``cpp.frame = "v"`` (:mod:`ctsam3d.modeling.cpp_frame`).

All outputs are tensors ``(B, 1, D, H, W)`` indexed ``[z, y, x]`` on the patch grid, except the
images, ``(B, C, D, H, W)`` with one channel per HU window (``ModelConfig.windows()``; C = 1
for a single window). Intensity augmentation acts on HU, before the windows, so every
channel sees the same patch.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .affine import patch_corners_index, patch_to_world, theta_for_grid, world_to_index
from .augment import AugmentConfig, apply_intensity, draw_spatial
from .contrast import apply_contrast
from .cache import AIR_HU, CachedCase
from .heatmap import deepest_points, gaussian_heatmap

__all__ = ["PatchSampler", "SamplerConfig", "NEIGHBOURS"]

NEIGHBOURS = np.array([d for d in itertools.product((-1, 0, 1), repeat=3) if any(d)], float)  # (26, 3) x,y,z


@dataclass
class SamplerConfig:
    """Sampling settings.

    jitter: max offset of the patch centre from the drawn structure voxel, as a fraction
        of the patch side (per axis; 0.25 keeps the voxel well inside the patch).
    cpp: also build CPP pairs.
    cpp_shift: (min, max) shift of V as a fraction of the patch side (0.5–1 = 32–64 voxels
        for a 64³ patch), drawn per pair.
    cpp_min_voxels: structure voxels V must contain.
    cpp_tries: directions tried before giving up on a pair (the item is then marked invalid).
    cpp_sigma: heatmap sigma in voxels.
    cpp_directions: ``"any"``: the first direction is one of the 26 at random, later tries aim
        at a structure voxel outside U; ``"touching"``: as inference proposes neighbours
        (:func:`ctsam3d.inference.expansion.touching_directions`), only directions whose face
        (edge, corner) slab of U — ``cpp_face_margin`` voxels thick — holds at least
        ``cpp_face_voxels`` structure voxels, drawn at random among them; no such direction:
        the pair is invalid. With ``cpp_shift: [0.75, 0.75]`` the pairs are then the ones a
        session's expansion asks the CPP net about (lattice stride 3/4 of the patch).
    min_voxels: structure voxels U must contain (else the draw is repeated, up to 8 times).
    ct_outside: what a patch holds where it leaves the cached volume: ``"air"`` (-1024 HU and
        label 0, the default: the random stream and every recipe so far) or ``"edge"``: beyond
        a face of the *scan* the CT and the labels repeat the face's voxels, as the interactive
        session's crops repeat the image (since 2026-12-05); beyond a face of the cache's crop
        to non-air voxels it is air, as in the scan. A patch wholly outside is air either way.
        Needs caches that record their scan faces (written since 2026-12-05 10:20 UTC). Until
        then edge mode repeated every face and only the CT: it invented tissue where a head's
        scan had air around it and told the model that a spinal cord running out of the scan
        stops at its last slice.
    p_large: probability that a draw is restricted to *large* structures: the source is drawn
        as usual, then a name among those of the source whose bounding box is at least
        ``large_mm`` long on some axis in some case (liver, aorta, colon, lungs, long
        muscles, the spinal cord...), then one of those cases. Balanced draws show each name
        equally often, so the few large torso organs are a few percent of all patches. A
        source without large structures draws as usual. 0 (the default) draws nothing extra:
        the random stream is unchanged.
    """

    jitter: float = 0.25
    cpp: bool = True
    cpp_shift: tuple[float, float] = (0.5, 1.0)
    cpp_min_voxels: int = 8
    cpp_tries: int = 4
    cpp_sigma: float = 3.0
    cpp_directions: str = "any"
    cpp_face_margin: int = 2
    cpp_face_voxels: int = 4
    min_voxels: int = 1
    ct_outside: str = "air"
    p_large: float = 0.0
    large_mm: float = 120.0

    def __post_init__(self):
        if self.ct_outside not in ("air", "edge"):
            raise ValueError(f"sampler.ct_outside: 'air' or 'edge', got {self.ct_outside!r}")
        if not 0.0 <= float(self.p_large) <= 1.0:
            raise ValueError(f"sampler.p_large: between 0 and 1, got {self.p_large!r}")


def _extent_mm(case: CachedCase, name: str) -> float:
    """Longest side of a structure's bounding box in mm."""
    b = case.structures[name].bbox_zyx
    return float(max((b[3 + a] - b[a]) * case.spacing_zyx[a] for a in range(3)))


def _pad_scan_faces(sub: torch.Tensor, lo: np.ndarray, before: np.ndarray, after: np.ndarray, faces):
    """``sub`` (a ``[z, y, x]`` block of a cached array starting at ``lo``, air = 0) extended by
    ``before`` / ``after`` voxels per axis where the block lies on a scan face, repeating that
    face's voxels; elsewhere it is left as it is (the zero padding of the resampling is air).
    Returns the block and its new start."""
    lo = lo.copy()
    for ax in range(3):
        for side, n in ((0, int(before[ax])), (1, int(after[ax]))):
            if n <= 0 or not faces[ax][side]:
                continue
            face = sub.narrow(ax, 0 if side == 0 else sub.shape[ax] - 1, 1)
            rep = face.expand(*[n if a == ax else -1 for a in range(3)])
            sub = torch.cat([rep, sub] if side == 0 else [sub, rep], dim=ax)
            if side == 0:
                lo[ax] -= n
    return sub, lo


def _large(cases, by_name: dict[str, list[int]], min_mm: float) -> tuple[list[str], dict[str, list[int]]]:
    """``(sorted names, by_name)`` restricted to the cases where the structure is at least
    ``min_mm`` long."""
    out = {n: [i for i in idx if _extent_mm(cases[i], n) >= min_mm] for n, idx in by_name.items()}
    out = {n: idx for n, idx in out.items() if idx}
    return sorted(out), out


class _Volume:
    """A cached case's arrays as tensors on the sampling device."""

    def __init__(self, case: CachedCase, device: torch.device) -> None:
        self.case = case
        self.ct = torch.from_numpy(np.ascontiguousarray(case.ct)).to(device)
        self.label = torch.from_numpy(np.ascontiguousarray(case.label)).to(device)
        self.w2i = world_to_index(case.origin_lps, case.spacing_zyx)
        self.index_to_world = np.linalg.inv(self.w2i)
        self.names = {int(s.label_id): name for name, s in case.structures.items()}  # label id -> name


class PatchSampler:
    """Draw batches of training patches from cached cases.

    Args:
        cases: cached cases (:func:`ctsam3d.data.load_cache`).
        patch_size: ``(D, H, W)`` voxels of the model patch (``ModelConfig.patch_size``).
        spacing_mm: isotropic patch spacing (``ModelConfig.spacing_mm``).
        hu_window: ``(low, high)`` HU mapped to [0, 1] (``ModelConfig.hu_window``), or a sequence
            of such windows, one image channel each (``ModelConfig.windows()``).
        augment: augmentation settings, None = none (validation).
        config: :class:`SamplerConfig`.
        device: where volumes live and patches are produced.
        groups: optional source index per case (e.g. which cache it came from); with two or
            more sources a draw picks the source first (``group_weights``, default equal).
        group_weights: probability of each source (normalised; one per source).
    """

    def __init__(
        self,
        cases: list[CachedCase],
        patch_size,
        spacing_mm: float,
        hu_window=(-125.0, 225.0),
        augment: AugmentConfig | None = None,
        config: SamplerConfig | None = None,
        device: str | torch.device = "cpu",
        groups: list[int] | None = None,
        group_weights: list[float] | None = None,
    ) -> None:
        self.patch_size = tuple(int(v) for v in (patch_size if np.ndim(patch_size) else (patch_size,) * 3))
        self.spacing = float(spacing_mm)
        wins = [hu_window] if np.ndim(hu_window) == 1 else list(hu_window)
        self.windows = [(float(w[0]), float(w[1])) for w in wins]
        if not self.windows or any(not hi > lo for lo, hi in self.windows):
            raise ValueError(f"hu_window: expected (low, high) or a list of them, got {hu_window!r}")
        self.window = self.windows[0]
        self.augment = augment
        self.config = config or SamplerConfig()
        self.device = torch.device(device)
        if self.config.ct_outside == "edge":
            old = [c.case_id for c in cases if c.scan_faces is None]
            if old:
                from ..errors import InputError

                raise InputError(
                    f"sampler.ct_outside: edge needs caches that record which faces are the scan's; "
                    f"{len(old)} case(s) do not (e.g. {old[0]!r}): rebuild their cache with 'ctsam3d preprocess'")
        self.volumes = [_Volume(c, self.device) for c in cases]
        by_name: dict[str, list[int]] = {}
        for i, c in enumerate(cases):
            for name, s in c.structures.items():
                if s.voxels > 0 and name in c.known and s.label_id in c.points:
                    by_name.setdefault(name, []).append(i)
        if not by_name:
            from ..errors import InputError

            raise InputError("training data: no case has a labelled structure to sample")
        self.names = sorted(by_name)
        self.by_name = by_name
        self.large = _large(cases, by_name, self.config.large_mm)  # (names, {name: case indices})
        self._groups = None  # [(probability, names, {name: case indices}, large ones)] with >= 2 sources
        if groups is not None and len(set(groups)) > 1:
            from ..errors import InputError

            if len(groups) != len(cases):
                raise ValueError("groups: one source index per case")
            n_src = max(groups) + 1
            w = np.ones(n_src) if group_weights is None else np.asarray(group_weights, float)
            if len(w) != n_src or np.any(w < 0) or w.sum() <= 0:
                raise InputError(f"training data: need {n_src} non-negative source weights, got {list(w)}")
            self._groups = []
            for g in range(n_src):
                sub = {n: [i for i in idx if groups[i] == g] for n, idx in by_name.items()}
                sub = {n: idx for n, idx in sub.items() if idx}
                if not sub and w[g] > 0:
                    raise InputError(f"training data: source {g} has no labelled structure to sample")
                self._groups.append((float(w[g] / w.sum()), sorted(sub), sub, _large(cases, sub, self.config.large_mm)))

    # ---- draws ----------------------------------------------------------------------
    def draw(self, rng: np.random.Generator) -> tuple[int, str]:
        """A balanced (case index, structure name) draw (per source first, with several sources);
        with ``config.p_large`` a large structure instead (:class:`SamplerConfig`)."""
        large = self.config.p_large > 0 and rng.random() < self.config.p_large
        if self._groups is not None:
            g = int(rng.choice(len(self._groups), p=[p for p, _, _, _ in self._groups]))
            _, names, by_name, big = self._groups[g]
        else:
            names, by_name, big = self.names, self.by_name, self.large
        if large and big[0]:
            names, by_name = big
        name = names[int(rng.integers(len(names)))]
        cands = by_name[name]
        return cands[int(rng.integers(len(cands)))], name

    def _center(self, vol: _Volume, label_id: int, rng: np.random.Generator) -> np.ndarray:
        pts = vol.case.points[label_id]
        zyx = pts[int(rng.integers(len(pts)))]
        p = vol.index_to_world @ np.array([zyx[2], zyx[1], zyx[0], 1.0])
        half = self.spacing * np.array(self.patch_size[::-1], float) / 2
        return p[:3] + rng.uniform(-1, 1, 3) * self.config.jitter * 2 * half

    # ---- resampling -----------------------------------------------------------------
    def _sample(self, vol: _Volume, p2w: np.ndarray, what: str) -> torch.Tensor:
        """Resample ``vol.ct`` (HU, float) or ``vol.label`` (float ids) onto the patch grid.

        Outside the cached array: air and label 0, except with ``ct_outside: "edge"`` beyond the
        faces that are the scan's own (``CachedCase.scan_faces``), where the CT *and* the labels
        repeat the face's voxels — as the session's crops repeat the image, and with the labels
        saying that what continues there is still the structure. Beyond a face of the crop to
        non-air voxels the scan held air, and air it stays."""
        p2i = vol.w2i @ p2w
        shape = np.array(vol.ct.shape)
        corners = patch_corners_index(p2i, self.patch_size)
        lo_u = np.floor(corners.min(0)).astype(int)[::-1] - 1  # z, y, x, unclamped
        hi_u = np.ceil(corners.max(0)).astype(int)[::-1] + 2
        lo, hi = np.maximum(lo_u, 0), np.minimum(hi_u, shape)
        out_shape = (1, 1) + self.patch_size
        if np.any(hi - lo < 1):  # the patch misses the volume entirely
            fill = float(AIR_HU) if what == "ct" else 0.0
            return torch.full(out_shape, fill, device=self.device)
        src = vol.ct if what == "ct" else vol.label
        sub = src[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]].float()
        if what == "ct":
            sub = sub - AIR_HU  # zero padding == air
        if self.config.ct_outside == "edge":
            sub, lo = _pad_scan_faces(sub, lo, lo - lo_u, hi_u - hi, vol.case.scan_faces)
        pad = [(0, max(0, 2 - s)) for s in sub.shape]  # align_corners needs >= 2 voxels per axis
        if any(p[1] for p in pad):
            sub = F.pad(sub, (0, pad[2][1], 0, pad[1][1], 0, pad[0][1]))
        shift = np.eye(4)
        shift[:3, 3] = -lo[::-1]
        theta = theta_for_grid(shift @ p2i, self.patch_size, sub.shape)
        grid = F.affine_grid(
            torch.as_tensor(theta, dtype=torch.float32, device=self.device)[None], list(out_shape), align_corners=True
        )
        mode = "bilinear" if what == "ct" else "nearest"
        out = F.grid_sample(sub[None, None], grid, mode=mode, padding_mode="zeros", align_corners=True)
        return out + AIR_HU if what == "ct" else out

    def _to_unit(self, hu: torch.Tensor) -> torch.Tensor:
        """HU ``(1, 1, D, H, W)`` -> ``(1, C, D, H, W)`` in [0, 1], one channel per window."""
        return torch.cat([((hu - lo) / (hi - lo)).clamp_(0.0, 1.0) for lo, hi in self.windows], dim=1)

    # ---- public ---------------------------------------------------------------------
    def patch(self, case_index: int, center_lps, what: str = "ct", rotation=None, scale: float = 1.0) -> torch.Tensor:
        """One patch of a case around ``center_lps`` (LPS mm), no augmentation.

        Args:
            case_index: index into the sampler's cases.
            center_lps: patch centre ``(x, y, z)`` in LPS mm.
            what: ``"ct"`` (HU, trilinear, pad -1024) or ``"label"`` (ids, nearest, pad 0).
            rotation, scale: optional 3×3 rotation (LPS) and zoom of the patch grid.

        Returns:
            float32 ``(1, 1, D, H, W)`` on the sampler's device, indexed ``[z, y, x]``.
        """
        if what not in ("ct", "label"):
            raise ValueError(f"what must be 'ct' or 'label', got {what!r}")
        p2w = patch_to_world(center_lps, self.spacing, self.patch_size, rotation, scale)
        return self._sample(self.volumes[case_index], p2w, what)

    def sample(self, rng: np.random.Generator, batch_size: int, draws: list[tuple[int, str]] | None = None) -> dict:
        """One batch.

        Args:
            rng: source of all randomness (seed it per step for exact resumption).
            batch_size: B.
            draws: optional fixed ``(case index, structure name)`` per item (validation).

        Returns:
            dict with ``image`` (B,C,D,H,W) float32 in [0, 1], ``target`` (B,1,D,H,W) float32
            {0, 1}; when CPP is on also ``image_v`` (B,C,D,H,W), ``target_v``, ``heatmap_v``
            (B,1,D,H,W), ``cpp_point`` long (B, 3) (the heatmap's peak voxel z, y, x),
            ``cpp_offset`` long (B, 3) (V's voxel ``i`` is U's voxel ``i + offset``, z, y, x;
            zeros for an invalid pair) and ``cpp_valid`` bool (B,); plus ``case_ids`` and
            ``structures`` (lists of str).
        """
        cfg = self.config
        imgs, tgts, imv, tgv, offs, valid, cids, names = [], [], [], [], [], [], [], []
        for b in range(batch_size):
            for attempt in range(8):
                ci, name = draws[b] if draws is not None else self.draw(rng)
                vol = self.volumes[ci]
                sid = vol.case.structures[name].label_id
                aug = draw_spatial(self.augment, rng)
                center = self._center(vol, sid, rng) + aug.translation
                p2w = patch_to_world(center, self.spacing, self.patch_size, aug.rotation, aug.scale)
                lab = self._sample(vol, p2w, "label")
                tgt = (lab == sid).float()
                if tgt.sum() >= cfg.min_voxels or attempt == 7:
                    break
            hu = self._sample(vol, p2w, "ct")
            if self.augment is not None:  # a contrast phase on the labelled structures (off by default)
                hu = apply_contrast(hu, lab, vol.names, self.augment.p_contrast, rng,
                                    self.augment.contrast_gradient)
            hu = apply_intensity(hu, self.augment, rng)
            imgs.append(self._to_unit(hu))
            tgts.append(tgt)
            cids.append(vol.case.case_id)
            names.append(name)
            if cfg.cpp:
                v_img, v_tgt, ok, off = self._neighbour(vol, sid, p2w, rng, tgt)
                imv.append(v_img)
                tgv.append(v_tgt)
                valid.append(ok)
                offs.append(off)
        out = {"image": torch.cat(imgs), "target": torch.cat(tgts), "case_ids": cids, "structures": names}
        if cfg.cpp:
            tv = torch.cat(tgv)
            ok = torch.tensor(valid, device=self.device)
            pts, _ = deepest_points(tv)
            out.update(
                image_v=torch.cat(imv),
                target_v=tv,
                heatmap_v=gaussian_heatmap(pts, self.patch_size, cfg.cpp_sigma, ok),
                cpp_point=pts,
                cpp_offset=torch.tensor(offs, dtype=torch.long, device=self.device).reshape(-1, 3),
                cpp_valid=ok,
            )
        return out

    def touching(self, target_u: torch.Tensor) -> np.ndarray:
        """Directions ``(k, 3)`` as ``(dx, dy, dz)`` whose face/edge/corner slab of the U target
        ``(1, 1, D, H, W)`` holds at least ``cpp_face_voxels`` structure voxels (the rule of
        :func:`ctsam3d.inference.expansion.touching_directions`, there in ``(dz, dy, dx)``)."""
        m = self.config.cpp_face_margin
        t = target_u[0, 0] > 0.5
        out = []
        for d in NEIGHBOURS:
            region = []
            for n, di in zip(t.shape, d[::-1]):  # z, y, x
                region.append(slice(0, n) if di == 0 else (slice(n - m, n) if di > 0 else slice(0, m)))
            if int(t[tuple(region)].sum()) >= self.config.cpp_face_voxels:
                out.append(d)
        return np.array(out, float).reshape(-1, 3)

    def _neighbour(self, vol: _Volume, sid: int, p2w: np.ndarray, rng: np.random.Generator, target_u=None):
        cfg = self.config
        n = np.array(self.patch_size[::-1], float)
        lab = None
        dirs = None
        if cfg.cpp_directions == "touching":
            dirs = self.touching(target_u)
            dirs = dirs[rng.permutation(len(dirs))]
        elif cfg.cpp_directions != "any":
            raise ValueError(f"cpp_directions must be 'any' or 'touching', got {cfg.cpp_directions!r}")
        for t in range(cfg.cpp_tries):
            if dirs is not None:
                if t >= len(dirs):
                    break
                d = dirs[t]
            elif t == 0:
                d = NEIGHBOURS[int(rng.integers(26))]
            else:  # aim at a structure voxel, seen from U's centre in U's patch frame
                pts = vol.case.points[sid]
                zyx = pts[int(rng.integers(len(pts)))]
                w = vol.index_to_world @ np.array([zyx[2], zyx[1], zyx[0], 1.0])
                rel = (np.linalg.inv(p2w) @ w)[:3] - (n - 1) / 2
                d = np.where(np.abs(rel) > n / 4, np.sign(rel), 0.0)
                if not d.any():
                    d = NEIGHBOURS[int(rng.integers(26))]
            side = n * rng.uniform(cfg.cpp_shift[0], cfg.cpp_shift[1])  # (x, y, z) patch voxels
            shift = np.eye(4)
            shift[:3, 3] = d * np.round(side)  # V's index i is U's index i + shift (x, y, z)
            p2w_v = p2w @ shift
            lab = self._sample(vol, p2w_v, "label")
            tgt = (lab == sid).float()
            if tgt.sum() >= cfg.cpp_min_voxels:
                hu = apply_intensity(self._sample(vol, p2w_v, "ct"), self.augment, rng)
                return self._to_unit(hu), tgt, True, [int(v) for v in shift[:3, 3][::-1]]
        z = torch.zeros((1, 1) + self.patch_size, device=self.device)
        return torch.zeros((1, len(self.windows)) + self.patch_size, device=self.device), z, False, [0, 0, 0]
