"""Training configuration: typed dataclasses read from a YAML or JSON file.

Unknown keys are refused with a one-line :class:`~ctsam3d.errors.InputError` naming the
key, so a typo never silently falls back to a default. Relative paths (caches, output
folder, initial weights) are relative to the current working directory. Values can be
overridden from the command line with ``section.key=value`` (YAML syntax for the value).

Example (``configs/smoke-cpu.yaml``)::

    output_dir: runs/smoke
    preset: ctsam3d-lite
    data: {train_cache: cache/openkbp-train, val_cache: cache/openkbp-validation}
    total_steps: 6
    batch_size: 2
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.augment import AugmentConfig
from ..data.sampler import SamplerConfig
from ..errors import InputError
from ..typed_dict import from_dict, to_plain

__all__ = [
    "TrainConfig",
    "DataConfig",
    "OptimConfig",
    "ClickConfig",
    "LossConfig",
    "ValConfig",
    "load_config",
    "config_from_dict",
    "config_to_dict",
]


@dataclass
class DataConfig:
    """Where the preprocessed caches are (``ctsam3d preprocess`` / ``ctsam3d synthesize``).

    train_cache: one cache folder, or a list of folders (e.g. real + synthetic + pseudo).
    train_weights: with a list, the probability that a draw uses each cache (normalised;
        default equal per cache, whatever their sizes); within a cache draws stay balanced
        per structure name.
    train_cases / val_cases: optional subsets of case ids (default: every case).
    """

    train_cache: str | list[str] = ""
    train_weights: list[float] | None = None
    val_cache: str | None = None
    train_cases: list[str] | None = None
    val_cases: list[str] | None = None

    def train_caches(self) -> list[str]:
        """The training cache folders as a list (a single string becomes a one-item list)."""
        return [self.train_cache] if isinstance(self.train_cache, str) else list(self.train_cache)


@dataclass
class OptimConfig:
    """AdamW with linear warm-up then cosine or step decay (per optimiser step).

    schedule: ``"cosine"`` (to ``min_lr_ratio · lr``), ``"step"`` (× ``step_gamma`` at each
        fraction of ``total_steps`` in ``step_milestones``) or ``"constant"``.
    grad_clip: max global gradient norm (0 = off).
    """

    lr: float = 1e-3
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 100
    schedule: str = "cosine"
    min_lr_ratio: float = 0.02
    step_milestones: tuple[float, ...] = (0.8,)
    step_gamma: float = 0.1
    grad_clip: float = 5.0


@dataclass
class ClickConfig:
    """Interactive click simulation during training.

    iterations: click-simulation rounds per sample (previous prediction fed back, gradients
        only on the last); with ``random_iterations`` each step draws 1..iterations.
    p_random_first: probability that the first click is a random interior voxel instead of
        the distance-transform maximum.
    backend: ``"numpy"`` = :mod:`ctsam3d.clicks` (exact protocol, CPU, SciPy) or ``"torch"``
        = batched on the training device (largest error *type*, deepest voxel by erosion;
        see :mod:`ctsam3d.training.clicks`). ``"auto"``: torch on CUDA, numpy on CPU.
    """

    iterations: int = 5
    random_iterations: bool = True
    p_random_first: float = 0.3
    backend: str = "auto"
    p_shape_first: float = 0.0  # issue 18: first prompt a simulated 2D box / lasso / scribble (as clicks); off
    shape_rules: bool = False  # and its slice rule too: a lasso's inside seeds the previous mask, outside is background


@dataclass
class LossConfig:
    """Loss weights: mask = focal_weight·focal + dice_weight·Dice (MONAI); CPP MSE; quality MSE.

    cpp_pos_weight: the CPP heatmap's squared errors are weighted ``1 + cpp_pos_weight ·
        target`` (normalised by the weights' sum). The Gaussian target covers ~0.2 % of a
        64³ patch, so plain MSE (0) is minimised by predicting ~0 everywhere: the starter's
        CPP net trained that way peaked at ~0.1, never on the structure. 500 puts about
        half the weight on the blob (sigma 3 voxels) and half on the background.
    """

    focal_weight: float = 0.2
    dice_weight: float = 0.8
    focal_alpha: float = 0.8
    focal_gamma: float = 2.0
    cpp_weight: float = 1.0
    cpp_pos_weight: float = 500.0
    quality_weight: float = 0.1


@dataclass
class ValConfig:
    """Periodic validation: Dice after each number of simulated clicks in ``clicks`` on a fixed
    set of ``patches`` patches of the validation cache (no augmentation)."""

    every: int = 500
    patches: int = 64
    clicks: tuple[int, ...] = (1, 3, 5)
    batch_size: int = 8
    seed: int = 1234


@dataclass
class TrainConfig:
    """Everything a training run needs (see ``docs/training.md``).

    device: ``"auto"`` (cuda when available), ``"cpu"``, ``"cuda"``, ``"cuda:N"``; under
        torchrun each rank uses ``cuda:LOCAL_RANK``.
    amp: ``"auto"`` (bf16 autocast on CUDA, off on CPU), ``"bf16"`` or ``"off"``.
    sampling: ``"loader"`` (DataLoader worker processes build batches on CPU) or ``"device"``
        (volumes kept on the training device, patches resampled there; no workers).
    workers: DataLoader worker processes per rank (0 = in the training process).
    max_minutes: stop cleanly (checkpoint + export) after this wall time; None = no limit.
    fit_to_budget: with ``max_minutes``, time ~20 early steps and shorten the LR schedule
        (``total_steps``) so that it ends within the budget (stored in the checkpoint, so a
        resumed run keeps the same schedule).
    threads: torch CPU threads of each training process (None = torch's default).
    model_overrides: nested dict merged into the preset's ModelConfig (e.g. tiny widths).
    init_weights: a saved model folder/file to fine-tune from (None = from scratch).
    train_parts: ``"all"`` or ``"cpp"``: train only the cross-patch prompt net (the rest
        frozen, no click simulation; much cheaper), e.g. to (re)train the CPP net of a model.
    """

    output_dir: str = "runs/train"
    data: DataConfig = field(default_factory=DataConfig)
    preset: str = "ctsam3d-lite"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    init_weights: str | None = None
    train_parts: str = "all"
    total_steps: int = 1000
    batch_size: int = 4
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    sampling: str = "loader"
    workers: int = 2
    prefetch: int = 4
    checkpoint_every: int = 100
    log_every: int = 10
    max_minutes: float | None = None
    fit_to_budget: bool = False
    threads: int | None = None
    resume: bool = True
    tensorboard: bool = True
    progress: bool = True
    find_unused_parameters: bool = False
    optim: OptimConfig = field(default_factory=OptimConfig)
    clicks: ClickConfig = field(default_factory=ClickConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    val: ValConfig = field(default_factory=ValConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)

    def check(self) -> None:
        """Raise InputError for values that cannot work."""
        if not self.data.train_cache:
            raise InputError("config: data.train_cache is required (a folder from 'ctsam3d preprocess')")
        caches = self.data.train_caches()
        if not all(isinstance(c, str) and c for c in caches):
            raise InputError(f"config: data.train_cache must be a folder or a list of folders, got {self.data.train_cache!r}")
        if self.data.train_weights is not None and (
            len(self.data.train_weights) != len(caches) or min(self.data.train_weights) < 0 or sum(self.data.train_weights) <= 0
        ):
            raise InputError(
                f"config: data.train_weights needs one non-negative weight per train_cache ({len(caches)}), got {self.data.train_weights}"
            )
        if self.total_steps < 1 or self.batch_size < 1:
            raise InputError("config: total_steps and batch_size must be >= 1")
        if self.amp not in ("auto", "bf16", "off"):
            raise InputError(f"config: amp must be auto, bf16 or off, got {self.amp!r}")
        if self.sampling not in ("loader", "device"):
            raise InputError(f"config: sampling must be 'loader' or 'device', got {self.sampling!r}")
        if self.optim.schedule not in ("cosine", "step", "constant"):
            raise InputError(f"config: optim.schedule must be cosine, step or constant, got {self.optim.schedule!r}")
        if self.clicks.backend not in ("auto", "numpy", "torch"):
            raise InputError(f"config: clicks.backend must be auto, numpy or torch, got {self.clicks.backend!r}")
        if self.train_parts not in ("all", "cpp"):
            raise InputError(f"config: train_parts must be 'all' or 'cpp', got {self.train_parts!r}")
        if self.train_parts == "cpp" and not self.sampler.cpp:
            raise InputError("config: train_parts 'cpp' needs sampler.cpp: true (the CPP pairs)")
        if self.clicks.iterations < 1:
            raise InputError("config: clicks.iterations must be >= 1")


def config_from_dict(data: dict) -> TrainConfig:
    """A checked :class:`TrainConfig` from a plain dict (as read from YAML/JSON)."""
    if not isinstance(data, dict):
        raise InputError("config: expected a mapping at the top level")
    cfg = from_dict(TrainConfig, data, "config", InputError)
    cfg.check()
    return cfg


def config_to_dict(cfg: TrainConfig) -> dict:
    """Plain JSON-able dict (tuples become lists)."""
    return to_plain(cfg)


def _set_path(data: dict, dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    d = data
    for k in keys[:-1]:
        d = d.setdefault(k, {})
        if not isinstance(d, dict):
            raise InputError(f"override {dotted!r}: {k!r} is not a section")
    d[keys[-1]] = value


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML (``.yaml``/``.yml``) or JSON config file and apply ``key.sub=value`` overrides.

    Raises:
        InputError: missing/unparsable file, unknown keys, wrong value types.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: config file does not exist")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
    except Exception as exc:  # noqa: BLE001 - any parse error is the user's file
        raise InputError(f"{p}: cannot parse config ({str(exc).splitlines()[0]})") from None
    for item in overrides or []:
        if "=" not in item:
            raise InputError(f"override {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        import yaml

        _set_path(data, key.strip(), yaml.safe_load(raw))
    return config_from_dict(data)
