"""MONAI Label-compatible routes, as 3D Slicer's MONAI Label extension and
``monailabel.client.MONAILabelClient`` call them (contract: docs/server.md).

* ``GET /info/``: one model of type ``deepgrow``, dimension 3, labels = structure names.
* ``POST /infer/{model}?image=<id>&session_id=<sid>``, form field ``params`` (JSON):
  ``{"label": name, "foreground": [[i, j, k], ...], "background": [...]}`` with ITK voxel
  indices of the image the server received. Every call resends all points; the server runs
  only the new ones when the old ones are a prefix. Answer: multipart with a text part
  ``params`` (JSON) and a file part ``<name>.nii.gz`` (0/1 mask on the input image's grid);
  ``?output=image`` / ``?output=json`` give only one of them. Without ``session_id`` the
  clicks go to a workspace kept per (image, ``client_id``) whose id is an HMAC under a server
  secret: never sent to clients, not computable by them, and refused on every session route.
* ``PUT /session/`` (multipart ``files``), ``GET`` / ``DELETE /session/{id}``.
* ``GET /auth/``: 404 while the server has no token. With a token it answers
  ``{"enabled": true}`` and ``POST /auth/token`` exchanges the token (sent as the password)
  for a bearer token, which is how the Slicer extension logs in.
* ``/train/``: always 404 (no training here: a 200 would make Slicer poll).
* ``/datastore/``: listing (``?output=all``), image download, saving labels.
"""

from __future__ import annotations

import json
import secrets
import shutil
import tempfile
import threading
import time
from pathlib import Path

import SimpleITK as sitk
from fastapi import APIRouter, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, Response

from .._version import __version__
from ..errors import InputError
from .engine import check_voxel, mask_file_bytes, read_image, read_label, structure_names
from . import scribbles
from .images import view_response
from .routes_web import attachment, safe_filename
from .security import NotFound, check_tag, keyed_session_id, token_matches
from .uploads import client_label, files_label, store_upload
from .workspace import Click

router = APIRouter()
_KEYED_LOCKS = [threading.Lock() for _ in range(64)]  # striped: bounded however many images/clients


def _ctx(request: Request):
    return request.app.state.ctx


def _keyed_session(ctx, image_id: str, client_id: str):
    key = keyed_session_id(ctx.session_key, image_id, client_id)
    with _KEYED_LOCKS[hash(key) % len(_KEYED_LOCKS)]:  # two first calls at once create it once
        try:
            return ctx.store.get(key)
        except NotFound:
            return ctx.store.create_from_datastore(image_id, session_id=key)


# --- info / auth / train --------------------------------------------------------------------------
@router.get("/info/")
def info(request: Request):
    ctx = _ctx(request)
    names = structure_names()
    model = {
        "type": "deepgrow",
        "dimension": 3,
        "labels": names,
        "description": "CT-SAM3D promptable 3D segmentation: clicks on a CT give the 3D mask of one structure",
        "config": {},  # Slicer sends these back as infer params and offers them as options
    }
    return {
        "name": "ctsam3d",
        "description": "CT-SAM3D interactive segmentation (ctsam3d)",
        "version": __version__,
        "labels": names,
        "models": {ctx.config.model_name: model, ctx.config.model_name + scribbles.SUFFIX: scribbles.model_entry(names)},
        "trainers": {},
        "strategies": {},
        "scoring": {},
        "train_stats": {},
        "datastore": ctx.datastore.status(),
    }


@router.get("/auth/")
def auth_info(request: Request):
    if _ctx(request).config.token is None:
        raise HTTPException(404, "authentication is off on this server")
    return {"enabled": True, "client_id": "ctsam3d", "realm": "ctsam3d"}


@router.post("/auth/token")
def auth_token(request: Request, username: str = Form(""), password: str = Form(...)):
    token = _ctx(request).config.token
    if token is None:
        raise HTTPException(404, "authentication is off on this server")
    if not token_matches(password, token):
        raise HTTPException(401, "wrong token (send the server's token as the password)")
    return {"access_token": token, "token_type": "Bearer"}


@router.get("/auth/token/valid")
def auth_token_valid():
    return {}  # reached only with a valid token (the token middleware checks it)


@router.get("/train/")
def train_status(check_if_running: bool = False):
    raise HTTPException(404, "training is not offered by this server")


