"""CT-SAM3D: image encoder + prompt rendering + PSAP decoder (+ quality head) + CPP net.

Tensors (patch grid, see docs/architecture.md):

* image ``(B, C, D, H, W)`` float32 in [0, 1] after the HU windows (``C = config.in_channels``,
  channel c through ``config.windows()[c]``; 1 for the paper and lite presets), ``(D, H, W)`` = (z, y, x);
* prompt ``(B, 3, D, H, W)`` = positive map, negative map, previous-mask probability;
* clicks are patch voxel indices ``(z, y, x)``.

Typical use: ``feats = model.encode(image)`` once per patch, then per click
``prompt = model.render_prompt(pos, neg, prev)`` and ``logits, quality = model.decode(feats, prompt)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import InputError
from .config import ModelConfig
from .conv_encoder import ConvEncoder
from .cpp_net import build_cpp_net
from .prompts import build_prompt, render_click_maps
from .psap_decoder import PSAPDecoder
from .quality import QualityHead
from .restv2 import ResTV2Encoder


class _PELayer(nn.Module):
    """Holds the reference's unused 3×128 random-Fourier PE matrix (keeps names 1:1)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.zeros(3, 128))


class _PromptEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.pe_layer = _PELayer()


class CTSAM3D(nn.Module):
    def __init__(
        self,
        config: ModelConfig,
        image_encoder: nn.Module,
        mask_decoder: PSAPDecoder,
        cpp_predictor: nn.Module,
        prompt_encoder: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.image_encoder = image_encoder
        if prompt_encoder is not None:
            self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.cpp_predictor = cpp_predictor

    # ------------------------------------------------------------------ helpers
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def _check_image(self, x: torch.Tensor, name: str, channels: int = 1) -> None:
        stride = self.config.encoder.first_stride * 8
        if not isinstance(x, torch.Tensor) or x.ndim != 5 or x.shape[1] != channels:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise InputError(f"{name} must be a (B, {channels}, D, H, W) tensor, got {shape}")
        if any(s % stride for s in x.shape[2:]):
            raise InputError(f"{name}: spatial size {tuple(x.shape[2:])} must be divisible by {stride}")

    @staticmethod
    def _fmt(x: torch.Tensor) -> torch.Tensor:
        """channels_last_3d for CPU inference (oneDNN fast path), unchanged otherwise."""
        if x.device.type == "cpu" and not torch.is_grad_enabled():
            return x.contiguous(memory_format=torch.channels_last_3d)
        return x

    def optimize_for_inference(self) -> "CTSAM3D":
        """eval mode + channels_last_3d weights (same values; faster CPU inference)."""
        self.eval()
        return self.to(memory_format=torch.channels_last_3d)

    # ------------------------------------------------------------------ API
    def encode(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Image ``(B, C, D, H, W)`` in [0, 1] (C = ``config.in_channels``) -> four features, fine
        to coarse. Once per patch."""
        self._check_image(image, "image", channels=self.config.in_channels)
        return self.image_encoder(self._fmt(image))

    def render_prompt(
        self,
        pos_zyx: Sequence[Sequence[Sequence[float]]],
        neg_zyx: Sequence[Sequence[Sequence[float]]],
        prev_mask: torch.Tensor | None = None,
        *,
        size: tuple[int, int, int] | None = None,
        return_dropped: bool = False,
    ):
        """Clicks (per batch item, lists of patch voxel ``(z, y, x)``) + previous-mask
        probabilities ``(B, 1, D, H, W)`` or None -> prompt ``(B, 3, D, H, W)``.

        Clicks outside the patch are dropped and logged; ``return_dropped=True`` also returns
        them as ``[(batch index, "pos"|"neg", (z, y, x)), ...]``.
        """
        if size is None:
            size = tuple(prev_mask.shape[2:]) if prev_mask is not None else tuple(self.config.patch_size)
        maps, dropped = render_click_maps(
            pos_zyx,
            neg_zyx,
            size,
            sigma=self.config.prompt.sigma,
            radius=self.config.prompt.radius,
            reference=self.config.reference_exact,
            device=self.device,
        )
        prompt = build_prompt(maps, prev_mask)
        return (prompt, dropped) if return_dropped else prompt

    def decode(self, features: list[torch.Tensor], prompt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features from :meth:`encode` + prompt ``(B, 3, D, H, W)`` ->
        ``(mask_logits (B, 1, D, H, W), quality (B, 1))``; sigmoid(logits) > 0.5 is the mask.

        CPU inference decodes a batch item by item (every op is per item, so the result is the
        same): the SPADE folding of :mod:`.spade_fold`, which needs a batch of one, then applies
        to each patch, e.g. to the neighbours cross-patch expansion decodes together."""
        self._check_image(prompt, "prompt", channels=3)
        feats = [self._fmt(f) for f in features]
        prompt = self._fmt(prompt)
        if prompt.shape[0] > 1 and prompt.device.type == "cpu" and not torch.is_grad_enabled():
            outs = [self.mask_decoder([f[b : b + 1] for f in feats], prompt[b : b + 1]) for b in range(prompt.shape[0])]
            return torch.cat([o[0] for o in outs]).contiguous(), torch.cat([o[1] for o in outs])
        logits, quality = self.mask_decoder(feats, prompt)
        return logits.contiguous(), quality

    def cpp(self, image_u: torch.Tensor, mask_u: torch.Tensor, image_v: torch.Tensor) -> torch.Tensor:
        """Cross-patch prompt heatmap ``(B, 1, D, H, W)`` in V from image U, U's binary mask and
        image V (same-size patch grids): images ``(B, C, D, H, W)`` (C = ``config.in_channels``),
        mask ``(B, 1, D, H, W)``. U's image and mask must be on the grid ``config.cpp.frame``
        says — their own (``"own"``) or V's (``"v"``) — as
        :func:`ctsam3d.modeling.cpp_frame.cpp_inputs` builds them."""
        c = self.config.in_channels
        for name, t, ch in (("image_u", image_u, c), ("mask_u", mask_u, 1), ("image_v", image_v, c)):
            self._check_image(t, name, channels=ch)
        if not (image_u.shape == image_v.shape and image_u.shape[2:] == mask_u.shape[2:]):
            raise InputError("cpp: image_u, mask_u and image_v must have the same shape")
        x = torch.cat([image_u, mask_u.to(image_u.dtype), image_v], dim=1)
        return self.cpp_predictor(self._fmt(x)).contiguous()

    def forward(self, image: torch.Tensor, prompt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training convenience: ``decode(encode(image), prompt)``."""
        return self.decode(self.encode(image), prompt)


def build_model(config: ModelConfig) -> CTSAM3D:
    """A freshly initialised :class:`CTSAM3D` for ``config`` (validated)."""
    config.validate()
    enc = config.encoder
    if enc.kind == "restv2":
        encoder: nn.Module = ResTV2Encoder(enc.dims, enc.depths, enc.heads, enc.sr_ratios, enc.skip_channels)
    else:
        encoder = ConvEncoder(enc.dims, enc.depths, enc.skip_channels, in_ch=config.in_channels)
    dec = config.decoder
    q = config.quality
    decoder = PSAPDecoder(
        tuple(enc.skip_channels),
        tuple(dec.up_channels),
        hidden=dec.hidden,
        convs_per_block=dec.convs_per_block,
        gamma_kernel=dec.gamma_kernel,
        mask_outputs=dec.mask_outputs,
        head=dec.head,
        head_prompt=dec.head_prompt,
        head_kernel=dec.head_kernel,
        quality=QualityHead(
            _quality_channels(config), q.hidden, q.layers, q.outputs, q.mask_stats, raw=config.reference_exact
        ),
        reference=config.reference_exact,
    )
    cpp = build_cpp_net(config.cpp.channels, config.cpp.strides, config.cpp.num_res_units, 2 * config.in_channels + 1)
    pe = _PromptEncoder() if config.reference_pe_buffer else None
    return CTSAM3D(config, encoder, decoder, cpp, pe)


def _quality_channels(config: ModelConfig) -> int:
    """Channels of the final decoder features the quality head pools."""
    dec, enc = config.decoder, config.encoder
    if dec.head == "conv":
        return dec.up_channels[-1]
    levels = len(dec.up_channels)
    skip = enc.skip_channels[-levels] if levels - 1 < len(enc.skip_channels) else 0
    return dec.up_channels[-2] + skip if levels > 1 else enc.skip_channels[-1]
