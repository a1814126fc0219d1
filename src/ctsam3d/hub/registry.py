"""The models this machine has, and which one is used when none is named.

Two places hold trained models:

* **bundled** with the package, ``ctsam3d/weights/<folder>/``. :data:`BUNDLED` describes them
  (name to load by, folder, the anatomy it was trained on) and marks one as the default.
  Changing the default is editing ``default=True`` in one entry. A weights folder without an
  entry is still listed and loadable by its folder name (metadata read from its ``config.json``),
  unless that name is a preset's (such a folder is not listed: see below).
* **preset names**: a preset name means the untrained preset, except where a :data:`BUNDLED`
  entry bears that very name (``ctsam3d-lite-wb``): then the name loads those trained weights and
  the untrained preset is asked for explicitly (``load_model(name, untrained=True)``, the CLI's
  and server's ``--untrained``). Only an entry can claim a preset's name, never a bare folder.
* **installed** per user, ``<models_dir>/<name>/`` (:mod:`.paths`), e.g. the released CT-SAM3D
  weights installed by ``ctsam3d download`` as :data:`RELEASED_NAME`.

The model used when none is named (``load_model()``, ``ctsam3d segment`` / ``serve`` without
``--model``): the released weights when installed, else the bundled default.

Only plain files are read here (``config.json``, ``source.json``); no torch, so ``ctsam3d
models`` is quick and :mod:`ctsam3d.modeling` can import this module.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from .paths import models_dir

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
SOURCE_FILE = "source.json"

#: Folder of the bundled models inside the package.
WEIGHTS_ROOT = Path(__file__).resolve().parents[1] / "weights"

#: Name of the released CT-SAM3D weights once installed by ``ctsam3d download``.
RELEASED_NAME = "ct-sam3d-released"
RELEASED_ANATOMY = "whole body: 107 structures (TotalSegmentator v1 classes + 3 tissues), 1204 CTs"


@dataclass(frozen=True)
class Bundled:
    """One bundled model: ``name`` to load it by, its ``folder`` under ``ctsam3d/weights/``,
    what it was trained on (``anatomy``, in words), and whether it is the default."""

    name: str
    folder: str
    anatomy: str
    default: bool = False


#: The bundled models. Exactly one should have ``default=True`` (else the first present is used).
#: The whole-body model bears its preset's name, ``ctsam3d-lite-wb``: that name loads these trained
#: weights (``untrained=True`` / ``--untrained`` gives the fresh preset). The starter
#: (``ctsam3d-lite-starter``, head and neck only) and ``ctsam3d-lite-torso`` are no longer bundled:
#: one whole-body default instead of partial ones (issue 16; figures in docs/model_card.md).
BUNDLED: tuple[Bundled, ...] = (
    Bundled(
        "ctsam3d-lite-wb", "ctsam3d-lite-wb",
        "whole body: head-and-neck organs (OpenKBP), thoraco-abdominal organs, vessels, bones, ribs, "
        "muscles (TotalSegmentator example CT, synthetic CT from label maps, pseudo-structures)",
        default=True,
    ),
)


@dataclass(frozen=True)
class ModelEntry:
    """A trained model on this machine.

    Attributes:
        name: what ``load_model(name)`` / ``--model NAME`` take.
        path: its folder (``model.safetensors`` + ``config.json``).
        source: ``"bundled"`` or ``"installed"``.
        preset: the preset in its ``config.json`` (``ctsam3d-lite``, ``ctsam3d-paper``, ...).
        anatomy: what it was trained on, in words.
        default: the model used when none is named.
    """

    name: str
    path: Path
    source: str
    preset: str
    anatomy: str
    default: bool = False

    def to_json(self) -> dict:
        d = asdict(self)
        d["path"] = str(self.path)
        return d


def _is_model_dir(path: Path) -> bool:
    return (path / WEIGHTS_FILE).is_file() and (path / CONFIG_FILE).is_file()


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _anatomy_from_files(folder: Path, config: dict) -> str:
    source = _read_json(folder / SOURCE_FILE)
    if isinstance(source.get("anatomy"), str):
        return source["anatomy"]
    training = config.get("training") if isinstance(config.get("training"), dict) else {}
    if isinstance(training.get("data"), str):
        return training["data"]
    names = [s for s in config.get("structures") or [] if isinstance(s, str)]
    if names:
        shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
        return f"{len(names)} structures ({shown})"
    return "unknown (no training record in config.json)"


def _preset_names() -> set[str]:
    from ..modeling.presets import PRESETS  # lazily: modeling imports torch

    return set(PRESETS)


def is_preset(spec) -> bool:
    """True when ``spec`` is a preset name (an untrained, freshly initialised model)."""
    return isinstance(spec, str) and spec in _preset_names()


def _bundled(root: Path | None = None) -> list[ModelEntry]:
    root = WEIGHTS_ROOT if root is None else root
    out: list[ModelEntry] = []
    seen: set[str] = set()
    for b in BUNDLED:
        folder = root / b.folder
        seen.update((b.folder, b.name))
        if _is_model_dir(folder):
            config = _read_json(folder / CONFIG_FILE)
            out.append(ModelEntry(b.name, folder, "bundled", str(config.get("preset", "?")), b.anatomy, b.default))
    if root.is_dir():
        presets = _preset_names()
        for folder in sorted(root.iterdir()):
            if folder.name in seen or folder.name in presets or folder.name.startswith(".") or not _is_model_dir(folder):
                continue
            config = _read_json(folder / CONFIG_FILE)
            out.append(ModelEntry(folder.name, folder, "bundled", str(config.get("preset", "?")),
                                  _anatomy_from_files(folder, config)))
    return out


def unlisted_bundled() -> list[Path]:
    """Weights folders that are not listed: named like a preset and without a :data:`BUNDLED`
    entry (the preset's name means the untrained preset). Give them an entry to ship them."""
    root = WEIGHTS_ROOT
    if not root.is_dir():
        return []
    listed = {b.folder for b in BUNDLED}
    presets = _preset_names()
    return [f for f in sorted(root.iterdir()) if f.name in presets and f.name not in listed and _is_model_dir(f)]


def _installed(directory: Path | None = None) -> list[ModelEntry]:
    directory = models_dir() if directory is None else directory
    if not directory.is_dir():
        return []
    out = []
    for folder in sorted(directory.iterdir()):
        if folder.name.startswith(".") or not _is_model_dir(folder):
            continue
        config = _read_json(folder / CONFIG_FILE)
        anatomy = _anatomy_from_files(folder, config)
        if folder.name == RELEASED_NAME and anatomy.startswith("unknown"):
            anatomy = RELEASED_ANATOMY
        out.append(ModelEntry(folder.name, folder, "installed", str(config.get("preset", "?")), anatomy))
    return out


def list_models() -> list[ModelEntry]:
    """Bundled then installed models, exactly one (when any) with ``default=True``: the released
    weights when installed, else the bundled entry marked default, else the first bundled one."""
    bundled, installed = _bundled(), _installed()
    chosen = next((e for e in installed if e.name == RELEASED_NAME), None)
    if chosen is None:
        chosen = next((e for e in bundled if e.default), None) or (bundled[0] if bundled else None)
    from dataclasses import replace

    return [replace(e, default=e is chosen) for e in bundled + installed]


def default_model() -> ModelEntry | None:
    """The model used when none is named (see :func:`list_models`); None when there is none."""
    return next((e for e in list_models() if e.default), None)


def find_model(name: str) -> ModelEntry | None:
    """The bundled or installed model called ``name`` (bundled first); None when there is none.
    A preset name finds only a :data:`BUNDLED` entry of that very name (else it means the
    untrained preset)."""
    if not isinstance(name, str) or not name:
        return None
    if is_preset(name):
        claimed = {b.name for b in BUNDLED}
        return next((e for e in list_models() if e.source == "bundled" and e.name == name and name in claimed), None)
    return next((e for e in list_models() if e.name == name), None)


def is_untrained(spec, untrained: bool = False) -> bool:
    """True when ``spec`` loads freshly initialised weights: a preset name that no bundled model
    bears, or any preset name when ``untrained`` (the ``--untrained`` switch) is set."""
    return is_preset(spec) and (untrained or find_model(spec) is None)


def model_names() -> list[str]:
    """Names :func:`find_model` knows, for messages."""
    return [e.name for e in list_models()]
