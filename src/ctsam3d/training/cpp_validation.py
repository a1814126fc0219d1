"""Validation of the cross-patch prompt (CPP) net, and calibration of its peak threshold.

Fixed neighbour pairs ``(U, V)`` are drawn once from the validation cache (no augmentation,
fixed seed) with the training sampler's rule: ``V`` is ``U`` shifted by half to one patch
side and holds the structure. For each pair the CPP net's heatmap in ``V`` gives its top
peak: value and whether it lies on the structure (within one voxel, the voxel-accuracy a
click needs). Inference turns peaks at or above a threshold into clicks
(:mod:`ctsam3d.inference.expansion`), so the threshold decides between completing a
structure and clicking off it. It is chosen here as the value that maximises
``hits − 2 · misses`` among the pairs whose peak reaches it (a click off the structure costs
more than a missed continuation, which the user can still click), and exported in the
model's config (``cpp.peak_threshold``).

The net sees each pair in its CPP frame (``config.cpp.frame``; U moved into V's grid by the
pair's offset for ``"v"``, :func:`ctsam3d.modeling.cpp_frame.cpp_inputs`, as inference does).
For reference, ``cpp_hit_continuation`` is the same score for the click mask continuation
would place (:func:`ctsam3d.inference.expansion.continuation_clicks` on U's ground-truth mask,
its first click; a pair whose overlap holds no mask counts as a miss) — what sessions do when
the net has no threshold.

Tensors: ``(B, 1, D, H, W)`` on the patch grid, indexed ``[z, y, x]``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.sampler import PatchSampler, SamplerConfig
from ..modeling.cpp_frame import cpp_inputs, frame_of, to_v_frame

__all__ = ["CppValidationSet", "calibrate_threshold", "MISS_COST"]

#: a peak off the structure counts this many hits against a threshold
MISS_COST = 2.0
#: a threshold must let at least this share of the pairs through (and 3 pairs) to be useful
MIN_FIRE = 0.1
#: pairs are drawn this many at a time (memory: only the valid ones are kept)
CHUNK = 32


def calibrate_threshold(peaks: np.ndarray, hits: np.ndarray, miss_cost: float = MISS_COST, min_fire: float = MIN_FIRE) -> float | None:
    """The peak threshold maximising ``hits − miss_cost · misses`` over the pairs it lets
    through, among thresholds that let at least ``min_fire`` of the pairs (and 3) through;
    None when none has a positive score (the net is not useful).

    Args:
        peaks: ``(N,)`` top-peak value of each validation pair.
        hits: ``(N,)`` bool, whether that peak lies on the structure.
    """
    peaks = np.asarray(peaks, float)
    hits = np.asarray(hits, bool)
    n_min = max(3, int(np.ceil(min_fire * peaks.size)))
    if peaks.size < n_min:
        return None
    order = np.argsort(-peaks)
    gain = np.where(hits[order], 1.0, -float(miss_cost))
    score = np.cumsum(gain)[n_min - 1 :]  # threshold peaks[order][k] lets pairs 0..k through
    k = int(np.argmax(score))
    if score[k] <= 0:
        return None
    return float(peaks[order][k + n_min - 1])


class CppValidationSet:
    """Fixed CPP validation pairs (kept on CPU) and their scoring.

    Args:
        cases: cached validation cases.
        patch_size, spacing_mm, hu_window: from the ModelConfig.
        pairs: number of pairs drawn (those whose ``V`` misses the structure are dropped).
        seed: draw seed.
        config: the training run's sampler settings; its pair rule (``cpp_shift``,
            ``cpp_directions``, face slab) is used, so validation pairs are drawn like the
            training pairs (default: the default rule).
    """

    def __init__(self, cases, patch_size, spacing_mm, hu_window, pairs: int = 64, seed: int = 4321,
                 config: SamplerConfig | None = None) -> None:
        base = config or SamplerConfig()
        rule = SamplerConfig(cpp=True, cpp_shift=tuple(base.cpp_shift), cpp_directions=base.cpp_directions,
                             cpp_face_margin=base.cpp_face_margin, cpp_face_voxels=base.cpp_face_voxels)
        sampler = PatchSampler(cases, patch_size, spacing_mm, hu_window, augment=None, config=rule)
        rng = np.random.default_rng(seed)
        keep: dict[str, list] = {k: [] for k in ("image", "target", "image_v", "target_v", "cpp_offset", "structures")}
        for start in range(0, pairs, CHUNK):  # the same draws as one batch (items consume the RNG in turn),
            batch = sampler.sample(rng, min(CHUNK, pairs - start))  # without holding the invalid ones
            ok = batch["cpp_valid"].cpu()
            for k in keep:
                keep[k] += [s for s, v in zip(batch[k], ok.tolist()) if v] if k == "structures" else [batch[k][ok]]
        cat = {k: torch.cat(v) for k, v in keep.items() if k != "structures"}
        self.image, self.mask, self.image_v, self.target_v = cat["image"], cat["target"], cat["image_v"], cat["target_v"]
        self.offset = cat["cpp_offset"]  # (N, 3) z, y, x: V's voxel i is U's voxel i + offset
        self._continuation: float | None = None
        self.structures = keep["structures"]

    def __len__(self) -> int:
        return len(self.structures)

    def peaks(self, model: nn.Module, batch_size: int = 8, device="cpu", autocast: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """``(peak value (N,), on-structure (N,) bool)`` of each pair's top heatmap peak."""
        vals, hits, _ = self._top_peaks(model, batch_size, device, autocast)
        return vals, hits

    def _top_peaks(self, model: nn.Module, batch_size: int, device, autocast: bool):
        """:meth:`peaks` plus, per pair, whether the top peak lies outside the ``U ∩ V`` overlap."""
        vals, hits, beyond = [], [], []
        was_training = model.training
        model.eval()
        dev_type = torch.device(device).type
        with torch.no_grad():
            for i in range(0, len(self), batch_size):
                sl = slice(i, i + batch_size)
                inputs = cpp_inputs(self.image[sl], self.mask[sl], self.image_v[sl], self.offset[sl], frame_of(model))
                with torch.autocast(dev_type, dtype=torch.bfloat16, enabled=autocast):
                    heat = model.cpp(*(t.to(device) for t in inputs))
                heat = heat.float().cpu().flatten(1)
                near = F.max_pool3d(self.target_v[sl].float(), 3, stride=1, padding=1).flatten(1) > 0
                top = heat.argmax(1)
                vals.append(heat.gather(1, top[:, None])[:, 0].numpy())
                hits.append(near.gather(1, top[:, None])[:, 0].numpy())
                seen = torch.stack([to_v_frame(torch.ones(self.mask.shape[2:]), o) for o in self.offset[sl].tolist()])
                beyond.append((seen.flatten(1).gather(1, top[:, None])[:, 0] == 0).numpy())
        model.train(was_training)
        if not vals:
            return np.zeros(0), np.zeros(0, bool), np.zeros(0, bool)
        return np.concatenate(vals), np.concatenate(hits).astype(bool), np.concatenate(beyond).astype(bool)

    def continuation_hit(self) -> float:
        """Share of pairs whose mask-continuation click (first, largest overlap piece) lies on
        the structure (within one voxel, as for the net's peak); computed once."""
        if self._continuation is None:
            from ..inference.expansion import continuation_clicks

            near = F.max_pool3d(self.target_v.float(), 3, stride=1, padding=1)[:, 0] > 0
            hits = 0
            for b in range(len(self)):
                clicks = continuation_clicks(self.mask[b, 0].numpy() > 0.5, (0, 0, 0), self.offset[b].tolist(), 1)
                hits += bool(clicks) and bool(near[b][clicks[0]])
            self._continuation = hits / max(len(self), 1)
        return self._continuation

    def evaluate(self, model: nn.Module, batch_size: int = 8, device="cpu", autocast: bool = False) -> dict:
        """``{"cpp_hit": share of pairs whose top peak is on the structure, "cpp_peak":
        median top-peak value, "cpp_threshold": calibrated threshold (nan if none),
        "cpp_fire": share of pairs at or above it, "cpp_precision": hits among those,
        "cpp_hit_beyond": share of pairs whose top peak is on the structure *outside* the
        ``U ∩ V`` overlap (where mask continuation never clicks),
        "cpp_hit_continuation": the mask-continuation click's hit share, for reference}``."""
        vals, hits, beyond = self._top_peaks(model, batch_size, device, autocast)
        if vals.size == 0:
            return {}
        thr = calibrate_threshold(vals, hits)
        fire = vals >= thr if thr is not None else np.zeros_like(hits)
        return {
            "cpp_hit": float(hits.mean()),
            "cpp_peak": float(np.median(vals)),
            "cpp_threshold": float("nan") if thr is None else thr,
            "cpp_fire": float(fire.mean()),
            "cpp_precision": float(hits[fire].mean()) if fire.any() else float("nan"),
            "cpp_hit_beyond": float((hits & beyond).mean()),
            "cpp_hit_continuation": self.continuation_hit(),
        }


