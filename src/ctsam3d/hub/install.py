"""Install the released CT-SAM3D weights: download (or take a local file), verify, convert, install.

Steps of :func:`install_released`:

1. **Files.** From ModelScope (:mod:`.modelscope`): the listing gives ``params.pth`` and the
   ``config.py`` beside it with their sizes and (when listed) sha256; each file downloads into
   ``<models>/.downloads/ct-sam3d-released/<file>.part`` and resumes there after an interruption
   (:func:`.transfer.fetch`). Or, with ``--from FILE``, a local ``params.pth`` (``config.py``
   beside it or ``--config``).
2. **Verification.** Size and sha256 against the listing, and against the record written at the
   first successful install (``<models>/.downloads/ct-sam3d-released.json``): a later download
   or ``--from`` file must be the same bytes. A file that fails is refused and its partial
   file removed (the next run downloads afresh).
3. **Conversion** with :func:`ctsam3d.modeling.reference_import.convert_reference`
   (``torch.load(weights_only=True)``; every tensor's name, shape and dtype checked).
4. **Atomic install**: written into a hidden folder next to the target, then renamed to
   ``<models>/ct-sam3d-released/`` (``model.safetensors``, ``config.json``, ``source.json``);
   on any failure nothing is left there. The downloaded files are then removed.

Nothing here runs unless asked (``ctsam3d download``).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path

from .._version import __version__
from ..errors import CtSam3dError
from . import modelscope
from .paths import downloads_dir, models_dir
from .registry import CONFIG_FILE, RELEASED_ANATOMY, RELEASED_NAME, SOURCE_FILE, WEIGHTS_FILE
from .transfer import HubError, fetch, sha256_file

log = logging.getLogger(__name__)


@dataclass
class InstallResult:
    """What :func:`install_released` did."""

    name: str
    path: Path
    already: bool = False  # it was installed before; nothing done
    recorded: bool = False  # first install: size + sha256 recorded now


def record_path(name: str = RELEASED_NAME) -> Path:
    """Where size + sha256 of the files of the first install of ``name`` are recorded."""
    return downloads_dir() / f"{name}.json"


def _read_record(name: str) -> dict:
    path = record_path(name)
    if not path.is_file():
        return {}
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise HubError(f"{path}: unreadable record of the first download; delete it to record afresh") from None
    return rec if isinstance(rec, dict) else {}


def _write_json_atomic(path: Path, value: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(json.dumps(value, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _free_bytes(path: Path) -> int:
    """Free bytes on the file system of ``path`` (or of its nearest existing parent)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _check_against(what: str, size: int, sha: str, *, expect_size, expect_sha, against: str) -> None:
    if expect_size is not None and size != expect_size:
        raise HubError(f"{what}: {size:,} bytes, but {against} says {expect_size:,}; refusing a truncated or different file")
    if expect_sha is not None and sha != expect_sha:
        raise HubError(f"{what}: sha256 {sha[:16]}… differs from {against} ({expect_sha[:16]}…); refusing a corrupt or different file")


def _download(part_dir: Path, rec: dict, *, endpoint: str | None, model_id: str, revision: str,
              progress: bool, retries: int) -> tuple[Path, Path | None, dict]:
    base = modelscope.endpoint(endpoint)
    files = modelscope.list_files(base, model_id, revision)
    params, config = modelscope.pick_release_files(files, model_id)
    if params.size:  # the download and the converted model side by side
        have = params.size if not (part_dir / "params.pth.part").is_file() else params.size - (part_dir / "params.pth.part").stat().st_size
        need, free = have + params.size * 1.05 + (64 << 20), _free_bytes(part_dir)
        if free < need:
            raise HubError(f"{models_dir()}: {free / 2**30:.1f} GiB free, downloading and installing needs about "
                           f"{need / 2**30:.1f} GiB (set $CTSAM3D_HOME to a folder with room)")
    known = rec.get("files", {})
    for f in (params, config):
        if f is None:
            continue
        name = Path(f.path).name
        old = known.get(name, {})
        if f.sha256 and old.get("sha256") and f.sha256 != old["sha256"]:
            raise HubError(
                f"ModelScope now lists a different {name} (sha256 {f.sha256[:16]}…) from the one recorded at the "
                f"first download on {rec.get('recorded', '?')} ({old['sha256'][:16]}…); if the authors updated it, "
                f"delete {record_path()} and run again"
            )
    got: dict[str, Path] = {}
    for f in (config, params):  # the small file first: a wrong endpoint fails fast
        if f is None:
            continue
        name = Path(f.path).name
        final = part_dir / name
        part = part_dir / (name + ".part")
        if final.is_file():  # complete in an earlier run that stopped before installing: verify again
            os.replace(final, part)
        url = modelscope.file_url(base, model_id, f.path, revision)
        size = fetch(url, part, size=f.size, what=name, progress=progress, retries=retries)
        sha = sha256_file(part, progress=progress, what=name)
        try:
            _check_against(name, size, sha, expect_size=f.size, expect_sha=f.sha256, against=f"ModelScope's listing of {model_id}")
        except HubError as exc:
            part.unlink(missing_ok=True)
            raise HubError(f"{exc}; the partial file was removed, run again to download afresh") from None
        os.replace(part, final)
        got[name] = final
    if config is None:
        log.warning("%s has no config.py beside %s: using the released defaults (1.5 mm, 64³, HU [-125, 225])",
                    model_id, params.path)
    origin = {"hub": "modelscope", "endpoint": base, "model_id": model_id, "revision": revision,
              "paths": {Path(f.path).name: f.path for f in (params, config) if f is not None}}
    return got[Path(params.path).name], (got["config.py"] if config is not None else None), origin


