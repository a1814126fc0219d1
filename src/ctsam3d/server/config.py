"""Settings of the web tool / MONAI Label-compatible server (one typed dataclass)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK_NAMES = {"localhost", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class ServerConfig:
    """Everything :func:`ctsam3d.server.create_app` needs.

    Attributes:
        state_dir: where sessions (uploaded images, clicks, masks) and saved labels live; the
            server owns every name inside it.
        data_dir: read-only folder of CT volumes offered in the datastore listing; only files
            under it (after resolving symlinks) can be opened by id. ``None``: no listing.
        model: model name, checkpoint folder or file for :func:`ctsam3d.load_model` (``None`` =
            the default: the released weights when installed, else the bundled default).
        allow_untrained: a preset name as ``model`` means its freshly initialised weights (whose
            masks mean nothing), also ``ctsam3d-lite-wb`` (else the bundled trained model of that
            name); a preset name no bundled model bears is refused without it (``--untrained``).
        device: torch device string (``cpu``, ``cuda``, ``cuda:N``, ``mps``).
        token: API token; ``None`` = no token (only allowed on a loopback bind, checked by the CLI).
        max_upload_mb: largest request body accepted (uploads), in MiB.
        expansion: cross-patch expansion in the interactive sessions.
        cors_origins: origins allowed by CORS; empty = CORS closed (same-origin only).
        max_concurrent_inference: clicks computed at the same time across all users
            (others wait their turn). 2 by default: on a 2-core CPU two clicks at once overlap
            the parts of a click that do not use both cores (8 users: p50 1.1-1.3 s instead of
            2.0-2.1 s, docs/benchmarks.md); 1 keeps one decode in memory at a time.
        max_open_sessions: sessions kept in memory; older ones are reloaded from disk on use.
        session_ttl_s: a session idle this long (seconds) is removed; also the cap on the
            ``expiry`` MONAI Label clients ask for (default 24 h).
        session_quota_mb: disk (MiB) the sessions and shared viewer copies may use; beyond it the
            longest idle sessions are removed first (default 20 GiB).
        max_patches: cross-patch expansion budget per click (None: the library default).
        refine: the sessions' intensity-guided boundary refinement (``ctsam3d.inference.refine``;
            None: the session default, on except for reference-exact models).
        mirror: the sessions' left-right mirror averaging of each decode (``Session(mirror=...)``;
            None: the session default, on except for reference-exact models).
        max_objects: objects per session (label values 1..max_objects, uint8 label map).
        model_name: name of the model in MONAI Label's ``/info/`` and ``/infer/{model}``.
    """

    state_dir: Path
    data_dir: Path | None = None
    model: str | None = None
    allow_untrained: bool = False
    device: str = "cpu"
    token: str | None = None
    max_upload_mb: float = 1024.0
    expansion: bool = True
    cors_origins: list[str] = field(default_factory=list)
    max_concurrent_inference: int = 2
    max_open_sessions: int = 16
    session_ttl_s: float = 24 * 3600.0
    session_quota_mb: float = 20 * 1024.0
    max_patches: int | None = None
    refine: bool | None = None
    mirror: bool | None = None
    max_objects: int = 255
    model_name: str = "ctsam3d"

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir)
        if self.data_dir is not None:
            self.data_dir = Path(self.data_dir)
        if not self.session_ttl_s > 0 or not self.session_quota_mb > 0:
            raise ValueError("session_ttl_s and session_quota_mb must be positive")
        if self.model is not None and not self.allow_untrained:
            from ..errors import CheckpointError
            from ..hub.registry import is_untrained

            if is_untrained(self.model):
                raise CheckpointError(
                    f"--model {self.model}: an untrained preset (freshly initialised weights; its masks mean "
                    f"nothing). Use a trained model ('ctsam3d models' lists them) or add --untrained"
                )
        if not 1 <= self.max_objects <= 255:
            raise ValueError("max_objects must be in 1..255 (uint8 label map)")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)