@router.api_route("/train/", methods=["POST", "DELETE"], include_in_schema=False)
@router.api_route("/train/{model}", methods=["GET", "POST", "DELETE"], include_in_schema=False)
def train(model: str = ""):
    raise HTTPException(404, "training is not offered by this server")


# --- sessions -------------------------------------------------------------------------------------
def _session_info(ws, store) -> dict:
    """MONAI Label's session record; ``expiry``: idle seconds before the server removes it."""
    info = ws.info()
    created = int(ws.meta["created"])
    return {
        "name": ws.session_id,
        "image": ws.session_id,
        "meta": {"image": info["image"], "source": info["source"]},
        "create_ts": created,
        "last_access_ts": int(ws.last_access),
        "expiry": int(store.expiry_of(ws)),
    }


@router.put("/session/")
def create_session(request: Request, files: list[UploadFile] = File(...), uncompress: bool = False, expiry: int = 0):
    request.state.upload_label = files_label(files)
    store = _ctx(request).store
    ws = store.create_from_upload([(f.filename or "", f.file) for f in files], expiry=max(0, int(expiry)))
    return {"session_id": ws.session_id, "session_info": _session_info(ws, store)}


@router.get("/session/{session_id}")
def get_session(request: Request, session_id: str, image: bool = False):
    ws = _ctx(request).store.get(session_id)
    if image:
        return view_response(ws.view_path, filename="image.nii.gz")
    return _session_info(ws, _ctx(request).store)


@router.delete("/session/{session_id}")
def remove_session(request: Request, session_id: str):
    ctx = _ctx(request)
    info = _session_info(ctx.store.get(session_id), ctx.store)
    ctx.store.delete(session_id)
    return info


# --- infer ----------------------------------------------------------------------------------------
def _parse_params(params: str) -> dict:
    try:
        p = json.loads(params) if params else {}
    except json.JSONDecodeError as exc:
        raise InputError(f"params: not valid JSON ({exc.msg} at character {exc.pos})") from None
    except RecursionError:  # e.g. 5,000 nested brackets: the decoder's recursion limit
        raise InputError("params: JSON nested too deeply") from None
    if not isinstance(p, dict):
        raise InputError("params: expected a JSON object")
    return p


def _points(ws, p: dict, key: str) -> list[tuple[int, int, int]]:
    value = p.get(key) or []
    if not isinstance(value, list):
        raise InputError(f"params.{key}: expected a list of [i, j, k] voxel indices")
    return [check_voxel(ws.image, point) for point in value]


def _scribble_clicks(ctx, request: Request, ws, p: dict, label: UploadFile | None):
    """Foreground / background clicks from the scribble label volume Slicer uploads as ``label``."""
    if label is None:
        raise InputError("infer: the scribbles model needs the scribble label volume as the 'label' file")
    fg_value, bg_value = scribbles.scribble_labels(p)
    request.state.upload_label = client_label(label.filename or "label.nii.gz")
    with tempfile.TemporaryDirectory(prefix="ctsam3d-scribbles-") as tmp:
        path = store_upload([(label.filename or "label.nii.gz", label.file)], Path(tmp) / "in", ctx.config.max_upload_bytes)
        volume = read_label(path, reference=ws.image)
    return scribbles.scribble_points(volume, ws.image, fg_value, bg_value)


def _multipart(params: dict, filename: str, data: bytes) -> Response:
    boundary = "ctsam3d-" + secrets.token_hex(16)
    head = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="params"\r\n'
        "Content-Type: application/json\r\n\r\n"
        f"{json.dumps(params)}\r\n"
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="image"; filename="{filename}"\r\n'
        "Content-Type: application/gzip\r\n\r\n"
    ).encode()
    body = head + data + f"\r\n--{boundary}--\r\n".encode()
    return Response(body, media_type=f"multipart/form-data; boundary={boundary}")


