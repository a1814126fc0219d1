"""One HTTP download into a partial file, resumable with ``Range`` requests; sha256 of files.

:func:`fetch` appends to ``<dest>`` (the partial file) from where an earlier, interrupted
transfer stopped (``Range: bytes=N-``); a server that ignores the range (``200`` instead of
``206``) is read from the start again. A transfer cut short is retried a few times from where
it stopped; when that fails the partial file stays for the next run and :class:`TransferInterrupted`
says how far it got. Every network or HTTP failure is a :class:`HubError` with one line
(offline, refused, not found, ...).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import re
import socket
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

from .._version import __version__
from ..errors import CtSam3dError

log = logging.getLogger(__name__)
CHUNK = 1 << 20
USER_AGENT = f"ctsam3d/{__version__} (+https://github.com/alibaba-damo-academy/ct-sam3d weights download)"


class HubError(CtSam3dError):
    """Downloading or installing a model failed (offline, refused, not found, corrupt, ...)."""


class TransferInterrupted(HubError):
    """The transfer stopped before the end; the partial file is kept for resuming."""


def _host(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def open_url(url: str, *, what: str, headers: dict | None = None, timeout: float = 60):
    """``urllib`` response for a GET of ``url``; HubError naming ``what`` and the problem otherwise."""
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, **(headers or {})})
    try:
        return urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 (http(s) only, checked by the caller)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416:
            raise
        if exc.code == 404:
            raise HubError(f"{what}: not found on {_host(url)} (HTTP 404)") from None
        if exc.code in (401, 403):
            raise HubError(f"{what}: {_host(url)} refused the request (HTTP {exc.code}: needs a login or is not public)") from None
        raise HubError(f"{what}: {_host(url)} answered HTTP {exc.code} {exc.reason}; try again later") from None
    except urllib.error.URLError as exc:
        reason = exc.reason if not isinstance(exc.reason, BaseException) else (str(exc.reason) or type(exc.reason).__name__)
        raise HubError(f"{what}: cannot reach {_host(url)} ({reason}); offline? Download the files "
                       f"on another machine and use --from FILE") from None
    except (TimeoutError, socket.timeout, OSError, http.client.HTTPException) as exc:
        raise HubError(f"{what}: cannot reach {_host(url)} ({exc or type(exc).__name__}); offline? "
                       f"Download the files on another machine and use --from FILE") from None


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


def fetch(url: str, dest: Path, *, size: int | None = None, what: str | None = None, progress: bool = True,
          retries: int = 2, timeout: float = 60, backoff_s: float = 0.5) -> int:
    """Download ``url`` into ``dest``, continuing a partial ``dest`` with a Range request.

    Args:
        url: http(s) URL.
        dest: the partial file (created with its folder; appended to).
        size: expected size in bytes (the listing's), or None when unknown.
        what: name used in messages and on the progress bar (default: ``dest``'s name).
        progress: show a tqdm bar on stderr.
        retries: further attempts, each resuming where the previous stopped.

    Returns:
        the file's size once complete.

    Raises:
        TransferInterrupted: the transfer stopped early ``retries + 1`` times; ``dest`` is kept.
        HubError: HTTP or network failure, or the server's size disagrees with ``size``.
    """
    from tqdm import tqdm

    what = what or dest.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    have = dest.stat().st_size if dest.exists() else 0
    if size is not None and have > size:  # not a prefix of this file: start again
        dest.unlink()
        have = 0
    total = size
    attempt = 0
    while True:
        if total is not None and have == total:
            return have
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            resp = open_url(url, what=what, headers=headers, timeout=timeout)
        except urllib.error.HTTPError:  # 416: nothing left at this offset (or a stale partial file)
            if have and attempt == 0:
                dest.unlink()
                have, attempt = 0, attempt + 1
                continue
            raise HubError(f"{what}: {_host(url)} refused the byte range (HTTP 416)") from None
        with resp:
            status = resp.status
            if status == 206:
                m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
                if not m or int(m.group(1)) != have:
                    raise HubError(f"{what}: {_host(url)} answered a different byte range than asked ({resp.headers.get('Content-Range')})")
                remote = int(m.group(3)) if m.group(3) != "*" else None
                mode = "ab"
            else:  # 200: the whole file (the server ignored or does not support ranges)
                length = resp.headers.get("Content-Length")
                remote = int(length) if length and length.isdigit() else None
                have, mode = 0, "wb"
            if remote is not None and size is not None and remote != size:
                raise HubError(f"{what}: the server sends {remote:,} bytes but the listing says {size:,}")
            total = remote if remote is not None else total
            bar = tqdm(total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024, desc=what,
                       disable=not progress, file=sys.stderr, leave=False)
            error = None
            try:
                with open(dest, mode) as out:
                    while True:
                        block = resp.read(CHUNK)
                        if not block:
                            break
                        out.write(block)
                        have += len(block)
                        bar.update(len(block))
            except (OSError, http.client.HTTPException, TimeoutError) as exc:  # connection lost mid-transfer
                error = exc
            finally:
                bar.close()
        if error is None and (total is None or have == total):
            return have
        if total is not None and have > total:
            dest.unlink()
            raise HubError(f"{what}: received more than the {total:,} bytes announced; partial file removed")
        attempt += 1
        if attempt > retries:
            done = f"{have:,} of {total:,} bytes" if total is not None else f"{have:,} bytes"
            reason = f" ({error or type(error).__name__})" if error is not None else ""
            raise TransferInterrupted(
                f"{what}: transfer interrupted after {done}{reason}; run the same command again to resume"
            )
        log.warning("%s: transfer cut after %s bytes; resuming from there (attempt %d of %d)",
                    what, f"{have:,}", attempt, retries)
        time.sleep(backoff_s * attempt)


def sha256_file(path: Path, *, progress: bool = False, what: str | None = None) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    from tqdm import tqdm

    h = hashlib.sha256()
    with open(path, "rb") as f, tqdm(total=path.stat().st_size, unit="B", unit_scale=True, unit_divisor=1024,
                                     desc=f"sha256 {what or path.name}", disable=not progress, file=sys.stderr,
                                     leave=False) as bar:
        while block := f.read(CHUNK):
            h.update(block)
            bar.update(len(block))
    return h.hexdigest()
