"""SPADE prompt blocks: spatially-adaptive modulation of decoder features by the prompt.

``SpadeNorm``: ``InstanceNorm(x) · (1 + γ(P)) + β(P)`` where ``P`` is the ``(B, 3, d, h, w)``
prompt already resized to x's scale and ``γ, β`` are convs on a shared ReLU conv of ``P``
(Park et al., CVPR 2019; the reference's PSAP blocks).

``SpadeBlock``: residual block ``x + conv(lrelu(norm(x, P)))`` with one (light) or two
(reference) norm→LeakyReLU(0.2)→conv stages. Shapes are preserved: ``(B, C, d, h, w)``.
Parameter names follow the released checkpoint (``conv_0``, ``norm_0.mlp_shared.0`` ...).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Conv3d, conv3d, instance_norm
from .spade_fold import apply_folded, folded_modulation, gamma_beta_weights_plus_one, shared_weights


class SpadeNorm(nn.Module):
    def __init__(
        self,
        channels: int,
        prompt_channels: int = 3,
        hidden: int = 128,
        gamma_kernel: int = 3,
        exact_norm: bool = False,
    ) -> None:
        super().__init__()
        self.exact_norm = exact_norm
        self.mlp_shared = nn.Sequential(Conv3d(prompt_channels, hidden, 3, padding=1), nn.ReLU())
        self.mlp_gamma = Conv3d(hidden, channels, gamma_kernel, padding=gamma_kernel // 2)
        self.mlp_beta = Conv3d(hidden, channels, gamma_kernel, padding=gamma_kernel // 2)

    def modulation(self, prompt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(γ, β), each ``(B, C, d, h, w)``, from the prompt at this scale."""
        actv = self.mlp_shared(prompt)
        return self.mlp_gamma(actv), self.mlp_beta(actv)

    def forward(
        self,
        x: torch.Tensor,
        prompt: torch.Tensor,
        actv: torch.Tensor | None = None,
        folded=None,
    ) -> torch.Tensor:
        """``actv``: this norm's shared-conv output when already computed; ``folded``: its
        entry of :func:`~ctsam3d.modeling.spade_fold.folded_modulation` (inference shortcuts
        taken by :class:`SpadeBlock`)."""
        if folded is not None:
            return apply_folded(instance_norm(x, eps=1e-5, exact=self.exact_norm), folded)
        if actv is None or torch.is_grad_enabled():
            gamma, beta = self.modulation(prompt)
            return instance_norm(x, eps=1e-5, exact=self.exact_norm) * (1 + gamma) + beta
        # inference: 1 + γ and β in one conv (same function, one pass over actv), applied in
        # one fused multiply-add
        c = self.mlp_gamma.out_channels
        w, b = gamma_beta_weights_plus_one(self)
        gb = conv3d(actv, w, b, self.mlp_gamma.padding[0])
        return torch.addcmul(gb[:, c:], instance_norm(x, eps=1e-5, exact=self.exact_norm), gb[:, :c])


class SpadeBlock(nn.Module):
    def __init__(
        self,
        channels: int,
        convs: int = 2,
        prompt_channels: int = 3,
        hidden: int = 128,
        gamma_kernel: int = 3,
        exact_norm: bool = False,
    ) -> None:
        super().__init__()
        if convs not in (1, 2):
            raise ValueError(f"convs_per_block must be 1 or 2, got {convs}")
        self.convs = convs
        self.conv_0 = Conv3d(channels, channels, 3, padding=1)
        self.norm_0 = SpadeNorm(channels, prompt_channels, hidden, gamma_kernel, exact_norm)
        if convs == 2:
            self.conv_1 = Conv3d(channels, channels, 3, padding=1)
            self.norm_1 = SpadeNorm(channels, prompt_channels, hidden, gamma_kernel, exact_norm)

    def forward(self, x: torch.Tensor, prompt: torch.Tensor) -> torch.Tensor:
        a0 = a1 = None
        gb0 = gb1 = None
        norms = [self.norm_0] + ([self.norm_1] if self.convs == 2 else [])
        folded = folded_modulation(norms, prompt) if not torch.is_grad_enabled() else None
        if folded is not None:  # sparse prompt: cached zero-prompt γβ, exact where the prompt reaches
            gb0 = folded[0]
            gb1 = folded[1] if self.convs == 2 else None
        elif not torch.is_grad_enabled():  # inference: both norms' shared convs in one pass
            w, b = shared_weights(norms)
            a = F.relu(conv3d(prompt, w, b, 1))
            h = norms[0].mlp_shared[0].out_channels
            a0 = a[:, :h]
            a1 = a[:, h:] if self.convs == 2 else None
        inplace = not torch.is_grad_enabled()  # inference: the norms' outputs and dx are fresh tensors
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, prompt, a0, gb0), 0.2, inplace=inplace))
        if self.convs == 2:
            dx = self.conv_1(F.leaky_relu(self.norm_1(dx, prompt, a1, gb1), 0.2, inplace=inplace))
        return dx.add_(x) if inplace else x + dx
