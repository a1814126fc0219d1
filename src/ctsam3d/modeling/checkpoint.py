"""Save and load models: ``model.safetensors`` + ``config.json`` in one directory.

``load_model(path_or_preset=None, device="cpu")``:

* ``None`` -> the best model on this machine (:func:`ctsam3d.hub.registry.default_model`): the
  released CT-SAM3D weights when installed (``ctsam3d download``), else the bundled default
  (a clear :class:`CheckpointError` when there is none). Its name is logged and kept as
  ``model.model_name``;
* the name of a bundled or installed model (``ctsam3d models`` lists them, e.g. the bundled
  ``ctsam3d-lite-wb``, ``ct-sam3d-released``) -> that model;
* a preset name (``ctsam3d-lite``, ``ctsam3d-paper``) that no bundled model bears, or any preset
  name with ``untrained=True`` (``ctsam3d-lite-wb`` too) -> a freshly initialised, **untrained**
  model (a warning says so; the CLI and server refuse it without ``--untrained``);
* a directory, or a ``.safetensors`` file with ``config.json`` beside it -> our format;
* a ``.pth`` / ``.pt`` file -> the released CT-SAM3D ``params.pth``, converted on the fly
  (:mod:`ctsam3d.modeling.reference_import`; ``config.py`` beside it is read if present).

Every key, shape and dtype is checked against the network the config describes; anything
else (missing/extra key, wrong shape, another preset, corrupt file) raises CheckpointError.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import torch

from .._version import __version__
from ..errors import CheckpointError
from ..hub import registry as _registry
from .config import ModelConfig
from .ctsam3d import CTSAM3D, build_model
from .presets import PRESETS, get_preset

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
#: Folder of the bundled default model (the registry's entry marked default).
BUNDLED_DIR = _registry.WEIGHTS_ROOT / next((b.folder for b in _registry.BUNDLED if b.default), "ctsam3d-lite-wb")


def save_model(model: CTSAM3D, directory: str | Path) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``directory`` (created if needed).

    The config's ``package_version`` is set to this package's version. Returns the directory.
    """
    from safetensors.torch import save_file

    from ..io.write import atomic_path  # temporary file + rename, with the umask's file mode

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.config.package_version = __version__
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", "preset": model.config.preset})
    with atomic_path(directory / CONFIG_FILE) as tmp:
        tmp.write_text(model.config.to_json() + "\n", encoding="utf-8")
    return directory


def load_state_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy ``state`` into ``model``; CheckpointError naming any missing/extra key or shape/dtype mismatch."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    if missing:
        raise CheckpointError(f"{source}: missing {len(missing)} weight(s), e.g. {missing[:3]}")
    if extra:
        raise CheckpointError(f"{source}: {len(extra)} unexpected weight(s), e.g. {extra[:3]}")
    for k, t in own.items():
        v = state[k]
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(f"{source}: {k} is not a tensor")
        if tuple(v.shape) != tuple(t.shape):
            raise CheckpointError(f"{source}: {k} has shape {tuple(v.shape)}, the network expects {tuple(t.shape)}")
        if v.dtype != t.dtype:
            raise CheckpointError(f"{source}: {k} has dtype {v.dtype}, the network expects {t.dtype}")
    model.load_state_dict(state, strict=True)


def _finish(model: CTSAM3D, device: str | torch.device) -> CTSAM3D:
    model = model.to(device).eval()
    if torch.device(device).type == "cpu":
        model.optimize_for_inference()
    return model


