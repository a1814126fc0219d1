"""Typed configuration of a CT-SAM3D network, saved as JSON next to the weights.

A :class:`ModelConfig` says everything needed to rebuild a network and to feed it:

* the patch it expects (``patch_size`` voxels ``(D, H, W)`` = ``(z, y, x)`` on an isotropic
  canonical grid of ``spacing_mm`` millimetres, intensities clipped to ``hu_window`` HU and
  scaled to [0, 1]; one more input channel per entry of ``extra_hu_windows``, the same HU
  clipped to that window — :meth:`ModelConfig.windows`, ``in_channels``);
* which prompt behaviour the weights were trained with (``reference_exact``);
* the sizes of every part (encoder, PSAP decoder, quality head, CPP net);
* what it was trained on (structure names, training-data summary) and the package version.

``reference_exact=True`` reproduces the released CT-SAM3D network bit for bit: click maps
rendered by overwriting (later clicks win) and min–max normalised, prompts resized to every
decoder scale by trilinear interpolation. ``False`` (the default for models we train) renders
clicks with max-combination and resizes click maps with max pooling so that a click survives
at every scale (see :mod:`ctsam3d.modeling.prompts`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from ..typed_dict import from_dict, to_plain

FORMAT_VERSION = 1


@dataclass
class EncoderConfig:
    """Image encoder sizes.

    kind: ``"restv2"`` (3D ResT-v2 transformer, the reference) or ``"conv"`` (compact CNN).
    dims: channels of the four stages (strides ``first_stride``, ×2, ×2, ×2 relative to the patch).
    depths: blocks per stage.
    heads, sr_ratios: attention heads / spatial-reduction ratios per stage (restv2 only).
    skip_channels: channels of the four 1×1 skip projections handed to the decoder.
    first_stride: stride of the first stage (4 for restv2's conv stem, 2 for the conv encoder).
    """

    kind: str = "restv2"
    dims: tuple[int, ...] = (96, 192, 384, 768)
    depths: tuple[int, ...] = (1, 2, 6, 2)
    heads: tuple[int, ...] = (1, 2, 4, 8)
    sr_ratios: tuple[int, ...] = (8, 4, 2, 1)
    skip_channels: tuple[int, ...] = (128, 128, 128, 256)
    first_stride: int = 4


@dataclass
class DecoderConfig:
    """PSAP decoder sizes (one SPADE prompt block per scale, coarse to fine).

    up_channels: output channels of each transposed-conv upsampling, coarse to fine; the
        decoder has ``len(up_channels)`` levels and ends at the full patch resolution.
    hidden: channels of the shared prompt conv inside each SPADE norm.
    convs_per_block: 2 = SPADE residual block of the reference; 1 = light block.
    gamma_kernel: kernel of the γ/β convs (3 in the reference, 1 is cheaper).
    mask_outputs: channels of the mask head (the reference has 2 and uses channel 0).
    head: ``"conv"`` (reference: CNA upsampling to full size, then a conv) or ``"transpose"``
        (light: the last ConvTranspose(k=2, s=2) outputs the logits; ``up_channels[-1]`` must
        equal ``mask_outputs``).
    head_prompt: concatenate the full-resolution prompt to the head input (prompt at full scale).
    head_kernel: kernel of the mask head conv.
    """

    up_channels: tuple[int, ...] = (128, 128, 128, 128, 64)
    hidden: int = 128
    convs_per_block: int = 2
    gamma_kernel: int = 3
    mask_outputs: int = 2
    head: str = "conv"
    head_prompt: bool = False
    head_kernel: int = 3


@dataclass
class QualityConfig:
    """Quality head: an MLP on pooled final decoder features predicting the Dice of its mask.

    outputs: width of the last layer (reference: 2, channel 0 is used).
    mask_stats: also feed the mean foreground probability and mean p·(1−p) uncertainty.
    """

    hidden: int = 256
    layers: int = 3
    outputs: int = 2
    mask_stats: bool = False


@dataclass
class CppConfig:
    """Cross-patch prompt net: a MONAI residual 3D U-Net, input [image U, mask U, image V].

    ``peak_threshold``: heatmap peaks at or above it become clicks in the neighbour patch.
    Training calibrates it on validation pairs (:mod:`ctsam3d.training.cpp_validation`) and
    stores it here, since the scale of a heatmap depends on how the net was trained. 0.5 is
    a default, not a calibrated value: checkpoints that predate calibration and converted
    released weights carry it (the release ships no threshold, and nothing here has measured
    where its CPP net's peaks land);
    ``None`` when calibration found no threshold at which the peaks land on the structure
    often enough — sessions then continue masks through the patch overlap instead
    (:mod:`ctsam3d.inference.expansion`).

    ``frame``: the grid the net's input is expressed on (:mod:`ctsam3d.modeling.cpp_frame`):
    ``"own"`` — image U, mask U, image V each on its own patch grid (the released net; configs
    saved before this field load with it); ``"v"`` — U's image and mask moved into V's grid
    (zero outside the overlap), next to image V. Same channel count either way.
    """

    channels: tuple[int, ...] = (16, 32, 64, 128, 256)
    strides: tuple[int, ...] = (2, 2, 2, 2)
    num_res_units: int = 2
    peak_threshold: float | None = 0.5
    frame: str = "own"


@dataclass
class PromptConfig:
    """Click rendering: a 3D Gaussian of ``sigma`` voxels truncated at ``radius`` voxels."""

    sigma: float = 2.0
    radius: int = 8


@dataclass
class ModelConfig:
    """Everything needed to rebuild and feed a network; stored as ``config.json``.

    Geometry: ``patch_size`` is ``(D, H, W)`` = ``(z, y, x)`` voxels of an isotropic grid of
    ``spacing_mm`` mm; ``hu_window`` is the (low, high) HU clip mapped to [0, 1] for input
    channel 0. ``extra_hu_windows`` adds one input channel per window (e.g. a wide
    lung/bone window ``(-1000, 1000)`` next to the soft-tissue one): the image the network
    takes is ``(B, in_channels, D, H, W)``, channel ``c`` = the HU patch through
    ``windows()[c]`` (the CPP net takes ``2 · in_channels + 1``: image U, mask U, image V).
    Configs saved before this field existed load with ``()`` (one channel, as before).
    """

    preset: str
    spacing_mm: float
    patch_size: tuple[int, int, int]
    hu_window: tuple[float, float] = (-125.0, 225.0)
    extra_hu_windows: tuple[tuple[float, float], ...] = ()
    reference_exact: bool = False
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    cpp: CppConfig = field(default_factory=CppConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    reference_pe_buffer: bool = False  # keep the reference's unused 3×128 PE matrix (1:1 names)
    structures: list[str] = field(default_factory=list)
    training: dict[str, Any] = field(default_factory=dict)
    package_version: str = ""
    format_version: int = FORMAT_VERSION

    # ---- derived ---------------------------------------------------------------------
    def windows(self) -> tuple[tuple[float, float], ...]:
        """The (low, high) HU window of each input channel, channel 0 first."""
        return (tuple(self.hu_window),) + tuple(tuple(w) for w in self.extra_hu_windows)

    @property
    def in_channels(self) -> int:
        """Image channels the encoder takes (one per HU window)."""
        return 1 + len(self.extra_hu_windows)

    def feature_sizes(self) -> list[tuple[int, int, int]]:
        """Spatial sizes (z, y, x) of the four encoder features, fine to coarse."""
        s = self.encoder.first_stride
        out = []
        for _ in range(4):
            out.append(tuple(p // s for p in self.patch_size))
            s *= 2
        return out

    def validate(self) -> None:
        """Raise :class:`CheckpointError` when sizes are inconsistent."""
        if len(self.patch_size) != 3 or any(int(p) <= 0 for p in self.patch_size):
            raise CheckpointError(f"config: patch_size must be 3 positive ints, got {self.patch_size}")
        deepest = self.encoder.first_stride * 8
        if any(p % deepest for p in self.patch_size):
            raise CheckpointError(
                f"config: patch_size {tuple(self.patch_size)} must be divisible by {deepest} "
                f"(encoder stride)"
            )
        if self.spacing_mm <= 0:
            raise CheckpointError(f"config: spacing_mm must be > 0, got {self.spacing_mm}")
        lo, hi = self.hu_window
        if not hi > lo:
            raise CheckpointError(f"config: hu_window must be (low, high), got {self.hu_window}")
        for w in self.extra_hu_windows:
            if len(w) != 2 or not w[1] > w[0]:
                raise CheckpointError(f"config: each extra_hu_windows entry must be (low, high), got {w}")
        if self.extra_hu_windows and self.encoder.kind != "conv":
            raise CheckpointError(
                f"config: extra_hu_windows needs the conv encoder (kind 'conv'); the {self.encoder.kind!r} "
                f"encoder takes one channel (the paper preset keeps its single window)"
            )
        if self.cpp.frame not in ("own", "v"):
            raise CheckpointError(f"config: cpp.frame must be 'own' or 'v', got {self.cpp.frame!r}")
        if self.encoder.kind not in ("restv2", "conv"):
            raise CheckpointError(f"config: unknown encoder kind {self.encoder.kind!r}")
        for name in ("dims", "depths", "skip_channels"):
            if len(getattr(self.encoder, name)) != 4:
                raise CheckpointError(f"config: encoder.{name} must have 4 entries")
        if self.decoder.head not in ("conv", "transpose"):
            raise CheckpointError(f"config: decoder.head must be 'conv' or 'transpose', got {self.decoder.head!r}")
        if self.decoder.head == "transpose" and self.decoder.up_channels[-1] != self.decoder.mask_outputs:
            raise CheckpointError("config: with decoder.head='transpose', up_channels[-1] must equal mask_outputs")
        # the decoder must end at full resolution: coarsest feature × 2^levels == patch
        levels = len(self.decoder.up_channels)
        if self.encoder.first_stride * 8 != 2**levels:
            raise CheckpointError(
                f"config: decoder has {levels} levels but the encoder's total stride is "
                f"{self.encoder.first_stride * 8}; they must match (2**levels)"
            )

    # ---- JSON ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "config") -> "ModelConfig":
        """Build from a dict, refusing unknown or missing keys with a one-line error."""
        if not isinstance(data, dict):
            raise CheckpointError(f"{source}: expected a JSON object")
        try:
            return from_dict(cls, data, source, CheckpointError)
        except CheckpointError:
            raise
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"{source}: invalid model config ({exc})") from None

    @classmethod
    def from_json(cls, path: str | Path) -> "ModelConfig":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CheckpointError(f"{path}: no config.json next to the weights") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CheckpointError(f"{path}: not a readable JSON model config ({exc})") from None
        cfg = cls.from_dict(data, source=str(path))
        cfg.validate()
        return cfg


