"""Running the model on lattice patches: crop, encode (cached), decode, cross-patch prompts.

Everything here speaks lattice patch starts ``(z, y, x)`` and patch voxel indices
``(z, y, x)``; the input image is only touched by :meth:`PatchRunner.crop`, which samples
the patch directly from the input image (through a small sub-image around the patch, so a
huge volume is never copied or resampled as a whole).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk
import torch

from ..geometry import crop_patch, normalize_windows, patch_region
from ..geometry.reference_grid import normalize_reference, sample_reference_block
from ..modeling.cpp_frame import cpp_inputs, frame_of
from .lattice import Lattice
from .patch_cache import EncodedPatch, FeatureCache

__all__ = ["PatchRunner", "Timer"]

Key = tuple[int, int, int]
Click = tuple[int, int, int]


@dataclass
class Timer:
    """Accumulates milliseconds per stage (crop, encode, decode, cpp, ...)."""

    ms: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, t0: float) -> None:
        self.ms[stage] = self.ms.get(stage, 0.0) + (time.perf_counter() - t0) * 1000.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PatchRunner:
    """Model calls on patches of one input image.

    Args:
        model: a CT-SAM3D model (``encode``, ``render_prompt``, ``decode``, ``cpp``, ``config``).
        image: the input CT (any orientation, HU).
        lattice: the session's canonical lattice of ``image``.
        cache: encoded-patch LRU cache.
        hu_window: ``(low, high)`` HU of the model's intensity window (input channel 0); a model
            whose config has more windows (``config.windows()``) gets one channel per window.
        mirror: average every decode with the decode of the left-right mirrored patch (lattice
            x, the patient's left-right axis, reversed: crop, clicks and previous mask), in logit
            space. The encoder and decoder then run on twice the batch. Anatomy is nearly
            symmetric left to right, so the mirrored patch is still a body the model knows
            (mirroring front-back or head-foot is not: it lowered OpenKBP validation Dice@1
            from 0.727 to 0.658 and 0.682). On OpenKBP validation it raised Dice@1/@5 from
            0.727/0.819 to 0.734/0.823 (``docs/training.md`` §9).
    """

    def __init__(self, model, image: sitk.Image, lattice: Lattice, cache: FeatureCache, hu_window,
                 mirror: bool = False):
        self.model = model
        self.image = image
        self.lattice = lattice
        self.cache = cache
        self.hu_window = tuple(float(v) for v in hu_window)
        windows = getattr(getattr(model, "config", None), "windows", None)
        self.windows = (self.hu_window,) + tuple(windows()[1:]) if callable(windows) else (self.hu_window,)
        try:
            self.device = next(model.parameters()).device
        except (StopIteration, AttributeError):
            self.device = torch.device("cpu")
        self.mirror = bool(mirror)
        self.counts = {"encoded": 0, "decoded": 0, "cpp": 0}

    # ------------------------------------------------------------------ cropping
    def crop(self, start: Key) -> np.ndarray:
        """HU crop ``(D, H, W)`` float32 of the patch at lattice ``start``. Where the patch leaves
        the image it takes the nearest image voxel's value (edge replication; a patch wholly
        outside the image is air, -1024): a CT that ends inside the body (a 40 mm slab, a
        crop) then continues as its last slice rather than as air, which on slabs of a training
        CT raised Dice@1/@5 from 0.491/0.718 to 0.560/0.764 and left OpenKBP validation
        unchanged (docs/training.md §9).

        On a reference lattice (reference-exact models) the crop is the released pipeline's:
        the block of the input resampled on its RAI grid, in the input's pixel type (int16
        values truncated toward zero, as the release does).
        """
        grid = self.lattice.grid(start)
        if self.lattice.reference:
            return sample_reference_block(self.image, self.lattice.reference_grid(), start, grid.size)
        region = patch_region(grid, self.image)
        if min(s.stop - s.start for s in region) <= 0:
            return crop_patch(self.image, grid)  # all padding; cheap, nothing overlaps
        size = self.image.GetSize()
        lo = [max(region[2 - a].start - 2, 0) for a in range(3)]  # (i, j, k)
        hi = [min(region[2 - a].stop + 2, size[a]) for a in range(3)]
        sub = self.image[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        return crop_patch(sub, grid, edge=True)

    # ------------------------------------------------------------------ encoder
    @torch.inference_mode()
    def encode(self, starts: list[Key], timer: Timer) -> list[EncodedPatch]:
        """Encoded patches for ``starts`` (cache hits reused; misses encoded in one batch)."""
        out: dict[Key, EncodedPatch] = {}
        missing: list[Key] = []
        for s in starts:
            item = self.cache.get(s)
            if item is None or (self.mirror and item.mirrored is None):
                if s not in missing:
                    missing.append(s)
            else:
                out[s] = item
        if missing:
            t0 = time.perf_counter()
            if self.lattice.reference:  # the released normalisation, bit for bit (one window)
                crops = [normalize_reference(self.crop(s), self.hu_window)[None] for s in missing]
            else:
                crops = [normalize_windows(self.crop(s), self.windows) for s in missing]  # (C, D, H, W) each
            batch = torch.from_numpy(np.stack(crops)).to(self.device)
            timer.add("crop", t0)
            t0 = time.perf_counter()
            n = len(missing)
            feats = self.model.encode(torch.cat([batch, batch.flip(-1)]) if self.mirror else batch)
            _sync(self.device)
            timer.add("encode", t0)
            self.counts["encoded"] += n
            for b, s in enumerate(missing):
                mirrored = [f[n + b : n + b + 1] for f in feats] if self.mirror else None
                item = EncodedPatch(batch[b : b + 1], [f[b : b + 1] for f in feats], mirrored)
                self.cache.put(s, item)
                out[s] = item
        return [out[s] for s in starts]

    # ------------------------------------------------------------------ decoder
    @torch.inference_mode()
    def segment(
        self,
        starts: list[Key],
        positives: list[list[Click]],
        negatives: list[list[Click]],
        previous: list[np.ndarray | None],
        timer: Timer,
    ) -> tuple[list[np.ndarray], list[float]]:
        """Decode a batch of patches.

        Args:
            starts: lattice starts of the patches.
            positives, negatives: per patch, clicks as patch voxel indices ``(z, y, x)``.
            previous: per patch, the previous probability ``(D, H, W)`` or None (first click).

        Returns:
            (probabilities ``(D, H, W)`` float32 per patch, quality per patch).
        """
        encoded = self.encode(starts, timer)
        t0 = time.perf_counter()
        n_levels = len(encoded[0].features)
        feats = [torch.cat([e.features[level] for e in encoded]) for level in range(n_levels)]
        if self.mirror:  # the mirrored patches ride in the same batch, after the originals
            feats = [torch.cat([f] + [e.mirrored[level] for e in encoded]) for level, f in enumerate(feats)]
        prev = None
        if any(p is not None for p in previous):
            shape = self.lattice.patch_size
            prev_np = np.stack([np.zeros(shape, np.float32) if p is None else p for p in previous])
            prev = torch.from_numpy(prev_np.astype(np.float32, copy=False)[:, None]).to(self.device)
        pos = [[tuple(int(v) for v in c) for c in lst] for lst in positives]
        neg = [[tuple(int(v) for v in c) for c in lst] for lst in negatives]
        prompt = self.model.render_prompt(pos, neg, prev).to(self.device)
        b = len(starts)
        if self.mirror:
            prompt = torch.cat([prompt, prompt.flip(-1)])
        logits, quality = self.model.decode(feats, prompt)
        if self.mirror:  # mean logit of the patch and its mirror (mirrored back)
            logits = 0.5 * (logits[:b].float() + logits[b:].float().flip(-1))
            quality = 0.5 * (quality[:b].float() + quality[b:].float())
        probs = torch.sigmoid(logits.float())[:, 0].cpu().numpy()
        _sync(self.device)
        timer.add("decode", t0)
        self.counts["decoded"] += len(starts)
        q = quality.float().reshape(b, -1)[:, 0].cpu().tolist()
        return [probs[b] for b in range(len(starts))], q

    # ------------------------------------------------------------------ cross-patch prompts
    @torch.inference_mode()
    def cpp(self, sources: list[Key], source_masks: list[np.ndarray], targets: list[Key], timer: Timer) -> list[np.ndarray]:
        """CPP heatmaps ``(D, H, W)`` in each target patch from (source image, source mask).

        ``source_masks`` are binary ``(D, H, W)`` masks of the source patches. The net sees each
        pair in its CPP frame (``config.cpp.frame``): for ``"v"`` the source's image and mask
        are moved into the target's grid by the lattice offset ``target - source``
        (:func:`ctsam3d.modeling.cpp_frame.cpp_inputs`, the function training uses).
        """
        enc_src = self.encode(sources, timer)
        enc_dst = self.encode(targets, timer)
        t0 = time.perf_counter()
        image_u = torch.cat([e.image for e in enc_src])
        image_v = torch.cat([e.image for e in enc_dst])
        mask_u = torch.from_numpy(np.stack(source_masks).astype(np.float32)[:, None]).to(self.device)
        offsets = [[int(v) - int(u) for u, v in zip(su, tv)] for su, tv in zip(sources, targets)]
        heat = self.model.cpp(*cpp_inputs(image_u, mask_u, image_v, offsets, frame_of(self.model)))
        out = heat.float()[:, 0].cpu().numpy()
        _sync(self.device)
        timer.add("cpp", t0)
        self.counts["cpp"] += len(targets)
        return [out[b] for b in range(len(targets))]