def main(argv: list[str] | None = None) -> int:
    """``python -m ctsam3d.training.cpp_validation --model M --cache C``: the CPP figures of a
    model on fixed validation pairs (JSON on stdout); nothing is written."""
    import argparse
    import json
    import sys

    from ..data.cache import load_cache
    from ..errors import CtSam3dError
    from ..modeling import load_model

    p = argparse.ArgumentParser(prog="python -m ctsam3d.training.cpp_validation", description=main.__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="model folder or name")
    p.add_argument("--cache", required=True, help="validation cache folder (ctsam3d preprocess)")
    p.add_argument("--draws", type=int, default=384, help="pair draws (pairs whose V misses the structure are dropped)")
    p.add_argument("--seed", type=int, default=4322)
    p.add_argument("--shift", type=float, default=0.75, help="V's shift as a fraction of the patch side")
    p.add_argument("--directions", default="touching", choices=("touching", "any"))
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        model = load_model(args.model, device="cpu")
        cfg = model.config
        rule = SamplerConfig(cpp=True, cpp_shift=(args.shift, args.shift), cpp_directions=args.directions)
        vs = CppValidationSet(load_cache(args.cache), cfg.patch_size, cfg.spacing_mm, cfg.windows(), args.draws, args.seed, rule)
    except CtSam3dError as exc:
        print(f"cpp_validation: error: {exc}", file=sys.stderr)
        return 1
    res = vs.evaluate(model)
    res.update(pairs=len(vs), draws=args.draws, seed=args.seed, frame=frame_of(model),
               model_threshold=cfg.cpp.peak_threshold, model=str(args.model))
    if cfg.cpp.peak_threshold is not None and len(vs):  # what sessions do with the model's own threshold
        vals, hits = vs.peaks(model)
        fire = vals >= cfg.cpp.peak_threshold
        res.update(model_fire=float(fire.mean()), model_precision=float(hits[fire].mean()) if fire.any() else None)
    res = {k: None if isinstance(v, float) and not np.isfinite(v) else v for k, v in res.items()}  # nan: none
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
