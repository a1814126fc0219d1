"""The one registry of model presets: name -> function returning a fresh :class:`ModelConfig`.

* ``ctsam3d-paper``: the reference sizes (3D ResT-v2 tiny encoder, 5-level PSAP decoder of
  width 256, MONAI U-Net CPP net 16…256), 1.5 mm, 64³ patches, HU window [−125, 225]. The
  released weights are imported with ``reference_exact=True``; a paper-size model we train
  uses the improved prompts (``reference_exact=False``).
* ``ctsam3d-lite``: for laptop CPUs. Compact conv encoder (16…128 channels, stride-2 stem),
  4-level PSAP decoder with light SPADE blocks (one conv, 16-channel prompt convs, 1×1 γ/β)
  and the prompt also fed to the full-resolution head, small CPP U-Net (8…64). 3 mm, 64³
  patches (a 192 mm cube, close to OpenKBP's native 2–5 mm voxels).
* ``ctsam3d-lite-wb``: ``ctsam3d-lite`` with a second input channel, the same HU through a
  wide lung/bone window [−1000, 1000] (the soft-tissue window [−125, 225] makes lung, air and
  fat one value and every bone one value) — for whole-body CT (issue 16). The CPP net takes
  5 channels (image U ×2, mask U, image V ×2), with U's image and mask moved into V's grid
  (``cpp.frame = "v"``, :mod:`.cpp_frame`). Lite weights initialise it where shapes allow
  (:mod:`ctsam3d.training.init_weights`).
"""

from __future__ import annotations

from collections.abc import Callable

from .._version import __version__
from ..errors import CheckpointError
from .config import CppConfig, DecoderConfig, EncoderConfig, ModelConfig, PromptConfig, QualityConfig


def paper() -> ModelConfig:
    return ModelConfig(
        preset="ctsam3d-paper",
        spacing_mm=1.5,
        patch_size=(64, 64, 64),
        hu_window=(-125.0, 225.0),
        reference_exact=False,
        encoder=EncoderConfig(
            kind="restv2",
            dims=(96, 192, 384, 768),
            depths=(1, 2, 6, 2),
            heads=(1, 2, 4, 8),
            sr_ratios=(8, 4, 2, 1),
            skip_channels=(128, 128, 128, 256),
            first_stride=4,
        ),
        decoder=DecoderConfig(
            up_channels=(128, 128, 128, 128, 64),
            hidden=128,
            convs_per_block=2,
            gamma_kernel=3,
            mask_outputs=2,
            head="conv",
            head_prompt=False,
            head_kernel=3,
        ),
        quality=QualityConfig(hidden=256, layers=3, outputs=2, mask_stats=False),
        cpp=CppConfig(channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2),
        prompt=PromptConfig(sigma=2.0, radius=8),
        reference_pe_buffer=True,
        package_version=__version__,
    )


def lite() -> ModelConfig:
    return ModelConfig(
        preset="ctsam3d-lite",
        spacing_mm=3.0,
        patch_size=(64, 64, 64),
        hu_window=(-125.0, 225.0),
        reference_exact=False,
        encoder=EncoderConfig(
            kind="conv",
            dims=(16, 32, 64, 128),
            depths=(1, 1, 1, 1),
            heads=(),
            sr_ratios=(),
            skip_channels=(8, 16, 32, 64),
            first_stride=2,
        ),
        decoder=DecoderConfig(
            up_channels=(32, 16, 8, 1),
            hidden=16,
            convs_per_block=1,
            gamma_kernel=1,
            mask_outputs=1,
            head="transpose",
            head_prompt=True,
            head_kernel=3,
        ),
        quality=QualityConfig(hidden=32, layers=2, outputs=1, mask_stats=True),
        cpp=CppConfig(channels=(8, 16, 32, 64), strides=(2, 2, 2), num_res_units=1),
        prompt=PromptConfig(sigma=2.0, radius=8),
        reference_pe_buffer=False,
        package_version=__version__,
    )


#: The wide window of ``ctsam3d-lite-wb``'s second channel (HU): air/lung to cortical bone.
WIDE_WINDOW: tuple[float, float] = (-1000.0, 1000.0)


def lite_wb() -> ModelConfig:
    cfg = lite()
    cfg.preset = "ctsam3d-lite-wb"
    cfg.extra_hu_windows = (WIDE_WINDOW,)
    cfg.cpp.frame = "v"  # CPP input on V's grid (modeling/cpp_frame.py; docs/training.md §9)
    return cfg


PRESETS: dict[str, Callable[[], ModelConfig]] = {
    "ctsam3d-paper": paper,
    "ctsam3d-lite": lite,
    "ctsam3d-lite-wb": lite_wb,
}


def get_preset(name: str) -> ModelConfig:
    """A fresh :class:`ModelConfig` for a preset name; CheckpointError naming the choices."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise CheckpointError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None