@router.post("/infer/{model}")
def infer(request: Request, model: str, image: str = "", session_id: str = "", output: str | None = None,
          params: str = Form("{}"), file: UploadFile | None = File(None), label: UploadFile | None = File(None)):
    ctx = _ctx(request)
    t0 = time.perf_counter()
    from_scribbles = model == ctx.config.model_name + scribbles.SUFFIX  # Slicer's scribbles panel (scribbles.py)
    if model != ctx.config.model_name and not from_scribbles:
        raise NotFound(f"model {model!r} not found; this server offers {ctx.config.model_name!r}")
    if output not in (None, "", "all", "image", "json"):
        raise InputError(f"output {output!r}: use image, json or all")
    p = _parse_params(params)
    name = p.get("label") or "label"
    if not isinstance(name, str):
        raise InputError("params.label: expected a structure name (string)")
    temporary = False
    keyed = False
    if session_id:
        ws = ctx.store.get(session_id)
    elif file is not None:
        request.state.upload_label = client_label(file.filename)
        ws = ctx.store.create_from_upload([(file.filename or "", file.file)])
        temporary = True
    elif image:
        ws = _keyed_session(ctx, image, str(p.get("client_id") or ""))
        keyed = True
    else:
        raise InputError("infer: give ?image=<datastore id>, ?session_id=<id> or a 'file' upload")
    try:
        fg, bg = _points(ws, p, "foreground"), _points(ws, p, "background")
        if from_scribbles:
            fg, bg = _scribble_clicks(ctx, request, ws, p, label)
        obj = ws.object_named(name)
        change = ws.set_clicks(obj.oid, [Click(c, True) for c in fg] + [Click(c, False) for c in bg])
        data = mask_file_bytes(ws.object_mask_image(obj.oid), ".nii.gz", ws.image, name)
    finally:
        if temporary:
            ctx.store.delete(ws.session_id)
    result = {
        "label_names": {name: 1},
        "label": name,
        "session_id": None if temporary or keyed else ws.session_id,
        "foreground": [list(c) for c in fg],
        "background": [list(c) for c in bg],
        "voxels": change.object.mask.voxels if change.object.mask else 0,
        "latencies": {"infer": round(change.latency_ms / 1e3, 4), "total": round(time.perf_counter() - t0, 4)},
    }
    if label is not None and not from_scribbles:
        result["ignored"] = ["label (an initial mask upload is not used by this model)"]
    filename = f"{safe_filename(name)}.nii.gz"
    if output == "json":
        return result
    if output == "image":
        return attachment(data, filename, "application/gzip")
    return _multipart(result, filename, data)


# --- datastore ------------------------------------------------------------------------------------
@router.get("/datastore/")
def datastore(request: Request, output: str | None = None):
    ds = _ctx(request).datastore
    return ds.to_json() if output == "all" else ds.status()


@router.put("/datastore/")
@router.put("/datastore/image")
def datastore_add_image(request: Request, image: str = "", params: str = Form("{}"), file: UploadFile = File(...)):
    """Add an image (3D Slicer does this before saving a label for a local volume); the data
    folder stays read-only, uploads go to the server's state folder."""
    ctx = _ctx(request)
    _parse_params(params)
    image_id = image or (file.filename or "").replace("\\", "/").rsplit("/", 1)[-1].split(".")[0]
    request.state.upload_label = client_label(file.filename)
    ctx.datastore.add_image(image_id, [(file.filename or "", file.file)], ctx.config.max_upload_bytes)
    return {"image": image_id}


@router.get("/datastore/image")
def datastore_image(request: Request, image: str):
    ds = _ctx(request).datastore
    path = ds.path_of(image)
    if path.is_dir():
        raise InputError(f"image {image!r} is a DICOM series folder; download is offered for single files only")
    return FileResponse(path, filename=path.name)


@router.put("/datastore/label")
def datastore_save_label(request: Request, image: str, tag: str = "final", params: str = Form("{}"),
                         label: UploadFile = File(...)):
    ctx = _ctx(request)
    check_tag(tag)
    _parse_params(params)
    source = ctx.datastore.path_of(image)
    request.state.upload_label = client_label(label.filename or "label.nii.gz")
    with tempfile.TemporaryDirectory(prefix="ctsam3d-label-") as tmp:
        path = store_upload([(label.filename or "label.nii.gz", label.file)], Path(tmp) / "in", ctx.config.max_upload_bytes)
        mask = read_label(path, reference=read_image(source))
        target = ctx.datastore.label_path(image, tag)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".part.nii.gz")
        sitk.WriteImage(mask, str(partial), True)
        shutil.move(partial, target)
    return {"image": image, "label": image, "tag": tag}


@router.get("/datastore/label")
def datastore_label(request: Request, label: str, tag: str = "final"):
    ds = _ctx(request).datastore
    ds.get(label)
    path = ds.label_path(label, tag)
    if not path.is_file():
        raise NotFound(f"no label with tag {tag!r} saved for image {label!r}")
    return FileResponse(path, media_type="application/gzip", filename=f"label_{tag}.nii.gz")
