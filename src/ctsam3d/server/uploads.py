"""Storing uploaded images under server-owned names.

No name sent by a client reaches the filesystem: the client's file name only chooses the
format (by its ending, from an allow-list), and the bytes are written to fixed names inside
a folder the server created (``image.nii.gz``, ``dicom/0001.dcm``, ...). Formats that can
point at other files (NRRD ``data file``, MetaImage ``ElementDataFile``) are refused unless
the data is inline, and zip archives are unpacked with limits on count and total size.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path
from typing import BinaryIO

from ..errors import InputError

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")
DICOM_SUFFIXES = (".dcm", "")
MAX_ZIP_MEMBERS = 5000
_CHUNK = 1 << 20


def suffix_of(filename: str) -> str:
    """The allowed format ending of a client file name (lower case), or raise :class:`InputError`."""
    name = (filename or "").rsplit("/", 1)[-1].rsplit("\\", 1)[-1].lower()
    for suffix in VOLUME_SUFFIXES + (".zip", ".dcm"):
        if name.endswith(suffix):
            return suffix
    if "." not in name and name:
        return ""  # DICOM files often have no extension
    raise InputError(
        f"upload {filename[:80]!r}: unsupported format; send NIfTI (.nii/.nii.gz), NRRD, MHA, "
        "a zipped DICOM series (.zip) or DICOM files"
    )


def client_label(filename: str | None, more: int = 0) -> str:
    """How messages name an upload: the client's own file name (base name, at most 80
    characters), and how many more files came with it."""
    base = (filename or "").replace("\\", "/").rsplit("/", 1)[-1][:80]
    label = f"upload {base!r}" if base else "upload"
    return f"{label} and {more} more" if more > 0 else label


def files_label(files) -> str:
    """:func:`client_label` of a list of uploaded files (objects with ``filename``)."""
    return client_label(files[0].filename if files else "", len(files) - 1)


def _copy(src: BinaryIO, dst: Path, limit: int, label: str) -> int:
    """Copy ``src`` to the server-owned ``dst``; ``label`` names the upload in messages."""
    written = 0
    with open(dst, "wb") as out:
        while chunk := src.read(_CHUNK):
            written += len(chunk)
            if written > limit:
                raise InputError(f"{label}: larger than the limit of {limit / 2**20:g} MiB")
            out.write(chunk)
    if written == 0:
        raise InputError(f"{label}: empty file")
    return written


def check_self_contained(path: Path, suffix: str) -> None:
    """Refuse NRRD / MetaImage headers that reference another file (a path chosen by the client)."""
    if suffix not in (".nrrd", ".mha"):
        return
    with open(path, "rb") as f:
        head = f.read(65536)
    text = head.split(b"\n\n", 1)[0] if suffix == ".nrrd" else head
    for raw in text.splitlines():
        line = raw.decode("latin-1", "replace").strip().lower()
        if suffix == ".nrrd" and (line.startswith("data file:") or line.startswith("datafile:")):
            raise InputError("upload: NRRD with a detached data file is not accepted; send a single-file .nrrd")
        if suffix == ".mha" and line.replace(" ", "").startswith("elementdatafile="):
            if line.split("=", 1)[1].strip() != "local":
                raise InputError("upload: MetaImage must hold its data inline (ElementDataFile = LOCAL)")
            break


def _unzip(archive: Path, dest: Path, limit: int, label: str) -> Path:
    """Unpack regular files to ``dest/dicom/00001.dcm...`` (or one volume to ``dest/image<ext>``)."""
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile:
        raise InputError("upload: not a valid zip archive") from None
    with zf:
        members = [m for m in zf.infolist() if not m.is_dir() and not _ignored(m.filename)]
        if not members:
            raise InputError("upload: the zip archive holds no files")
        if len(members) > MAX_ZIP_MEMBERS:
            raise InputError(f"upload: the zip archive holds {len(members)} files (limit {MAX_ZIP_MEMBERS})")
        volumes = [m for m in members if m.filename.lower().endswith(VOLUME_SUFFIXES)]
        total = 0
        if len(volumes) == 1 and len(members) == 1:
            suffix = suffix_of(volumes[0].filename)
            target = dest / f"image{suffix}"
            with zf.open(volumes[0]) as src:
                _copy(src, target, limit, f"{label}, member {volumes[0].filename.rsplit('/', 1)[-1][:80]!r}")
            check_self_contained(target, suffix)
            return target
        folder = dest / "dicom"
        folder.mkdir()
        for n, member in enumerate(members, 1):
            with zf.open(member) as src:
                total += _copy(src, folder / f"{n:05d}.dcm", limit - total, f"{label} (unpacked)")
        return folder


def _ignored(name: str) -> bool:
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return not base or base.startswith(".") or name.startswith("__MACOSX/") or base.upper() == "DICOMDIR"


def store_upload(files: list[tuple[str, BinaryIO]], dest: Path, limit: int) -> Path:
    """Write uploaded files into the new, empty folder ``dest``; return the image path to read.

    Args:
        files: ``(client file name, binary stream)``; one volume file, one zip, or several
            DICOM files of one series.
        dest: server-owned folder (created here).
        limit: most bytes written in total (unpacked zip contents included).

    Returns:
        a volume file or a folder of DICOM files, inside ``dest``.

    Raises:
        InputError: no file, mixed or unsupported formats, over the limit, unsafe content.
    """
    if not files:
        raise InputError("upload: no file received")
    dest.mkdir(parents=True)
    try:
        suffixes = [suffix_of(name) for name, _ in files]
        if len(files) == 1 and suffixes[0] not in DICOM_SUFFIXES:
            suffix = suffixes[0]
            label = client_label(files[0][0])
            if suffix == ".zip":
                _copy(files[0][1], dest / "upload.zip", limit, label)
                try:
                    return _unzip(dest / "upload.zip", dest, limit, label)
                finally:
                    (dest / "upload.zip").unlink(missing_ok=True)
            target = dest / f"image{suffix}"
            _copy(files[0][1], target, limit, label)
            check_self_contained(target, suffix)
            return target
        if any(s not in DICOM_SUFFIXES for s in suffixes):
            raise InputError("upload: several files must all be DICOM slices (.dcm) of one series")
        folder = dest / "dicom"
        folder.mkdir()
        total = 0
        for n, (name, stream) in enumerate(files, 1):
            total += _copy(stream, folder / f"{n:05d}.dcm", limit - total, client_label(name))
        return folder
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
