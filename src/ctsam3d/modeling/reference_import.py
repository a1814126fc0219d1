"""Import the released CT-SAM3D weights (``params.pth`` + ``config.py``) as a ``ctsam3d-paper`` model.

The release is a torch file holding ``{"model_state_dict": {name: tensor}}`` (428 tensors:
ResT-v2 encoder, PSAP decoder, CPP U-Net, one unused PE matrix) and a ``config.py`` of
``cfg.a.b = value`` assignments. Our ``ctsam3d-paper`` network uses the same parameter names,
so the mapping is 1:1 with one change of convention: the reference orders the prompt channels
(previous mask, positive, negative) while ours are (positive, negative, previous mask), so the
input-channel axis of every ``mlp_shared.0.weight`` is permuted accordingly.

Safety: the checkpoint is read with ``torch.load(weights_only=True)``; a file that needs
arbitrary code to unpickle is refused. ``config.py`` is parsed with :mod:`ast`, never executed.
The converted model has ``reference_exact=True`` (the reference's click rendering and trilinear
prompt resizing) so it computes the released function.
"""

from __future__ import annotations

import ast
import logging
import pickle
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from .checkpoint import load_state_strict
from .config import ModelConfig
from .ctsam3d import CTSAM3D, build_model
from .presets import get_preset

log = logging.getLogger(__name__)

#: reference prompt channel (prev, pos, neg) feeding each of our channels (pos, neg, prev)
PROMPT_CHANNEL_PERMUTATION = [1, 2, 0]
SUPPORTED_NETWORKS = ("restv2_tiny",)
#: the release ships no CPP peak threshold; config.cpp.peak_threshold keeps the preset's default
CPP_THRESHOLD_NOTE = "default 0.5, not calibrated on the released weights"
RELEASE_NOTE = {
    "source": "released CT-SAM3D weights (Guo et al., arXiv 2403.15063), Apache-2.0",
    "data": "TotalSeg++: 1204 whole-body CTs, 107 structures (TotalSegmentator v1 + 3 tissue classes)",
}


# --------------------------------------------------------------------------- config.py
def read_reference_config(path: str | Path) -> dict[str, Any]:
    """Literal ``cfg.<dotted.name> = value`` assignments of a reference ``config.py``.

    Returns ``{"dataset.patch_size": [64, 64, 64], "network": "restv2_tiny", ...}``. Values
    that are not Python literals (``os.path.join(...)``) are skipped. Nothing is executed.
    """
    path = Path(path)
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: cannot read config ({exc})") from None
    except SyntaxError as exc:
        raise CheckpointError(f"{path}: not valid Python (line {exc.lineno})") from None
    values: dict[str, Any] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Assign):
            continue
        for target in node.targets:
            name = _dotted(target)
            if name is None or not name.startswith("cfg."):
                continue
            try:
                values[name[4:]] = ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                continue
    return values


def _dotted(node: ast.AST) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def config_from_reference(values: dict[str, Any], *, source: str = "config.py") -> ModelConfig:
    """``ctsam3d-paper`` :class:`ModelConfig` (``reference_exact=True``) from reference values."""
    cfg = get_preset("ctsam3d-paper")
    cfg.reference_exact = True
    network = values.get("network", "restv2_tiny")
    if network not in SUPPORTED_NETWORKS:
        raise CheckpointError(f"{source}: network {network!r} is not supported (only {SUPPORTED_NETWORKS})")
    try:
        lo = float(values.get("dataset.normalization_params.min_value", cfg.hu_window[0]))
        hi = float(values.get("dataset.normalization_params.max_value", cfg.hu_window[1]))
        cfg.hu_window = (lo, hi)
        cfg.spacing_mm = float(values.get("dataset.target_spacing", cfg.spacing_mm))
        patch = values.get("dataset.patch_size", list(cfg.patch_size))
        cfg.patch_size = tuple(int(p) for p in patch)  # type: ignore[assignment]
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: unusable value ({exc})") from None
    cfg.training = dict(RELEASE_NOTE, network=network, cpp_peak_threshold=CPP_THRESHOLD_NOTE)
    try:
        from ..anatomy import get_catalogue

        cfg.structures = [name for _, name in sorted(get_catalogue("ctsam3d_107").labels.items())]
    except Exception as exc:  # the catalogue is optional metadata
        log.debug("no ctsam3d_107 catalogue: %s", exc)
    cfg.validate()
    return cfg


# --------------------------------------------------------------------------- params.pth
def load_reference_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The ``model_state_dict`` of a released ``params.pth``, read with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path}: refusing to load: the file needs arbitrary code to unpickle ({first[:160]})"
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({str(exc).splitlines()[0][:160]})") from None
    if isinstance(obj, dict) and "model_state_dict" in obj:
        state = obj["model_state_dict"]
    elif isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        state = obj  # a bare state dict
    else:
        keys = sorted(obj)[:5] if isinstance(obj, dict) else type(obj).__name__
        raise CheckpointError(f"{path}: no 'model_state_dict' in the checkpoint (found {keys})")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: 'model_state_dict' is not a dict")
    if state and all(k.startswith("module.") for k in state):  # saved from DistributedDataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    return dict(state)


def map_reference_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Reference names -> ours (identical) with the prompt-channel permutation applied."""
    out = {}
    for k, v in state.items():
        if k.endswith("mlp_shared.0.weight") and isinstance(v, torch.Tensor) and v.ndim == 5 and v.shape[1] == 3:
            v = v[:, PROMPT_CHANNEL_PERMUTATION].contiguous()
        out[k] = v
    return out


def convert_reference(params_path: str | Path, config_path: str | Path | None = None) -> CTSAM3D:
    """Build a ``ctsam3d-paper`` model (``reference_exact=True``) from the released files.

    ``config_path`` defaults to ``config.py`` next to ``params_path`` when present (else the
    released defaults: 1.5 mm, 64³, [−125, 225] HU). Every key and shape must match.
    """
    params_path = Path(params_path)
    if config_path is None and (params_path.parent / "config.py").is_file():
        config_path = params_path.parent / "config.py"
    if config_path is not None:
        config = config_from_reference(read_reference_config(config_path), source=str(config_path))
    else:
        log.info("%s: no config.py beside it; using the released defaults", params_path)
        config = config_from_reference({})
    state = map_reference_state(load_reference_state(params_path))
    model = build_model(config)
    load_state_strict(model, state, str(params_path))
    return model.eval()