def load_directory(directory: str | Path, device: str | torch.device = "cpu", *, weights: Path | None = None) -> CTSAM3D:
    """Load ``model.safetensors`` (or ``weights``) + ``config.json`` from ``directory``."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    weights = weights or directory / WEIGHTS_FILE
    config = ModelConfig.from_json(directory / CONFIG_FILE)
    if not weights.is_file():
        raise CheckpointError(f"{weights}: weights file not found")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{weights}: not a readable safetensors file ({exc})") from None
    model = build_model(config)
    _check_input_channels(model, state, config, str(weights))
    load_state_strict(model, state, str(weights))
    return _finish(model, device)


def _check_input_channels(model: CTSAM3D, state: dict[str, torch.Tensor], config: ModelConfig, source: str) -> None:
    """CheckpointError when the weights' image input channels differ from the config's HU windows
    (e.g. 2-channel ``ctsam3d-lite-wb`` weights with a 1-window config.json), named as such."""
    for key, own in model.state_dict().items():
        if not key.startswith("image_encoder.") or own.ndim != 5 or own.shape[1] != config.in_channels:
            continue
        got = state.get(key)
        if isinstance(got, torch.Tensor) and got.ndim == 5 and got.shape[1] != own.shape[1] and got.shape[0] == own.shape[0]:
            raise CheckpointError(
                f"{source}: the weights take {got.shape[1]} image channel(s) but the config's HU windows "
                f"{[list(w) for w in config.windows()]} give {config.in_channels} (preset {config.preset!r}); "
                f"weights and config.json do not belong together"
            )
        return  # only the first conv sees the image


def bundled_models() -> dict[str, Path]:
    """Models shipped inside the package: name -> folder (:data:`ctsam3d.hub.registry.BUNDLED`,
    plus weights folders without an entry, by folder name). The default is the registry's."""
    return {e.name: e.path for e in _registry.list_models() if e.source == "bundled"}


def load_model(
    path_or_preset: str | Path | None = None,
    device: str | torch.device = "cpu",
    *,
    expect_preset: str | None = None,
    untrained: bool = False,
) -> CTSAM3D:
    """Load a model (see the module docstring). ``expect_preset`` refuses any other preset;
    ``untrained`` asks for a preset's freshly initialised weights even where a bundled model
    bears the preset's name (``ctsam3d-lite-wb``).

    Returns a :class:`CTSAM3D` in eval mode on ``device`` with ``.config`` set.
    """
    name = None
    if untrained and not (isinstance(path_or_preset, str) and path_or_preset in PRESETS):
        raise CheckpointError(f"untrained=True takes a preset name ({', '.join(sorted(PRESETS))}), got {path_or_preset!r}")
    if path_or_preset is None:
        entry = _registry.default_model()
        if entry is None:
            raise CheckpointError(
                f"no bundled weights: {_registry.WEIGHTS_ROOT} holds no model and none is installed "
                f"(ctsam3d download); pass a model directory, a params.pth, or a preset name "
                f"({', '.join(sorted(PRESETS))}) for an untrained model"
            )
        model, name = load_directory(entry.path, device), entry.name
        log.info("model: %s (%s, %s; trained on %s)", entry.name, entry.source, entry.preset, entry.anatomy)
    elif isinstance(path_or_preset, str) and path_or_preset in PRESETS and (untrained or _registry.find_model(path_or_preset) is None):
        warnings.warn(
            f"{path_or_preset}: freshly initialised, untrained weights (pass a checkpoint to get a useful model)",
            stacklevel=2,
        )
        model, name = _finish(build_model(get_preset(path_or_preset)), device), f"{path_or_preset} (untrained)"
    elif isinstance(path_or_preset, str) and not Path(path_or_preset).exists() and (entry := _registry.find_model(path_or_preset)):
        model, name = load_directory(entry.path, device), entry.name
    else:
        path = Path(path_or_preset)
        if path.is_dir():
            model = load_directory(path, device)
        elif path.is_file() and path.suffix == ".safetensors":
            model = load_directory(path.parent, device, weights=path)
        elif path.is_file() and path.suffix in (".pth", ".pt"):
            from ..io.sniff import torch_checkpoint_problem
            from .reference_import import convert_reference

            if (what := torch_checkpoint_problem(path)) is not None:
                raise CheckpointError(f"{path}: not a PyTorch checkpoint: it is {what}; expected the released params.pth")
            model = _finish(convert_reference(path), device)
        elif not path.exists():
            raise CheckpointError(
                f"{path}: no such checkpoint, and not a model name ({', '.join(_registry.model_names()) or 'none'}; "
                f"'ctsam3d models' lists them) nor an untrained preset ({', '.join(sorted(PRESETS))})"
            )
        else:
            raise CheckpointError(f"{path}: expected a model directory, a .safetensors or a .pth file")
    if expect_preset is not None and model.config.preset != expect_preset:
        raise CheckpointError(
            f"{path_or_preset}: checkpoint is preset {model.config.preset!r}, expected {expect_preset!r}"
        )
    model.model_name = name or Path(path_or_preset).name  # shown by the CLI, the server and the page
    return model
