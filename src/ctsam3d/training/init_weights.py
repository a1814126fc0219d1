"""Initialise a network from a trained one whose image input has fewer channels.

``ctsam3d-lite-wb`` is ``ctsam3d-lite`` with a second image channel (a wide HU window). Every
weight has the same shape in both except the two layers that see the image:

* the encoder's first conv ``image_encoder.stages.0.0.0.weight``: ``(16, C, 3, 3, 3)``;
* the CPP net's input unit (conv and residual conv of ``cpp_predictor.model.0``):
  ``(8, 2C + 1, 3, 3, 3)``, channels ordered [image U (C), mask U, image V (C)].

:func:`adapt_state` copies every weight whose shape matches and, for those input layers,
puts the source's channels where they belong in the wider layer (image channel ``c`` of
the source -> channel ``c``; the mask -> channel ``C``) and fills the new channels with
zeros (``new_channels="zero"``: the network computes exactly what the source computed
until training moves those weights, since the instance norm after the conv sees the same
values) or small random values (``"small"``: ±1 % of the layer's weight scale). Anything
else that differs is an error naming the weight.
"""

from __future__ import annotations

import torch

from ..errors import InputError

__all__ = ["adapt_state"]


def _channel_map(key: str, c_src: int, c_dst: int) -> list[int] | None:
    """Destination channel of each source input channel for an input layer, else None."""
    if key.startswith("image_encoder."):
        return list(range(c_src))
    if key.startswith("cpp_predictor.model.0."):
        # [U_0..U_{C-1}, mask, V_0..V_{C-1}]
        return list(range(c_src)) + [c_dst] + [c_dst + 1 + c for c in range(c_src)]
    return None


def adapt_state(
    src: dict[str, torch.Tensor],
    dst_model: torch.nn.Module,
    c_src: int,
    c_dst: int,
    new_channels: str = "zero",
    generator: torch.Generator | None = None,
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """A state dict for ``dst_model`` built from ``src`` (see the module doc).

    Args:
        src: the source network's state dict.
        dst_model: the network to initialise (its own tensors give shapes and dtypes).
        c_src, c_dst: image channels of the source and destination networks.
        new_channels: ``"zero"`` or ``"small"``.
        generator: RNG for ``"small"``.

    Returns:
        (state dict for ``dst_model.load_state_dict(strict=True)``, keys that were widened).
    """
    if new_channels not in ("zero", "small"):
        raise InputError(f"init_weights: new_channels must be 'zero' or 'small', got {new_channels!r}")
    own = dst_model.state_dict()
    missing = sorted(set(own) - set(src))
    extra = sorted(set(src) - set(own))
    if missing or extra:
        raise InputError(f"init_weights: network differs (missing {missing[:3]}, unexpected {extra[:3]})")
    out: dict[str, torch.Tensor] = {}
    widened: list[str] = []
    for key, t in own.items():
        s = src[key]
        if tuple(s.shape) == tuple(t.shape):
            out[key] = s.to(t.dtype)
            continue
        cmap = _channel_map(key, c_src, c_dst)
        same_but_in = s.ndim == t.ndim >= 2 and s.shape[0] == t.shape[0] and s.shape[2:] == t.shape[2:]
        if cmap is None or not same_but_in or len(cmap) != s.shape[1] or max(cmap) >= t.shape[1]:
            raise InputError(
                f"init_weights: {key} has shape {tuple(s.shape)} in the source, {tuple(t.shape)} here "
                f"(only the image input layers may differ, by their input channels)"
            )
        w = torch.zeros_like(t)
        if new_channels == "small":
            w.normal_(0.0, 0.01 * float(s.float().std()), generator=generator)
        w[:, cmap] = s.to(t.dtype)
        out[key] = w
        widened.append(key)
    return out, widened
