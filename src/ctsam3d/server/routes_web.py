"""Routes of the web page (``/api/...``).

Clicks arrive as NiiVue world millimetres in **RAS** (``{"ras": [x, y, z]}``) and are turned
into a voxel of the input image on the server (:func:`.engine.ras_to_voxel`); a voxel index
``{"ijk": [i, j, k]}`` of the input image is accepted too. 2D boxes, lassos and scribbles
(``/shapes``) arrive the same way, one list of points per shape with the view drawn on (see
:mod:`.shape_requests`). After each edit the page fetches
the changed box of the label map (``labels.raw?box=``), raw uint8 in the file's voxel order.
"""

from __future__ import annotations

import logging
import math
import tempfile
from pathlib import Path
from typing import Any

import SimpleITK as sitk
from fastapi import APIRouter, File, Query, Request, UploadFile
from fastapi.responses import Response
from pydantic import BaseModel, Field

from .._version import __version__
from ..errors import ClickError, InputError
from .engine import check_voxel, ras_to_voxel, structure_names, mask_file_bytes
from .images import view_response
from .security import log_tag
from .shape_requests import parse_shape
from .uploads import files_label
from .workspace import Click

router = APIRouter(prefix="/api")
log = logging.getLogger(__name__)


class OpenRequest(BaseModel):
    image: str = Field(description="datastore id (path relative to --data) of the image to open")


class ObjectCreate(BaseModel):
    name: str
    color: list[int] | None = None


class ObjectUpdate(BaseModel):
    name: str | None = None
    color: list[int] | None = None
    visible: bool | None = None


class ClickRequest(BaseModel):
    ras: list[float] | None = Field(None, description="NiiVue world position, RAS mm")
    ijk: list[float] | None = Field(None, description="ITK voxel index (i, j, k) of the input image")
    positive: bool = True


class ShapeRequest(BaseModel):
    """A 2D box, lasso or scribble drawn on one view (checked by :func:`.shape_requests.parse_shape`)."""

    kind: str = Field(description="box2d (2 opposite corners), lasso (closed contour) or scribble (polyline)")
    # typed loosely here: parse_shape checks them and answers with one line naming the problem
    ras: Any = Field(None, description="points as NiiVue world positions, RAS mm")
    ijk: Any = Field(None, description="points as continuous ITK indices (i, j, k) of the input image")
    view: Any = Field(None, description="view drawn on: axial, coronal or sagittal")
    axis: Any = Field(None, description="or the ITK axis the slice is normal to: 0/1/2 or i/j/k")
    positive: bool = True


def _ctx(request: Request):
    return request.app.state.ctx


def _ws(request: Request, session_id: str):
    return _ctx(request).store.get(session_id)


@router.get("/config")
def get_config(request: Request):
    ctx = _ctx(request)
    return {
        "version": __version__,
        "model": ctx.config.model_name,
        "model_name": (about := ctx.models.describe())["name"],  # shown in the page header
        "model_trained_on": about["trained_on"],
        "structures": structure_names(),
        "token_required": ctx.config.token is not None,
        "max_upload_mb": ctx.config.max_upload_mb,
    }


@router.get("/datastore")
def list_images(request: Request):
    # only the data folder: images uploaded through MONAI Label's datastore are not shown to page users
    return {"items": [it.to_json() for it in _ctx(request).datastore.items(uploaded=False)]}


@router.post("/sessions")
def open_image(request: Request, body: OpenRequest):
    return _ctx(request).store.create_from_datastore(body.image).info()


@router.post("/sessions/upload")
def upload_image(request: Request, files: list[UploadFile] = File(...)):
    request.state.upload_label = files_label(files)
    ws = _ctx(request).store.create_from_upload([(f.filename or "", f.file) for f in files])
    return ws.info()


@router.get("/sessions/{session_id}")
def session_info(request: Request, session_id: str):
    return _ws(request, session_id).info()


@router.delete("/sessions/{session_id}")
def delete_session(request: Request, session_id: str):
    _ctx(request).store.delete(session_id)
    return {"deleted": session_id}


@router.get("/sessions/{session_id}/image.nii.gz")
def session_image(request: Request, session_id: str):
    """The CT as NIfTI written from the session's own image (same geometry as the server's)."""
    return view_response(_ws(request, session_id).view_path, filename="image.nii.gz")


@router.get("/sessions/{session_id}/labels.nii.gz")
def session_labels(request: Request, session_id: str):
    """All objects as a uint8 label map (value = object id) on the input grid."""
    ws = _ws(request, session_id)
    return _image_bytes(ws.label_image(), "labels.nii.gz")


@router.get("/sessions/{session_id}/labels.raw")
def session_labels_box(request: Request, session_id: str, box: str = Query(..., description="z0,y0,x0,z1,y1,x1")):
    """Raw uint8 label values of one box ``[z0:z1, y0:y1, x0:x1]``, C order (file voxel order)."""
    ws = _ws(request, session_id)
    try:
        values = [int(v) for v in box.split(",")]
    except ValueError:
        raise InputError(f"box {box[:60]!r}: expected six integers z0,y0,x0,z1,y1,x1") from None
    if len(values) != 6:
        raise InputError(f"box {box[:60]!r}: expected six integers z0,y0,x0,z1,y1,x1")
    lo, hi = tuple(values[:3]), tuple(values[3:])
    if any(not 0 <= a < b <= n for a, b, n in zip(lo, hi, ws.shape)):
        raise InputError(f"box {values}: not a non-empty box inside the image (z, y, x size {list(ws.shape)})")
    return Response(ws.labels_bytes((lo, hi)), media_type="application/octet-stream")


