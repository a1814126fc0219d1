"""One interactive training step as an ``nn.Module`` (so DDP wraps the whole thing).

``forward(batch, ...)`` encodes each patch once, runs ``n_iters`` rounds of click
simulation — rounds 1..n-1 without gradients, each adding a corrective click and feeding
the previous probabilities back as the prompt's third channel (RITM/SAM style) — then
decodes the last round with gradients and returns the losses. The CPP net is trained on
the same batch's neighbour pairs: input [image U, ground-truth mask U, image V] in the model's
CPP frame (``config.cpp.frame``: U's arrays moved into V's grid by the pair's ``cpp_offset``
for ``"v"``, :func:`ctsam3d.modeling.cpp_frame.cpp_inputs`, as inference does), target the
Gaussian heatmap of ``structure ∩ V``. With ``parts="cpp"`` only the CPP loss is computed
(the loop freezes the rest of the model).

Tensors: ``image``, ``target``, ``image_v``, ``heatmap_v`` are ``(B, 1, D, H, W)`` on the
patch grid (z, y, x); clicks are patch voxel indices ``(z, y, x)``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..modeling.cpp_frame import cpp_inputs, frame_of
from .clicks import add_next_clicks, apply_rules, first_clicks, seed_previous
from .config import LossConfig
from .losses import MaskLoss, cpp_loss, hard_dice, quality_loss

__all__ = ["InteractiveStep"]


class InteractiveStep(nn.Module):
    """Wraps a :class:`~ctsam3d.modeling.CTSAM3D` and computes the training losses."""

    def __init__(self, model: nn.Module, loss: LossConfig, parts: str = "all") -> None:
        super().__init__()
        self.model = model
        self.loss_cfg = loss
        self.parts = parts  # "all" or "cpp" (only the CPP net's loss: no encode, no clicks)
        self.mask_loss = MaskLoss(loss.focal_weight, loss.dice_weight, loss.focal_alpha, loss.focal_gamma)

    def forward(
        self,
        batch: dict,
        n_iters: int,
        rng: np.random.Generator,
        *,
        p_random_first: float = 0.0,
        backend: str = "numpy",
        p_shape_first: float = 0.0,
        shape_rules: bool = False,
        autocast: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Losses of one batch (``total`` is the one to back-propagate).

        Returns:
            dict of scalar tensors: ``total``, ``mask``, ``focal``, ``dice``, ``cpp``,
            ``quality`` and ``train_dice`` (hard Dice of the last round, detached).
        """
        m = self.model
        image, target = batch["image"], batch["target"]
        dev_type = image.device.type
        if self.parts == "cpp":
            with torch.autocast(dev_type, dtype=torch.bfloat16, enabled=autocast):
                heat = m.cpp(*self._cpp_inputs(batch))
            cpp = cpp_loss(heat, batch["heatmap_v"], batch["cpp_valid"], self.loss_cfg.cpp_pos_weight)
            zero = torch.zeros((), device=image.device)
            return {"total": self.loss_cfg.cpp_weight * cpp, "cpp": cpp, "mask": zero, "focal": zero,
                    "dice": zero, "quality": zero, "train_dice": zero}
        with torch.autocast(dev_type, dtype=torch.bfloat16, enabled=autocast):
            feats = m.encode(image)
        clicks = first_clicks(target, rng, p_random_first, backend, p_shape_first, shape_rules)
        prev = seed_previous(clicks, target)  # a first lasso's inside (shape_rules), else None
        with torch.no_grad():
            for it in range(n_iters - 1):
                with torch.autocast(dev_type, dtype=torch.bfloat16, enabled=autocast):
                    prompt = m.render_prompt(clicks.pos, clicks.neg, prev)
                    logits, _ = m.decode(feats, prompt)
                prev = torch.sigmoid(logits.float())
                if it == 0:  # the shape's slice rule binds its own step, as in a session
                    prev = apply_rules(clicks, prev)
                add_next_clicks(clicks, target, prev, backend)
        with torch.autocast(dev_type, dtype=torch.bfloat16, enabled=autocast):
            prompt = m.render_prompt(clicks.pos, clicks.neg, prev)
            logits, quality = m.decode(feats, prompt)
        out = self.mask_loss(logits, target)
        q_loss, actual = quality_loss(quality, logits, target)
        out["quality"] = q_loss
        total = out["mask"] + self.loss_cfg.quality_weight * q_loss
        if "image_v" in batch:
            with torch.autocast(dev_type, dtype=torch.bfloat16, enabled=autocast):
                heat = m.cpp(*self._cpp_inputs(batch))
            out["cpp"] = cpp_loss(heat, batch["heatmap_v"], batch["cpp_valid"], self.loss_cfg.cpp_pos_weight)
            total = total + self.loss_cfg.cpp_weight * out["cpp"]
        else:
            out["cpp"] = torch.zeros((), device=image.device)
        out["total"] = total
        out["train_dice"] = actual.mean()
        return out

    def _cpp_inputs(self, batch: dict):
        """[image U, ground-truth mask U, image V] in the model's CPP frame."""
        return cpp_inputs(batch["image"], batch["target"], batch["image_v"], batch.get("cpp_offset"), frame_of(self.model))

