"""PSAP decoder: progressively and spatially aligned prompts, one SPADE block per scale.

Coarse to fine, level ``i`` (1-based names as in the released checkpoint):

    x = f4                                   (coarsest encoder feature)
    x = spade1(x, P@f4-size); x = upscale1(x)
    x = cat(x, f3); x = spade2(x, P@size); x = upscale2(x)   ... while skips remain
    x = spadeN(x, P@size); x = upscaleN(x)                    (full patch resolution)
    logits = mask_prediction_head(x [+ P at full size])[:, :1]   (head="conv")
    quality = iou_prediction_head(x, logits)

Upsampling is ``ConvTranspose3d(k=2, s=2) → channel LayerNorm → GELU`` ("CNA").
``P`` is the ``(B, 3, D, H, W)`` prompt (pos, neg, previous mask) resized to each scale by
:func:`ctsam3d.modeling.prompts.resize_prompt` (max pooling by default, trilinear in
reference-exact mode). Output: mask **logits** ``(B, 1, D, H, W)`` (sigmoid gives the
reference's probabilities) and predicted Dice ``(B, 1)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .fused_head import upsample_head
from .layers import Conv3d, ConvTranspose2x, conv3d, conv3d_one_output
from .prompts import PromptPyramid
from .quality import QualityHead
from .spade import SpadeBlock


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of ``(B, C, D, H, W)`` (eps 1e-6)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.permute(0, 2, 3, 4, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        return y.permute(0, 4, 1, 2, 3)


class Upscale(nn.Module):
    """×2 upsampling: ConvTranspose3d(k=2, s=2) → channel LayerNorm → GELU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.cna = nn.Sequential(ConvTranspose2x(cin, cout), ChannelLayerNorm(cout), nn.GELU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or torch.is_grad_enabled():
            return self.cna(x)
        # CPU inference, fused: rows of (voxel, 2x2x2 offset), then one rearrangement to the grid
        b, cin, d, h, w = x.shape
        cout = self.cna[0].out_channels
        y = self.rows(x.permute(0, 2, 3, 4, 1).reshape(-1, cin))
        y = y.view(b, d, h, w, 2, 2, 2, cout).permute(0, 1, 4, 2, 5, 3, 6, 7)
        return y.reshape(b, 2 * d, 2 * h, 2 * w, cout).permute(0, 4, 1, 2, 3)

    def rows(self, xt: torch.Tensor) -> torch.Tensor:
        """The CNA on channels-last rows (inference): ``xt`` ``(N, Cin)``, one row per input
        voxel → ``(8 N, Cout)``, rows ordered (voxel, kz, ky, kx): one matmul (+bias), then
        LayerNorm and GELU per row."""
        conv, ln = self.cna[0], self.cna[1]
        cout = conv.out_channels
        wt = conv.weight.permute(0, 2, 3, 4, 1).reshape(xt.shape[1], 8 * cout)  # columns (kz, ky, kx, co)
        y = torch.addmm(conv.bias.repeat(8), xt, wt).view(-1, cout)
        return F.gelu(F.layer_norm(y, (cout,), ln.weight, ln.bias, ln.eps))


class PSAPDecoder(nn.Module):
    """See the module docstring. ``head="conv"`` (reference): the last level upsamples with a
    CNA to full resolution and a ``head_kernel`` conv gives the logits. ``head="transpose"``
    (light): the last upsampling *is* the head, a ConvTranspose(k=2, s=2) straight to logits,
    plus (``head_prompt``) a 1×1 conv of the full-resolution prompt — no wide full-size tensor.
    """

    def __init__(
        self,
        skip_channels: tuple[int, ...],
        up_channels: tuple[int, ...],
        *,
        hidden: int = 128,
        convs_per_block: int = 2,
        gamma_kernel: int = 3,
        mask_outputs: int = 2,
        head: str = "conv",
        head_prompt: bool = False,
        head_kernel: int = 3,
        quality: QualityHead,
        reference: bool = False,
        prompt_channels: int = 3,
    ) -> None:
        super().__init__()
        if head not in ("conv", "transpose"):
            raise ValueError(f"decoder head must be 'conv' or 'transpose', got {head!r}")
        self.levels = len(up_channels)
        self.n_skips = len(skip_channels)
        self.head = head
        self.head_prompt = head_prompt
        self.reference = reference
        ch = skip_channels[-1]
        self.block_channels = []
        for i in range(self.levels):
            if i > 0:
                ch = up_channels[i - 1] + (skip_channels[-(i + 1)] if i < self.n_skips else 0)
            self.block_channels.append(ch)
            setattr(
                self,
                f"spade{i + 1}",
                SpadeBlock(ch, convs_per_block, prompt_channels, hidden, gamma_kernel, exact_norm=reference),
            )
            if head == "conv" or i < self.levels - 1:
                setattr(self, f"upscale{i + 1}", Upscale(ch, up_channels[i]))
        if head == "conv":
            head_in = up_channels[-1] + (prompt_channels if head_prompt else 0)
            self.mask_prediction_head = nn.Sequential(
                Conv3d(head_in, mask_outputs, head_kernel, padding=head_kernel // 2)
            )
            self.quality_channels = up_channels[-1]
        else:
            self.mask_prediction_head = nn.Sequential(ConvTranspose2x(ch, mask_outputs))
            if head_prompt:
                self.prompt_head = Conv3d(prompt_channels, mask_outputs, 1)
            self.quality_channels = ch
        self.iou_prediction_head = quality

    def forward(self, features: list[torch.Tensor], prompt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """features: encoder outputs fine→coarse; prompt ``(B, 3, D, H, W)`` at patch size.

        Returns ``(mask_logits (B, 1, D, H, W), quality (B, 1))``.
        """
        x = features[-1]
        pyramid = PromptPyramid(prompt, reference=self.reference)
        for i in range(self.levels):
            if i > 0:
                x = getattr(self, f"upscale{i}")(x)
                if i < self.n_skips:
                    x = torch.cat([x, features[-(i + 1)]], dim=1)
            x = getattr(self, f"spade{i + 1}")(x, pyramid.at(x.shape[2:]))
        if self.head == "conv":
            upscale, head = getattr(self, f"upscale{self.levels}"), self.mask_prediction_head[0]
            if (
                not torch.is_grad_enabled()
                and x.device.type == "cpu"
                and not self.head_prompt
                and head.padding[0] == head.kernel_size[0] // 2
            ):  # inference: upsampling and the used head channel streamed in slabs
                logits, pooled = upsample_head(x, upscale, head)
                return logits, self.iou_prediction_head.from_pooled(pooled, logits)
            x = upscale(x)
            head_in = torch.cat([x, prompt], dim=1) if self.head_prompt else x
            if torch.is_grad_enabled():
                logits = head(head_in)[:, :1]
            elif head_in.device.type == "cpu" and head.padding[0] == head.kernel_size[0] // 2:
                # inference: only the channel that is used
                logits = conv3d_one_output(head_in, head.weight[:1], head.bias[:1])
            else:
                logits = conv3d(head_in, head.weight[:1], head.bias[:1], head.padding[0])
        else:
            logits = self.mask_prediction_head(x)[:, :1]
            if self.head_prompt:
                logits = logits + self.prompt_head(prompt)[:, :1]
        return logits, self.iou_prediction_head(x, logits)