@router.post("/sessions/{session_id}/objects")
def create_object(request: Request, session_id: str, body: ObjectCreate):
    return _ws(request, session_id).add_object(body.name, body.color).to_json()


@router.patch("/sessions/{session_id}/objects/{oid}")
def update_object(request: Request, session_id: str, oid: int, body: ObjectUpdate):
    ws = _ws(request, session_id)
    return ws.update_object(oid, name=body.name, color=body.color, visible=body.visible).to_json()


@router.delete("/sessions/{session_id}/objects/{oid}")
def delete_object(request: Request, session_id: str, oid: int):
    return _ws(request, session_id).delete_object(oid).to_json()


@router.post("/sessions/{session_id}/objects/{oid}/clicks")
def add_click(request: Request, session_id: str, oid: int, body: ClickRequest):
    """One click: ``ras`` (NiiVue world RAS mm) or ``ijk`` (voxel of the input image)."""
    ws = _ws(request, session_id)
    if (body.ras is None) == (body.ijk is None):
        raise InputError("click: give exactly one of 'ras' (world RAS mm) or 'ijk' (voxel index)")
    ijk = ras_to_voxel(ws.image, body.ras) if body.ras is not None else check_voxel(ws.image, body.ijk)
    out = ws.click(oid, ijk, body.positive).to_json()
    out["voxel"] = list(ijk)
    if body.positive and not out["object"]["voxels"]:  # issue 19: an empty result says so
        about = _ctx(request).models.describe()
        out["warning"] = (f"Empty result: the model ({about['name']}, trained on {about['trained_on']}) found no "
                          f"structure at this click.")
    return out


@router.post("/sessions/{session_id}/objects/{oid}/shapes")
def add_shape(request: Request, session_id: str, oid: int, body: ShapeRequest):
    """One 2D box, lasso or scribble: points in ``ras`` (NiiVue world RAS mm) or ``ijk``
    (continuous ITK indices of the input image), on the slice of ``view`` / ``axis`` they lie on
    (see :mod:`.shape_requests`); undone by ``/undo`` like a click. The reply is a click's plus
    ``prompt``: the shape as stored (points as continuous ITK indices, put on their slice)."""
    ws = _ws(request, session_id)
    shape = parse_shape(ws.image, body.kind, ras=body.ras, ijk=body.ijk, view=body.view, axis=body.axis,
                        positive=body.positive)
    obj = ws.get_object(oid)
    if not shape.positive and not any(c.positive for c in obj.clicks):
        raise ClickError(f"negative {body.kind} before any positive prompt on {obj.name!r}: start the object with "
                         f"a positive click, box, lasso or scribble")
    first = tuple(int(math.floor(v + 0.5)) for v in shape.points_ijk[0])
    prompt = Click(first, shape.positive, shape.kind, shape.points_ijk, shape.axis)
    out = ws.prompt(oid, prompt).to_json()
    out["prompt"] = dict(prompt.to_json(), slice=shape.index)
    if shape.positive and not out["object"]["voxels"]:
        about = _ctx(request).models.describe()
        out["warning"] = (f"Empty result: the model ({about['name']}, trained on {about['trained_on']}) found no "
                          f"structure at this {body.kind}.")
    return out


@router.post("/sessions/{session_id}/objects/{oid}/undo")
def undo(request: Request, session_id: str, oid: int):
    return _ws(request, session_id).undo(oid).to_json()


@router.post("/sessions/{session_id}/objects/{oid}/clear")
def clear(request: Request, session_id: str, oid: int):
    return _ws(request, session_id).clear(oid).to_json()


@router.get("/sessions/{session_id}/objects/{oid}/mask.nii.gz")
def export_nifti(request: Request, session_id: str, oid: int):
    ws = _ws(request, session_id)
    obj = ws.get_object(oid)
    data = mask_file_bytes(ws.object_mask_image(oid), ".nii.gz", ws.image, obj.name)
    return attachment(data, f"{safe_filename(obj.name)}.nii.gz", "application/gzip")


@router.get("/sessions/{session_id}/objects/{oid}/mask.dcm")
def export_dicom_seg(request: Request, session_id: str, oid: int):
    ctx = _ctx(request)
    ws = ctx.store.get(session_id)
    obj = ws.get_object(oid)
    if not ws.meta["source"].get("is_dicom"):
        raise InputError("DICOM-SEG export needs a DICOM source image; this session's image is not DICOM")
    source = str(ctx.store.source_path(ws))
    try:
        data = mask_file_bytes(ws.object_mask_image(oid), ".dcm", source, obj.name)
    except (ValueError, AttributeError, KeyError) as exc:  # highdicom: source series lacks what SEG needs
        log.warning("DICOM-SEG export failed for session %s", log_tag(session_id), exc_info=True)
        raise InputError(f"DICOM-SEG export: the source DICOM series cannot be referenced ({exc}); export NIfTI instead") from None
    return attachment(data, f"{safe_filename(obj.name)}_seg.dcm", "application/dicom")


def safe_filename(name: str) -> str:
    """A structure name as a file-name stem (letters, digits, '-', '_'; at most 64)."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:64] or "mask"


def attachment(data: bytes, filename: str, media_type: str) -> Response:
    return Response(data, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _image_bytes(image: sitk.Image, filename: str) -> Response:
    with tempfile.TemporaryDirectory(prefix="ctsam3d-") as tmp:
        path = Path(tmp) / filename
        sitk.WriteImage(image, str(path), True, 1)
        return attachment(path.read_bytes(), filename, "application/gzip")
