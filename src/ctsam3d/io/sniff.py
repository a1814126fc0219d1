"""What a file is, from its first bytes: for messages that say "this is a NIfTI image, not a
checkpoint" instead of repeating whatever a parser choked on.

Only magic numbers are read (a few hundred bytes; a zip's member list); nothing is decoded or
unpickled.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path

#: What ``torch.save`` writes first in its legacy (pre-zip) format: pickle protocol 2, then the
#: magic number 0x1950a86a20f9469cfc6c as a 10-byte LONG1.
_TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # a multi-byte character cut at the end of the sample
        try:
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    return bool(text) and all(c.isprintable() or c in "\r\n\t\f" for c in text)


def describe(path: str | Path) -> str:
    """A few words saying what kind of file ``path`` is (``"a gzip-compressed file"``, ...)."""
    p = Path(path)
    try:
        size = p.stat().st_size
        with open(p, "rb") as f:
            head = f.read(512)
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if size == 0:
        return "an empty file"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "a zip archive"
    if head.startswith(b"\x1f\x8b"):
        return "gzip-compressed data (e.g. a .nii.gz image)"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "a DICOM file"
    if len(head) >= 4 and struct.unpack("<i", head[:4])[0] in (348, 540) or (
        len(head) >= 4 and struct.unpack(">i", head[:4])[0] in (348, 540)
    ):
        return "a NIfTI image"
    if head.startswith(b"\x93NUMPY"):
        return "a NumPy array file (.npy)"
    if head.startswith(b"\x89HDF"):
        return "an HDF5 file"
    if head.startswith(b"NRRD"):
        return "an NRRD image"
    if head.startswith(b"ObjectType") or head.startswith(b"NDims"):
        return "a MetaImage (.mha/.mhd) image"
    if len(head) >= 9:
        n = struct.unpack("<Q", head[:8])[0]
        if 0 < n < size and head[8:9] == b"{":
            return "a safetensors file"
    if head[:1] == b"\x80" and len(head) > 1 and head[1] <= 5:
        return f"a Python pickle (protocol {head[1]})"
    if _looks_like_text(head):
        return "a text file"
    return f"binary data of an unknown kind (starting {head[:8].hex(' ')})"


def torch_checkpoint_problem(path: str | Path) -> str | None:
    """None if ``path`` is laid out as a ``torch.save`` file (zip with ``data.pkl``, or the
    legacy pickle format); else a few words on what it is instead (see :func:`describe`)."""
    p = Path(path)
    try:
        with open(p, "rb") as f:
            head = f.read(len(_TORCH_LEGACY_MAGIC))
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if head.startswith(_TORCH_LEGACY_MAGIC):
        return None
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(p) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError):
            return "a damaged or truncated zip archive"
        if any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
            return None
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        return f"a zip archive of {len(names)} file(s) ({shown}) without the data.pkl a torch.save file holds"
    return describe(p)
