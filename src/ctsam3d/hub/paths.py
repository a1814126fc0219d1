"""Where per-user models live.

``$CTSAM3D_HOME`` if set, else ``<user cache dir>/ctsam3d``: ``$XDG_CACHE_HOME`` or
``~/.cache`` on Linux, ``~/Library/Caches`` on macOS, ``%LOCALAPPDATA%`` on Windows.
Installed models are folders ``<home>/models/<name>/`` (``model.safetensors`` + ``config.json``
+ ``source.json``); folders starting with ``.`` in there are the downloader's (partial files,
records of downloaded files, installs in progress) and are never models.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HOME_ENV = "CTSAM3D_HOME"


def user_cache_dir() -> Path:
    """The platform's per-user cache directory."""
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches"
    if os.name == "nt":
        base = os.environ.get("LOCALAPPDATA")
        return Path(base) if base else Path.home() / "AppData" / "Local"
    base = os.environ.get("XDG_CACHE_HOME")
    return Path(base) if base else Path.home() / ".cache"


def home() -> Path:
    """``$CTSAM3D_HOME`` or ``<user cache dir>/ctsam3d`` (not created)."""
    env = os.environ.get(HOME_ENV)
    return Path(env).expanduser() if env else user_cache_dir() / "ctsam3d"


def models_dir() -> Path:
    """``<home>/models``: one folder per installed model (not created)."""
    return home() / "models"


def downloads_dir() -> Path:
    """``<home>/models/.downloads``: partial downloads and the records of downloaded files."""
    return models_dir() / ".downloads"