def install_released(*, from_file: str | Path | None = None, config_file: str | Path | None = None,
                     endpoint: str | None = None, model_id: str = modelscope.RELEASED_MODEL_ID,
                     revision: str = modelscope.DEFAULT_REVISION, force: bool = False, progress: bool = True,
                     retries: int = 2, name: str = RELEASED_NAME) -> InstallResult:
    """Download (or take ``from_file``), verify, convert and install the released weights as ``name``.

    Raises:
        HubError: offline, refused, not found, interrupted (resumable), truncated, corrupt, or
            different from the recorded first download; conversion failures as CheckpointError.
            Nothing is left in the models folder but the resumable partial download.
    """
    from ..modeling.checkpoint import save_model
    from ..modeling.reference_import import convert_reference

    target = models_dir() / name
    if (target / WEIGHTS_FILE).is_file() and (target / CONFIG_FILE).is_file() and not force:
        return InstallResult(name, target, already=True)
    if target.exists() and not target.is_dir():
        raise HubError(f"{target}: exists and is not a folder")
    rec = _read_record(name)
    part_dir = downloads_dir() / name
    downloaded = from_file is None
    if from_file is not None:
        params = Path(from_file)
        if not params.is_file():
            raise HubError(f"--from {from_file}: no such file")
        if config_file is not None and not Path(config_file).is_file():
            raise HubError(f"--config {config_file}: no such file")
        config = Path(config_file) if config_file is not None else (
            params.parent / "config.py" if (params.parent / "config.py").is_file() else None)
        origin = {"hub": "local file", "file": params.name, "model_id": model_id}
    else:
        params, config, origin = _download(part_dir, rec, endpoint=endpoint, model_id=model_id, revision=revision,
                                           progress=progress, retries=retries)
    if downloaded:
        log.info("verifying and converting %s (%.0f MB) …", params.name, params.stat().st_size / 1e6)

    files = {}
    for key, path in (("params.pth", params), ("config.py", config)):
        if path is None:
            continue
        size, sha = path.stat().st_size, sha256_file(path, progress=progress and not downloaded, what=key)
        old = rec.get("files", {}).get(key)
        if old:
            try:
                _check_against(f"{key} ({path.name})" if not downloaded else key, size, sha,
                               expect_size=old.get("size"), expect_sha=old.get("sha256"),
                               against=f"the record of the first download ({record_path(name)})")
            except HubError as exc:
                if downloaded:
                    shutil.rmtree(part_dir, ignore_errors=True)
                raise HubError(f"{exc}; if the authors updated the file, delete that record and run again") from None
        files[key] = {"size": size, "sha256": sha}

    try:
        model = convert_reference(params, config)
    except CtSam3dError as exc:
        if downloaded:
            shutil.rmtree(part_dir, ignore_errors=True)
        raise HubError(f"params.pth is not a usable CT-SAM3D checkpoint: {exc}") from None

    root = models_dir()
    root.mkdir(parents=True, exist_ok=True)
    for stale in [*root.glob(f".install-{name}-*"), *root.glob(f".old-{name}-*")]:  # left by a killed install
        shutil.rmtree(stale, ignore_errors=True)
    need = params.stat().st_size * 1.05 + (64 << 20)  # model.safetensors is about as large as params.pth
    if shutil.disk_usage(root).free < need:
        raise HubError(f"{root}: {shutil.disk_usage(root).free / 2**30:.1f} GiB free, the model needs about "
                       f"{need / 2**30:.1f} GiB (set $CTSAM3D_HOME to a folder with room)")
    token = secrets.token_hex(6)
    tmp = root / f".install-{name}-{token}"
    old = root / f".old-{name}-{token}"
    try:
        save_model(model, tmp)
        del model
        _write_json_atomic(tmp / SOURCE_FILE, {
            "name": name, "anatomy": RELEASED_ANATOMY, "licence": "Apache-2.0",
            "citation": "Guo et al., CT-SAM3D, arXiv 2403.15063", **origin, "files": files,
            "installed": _now(), "ctsam3d_version": __version__,
        })
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    first = not rec.get("files")
    if first:
        _write_json_atomic(record_path(name), {"name": name, "recorded": _now(), "files": files,
                                               "origin": {k: v for k, v in origin.items() if k != "paths"}})
    if downloaded:
        shutil.rmtree(part_dir, ignore_errors=True)
    return InstallResult(name, target, recorded=first)
