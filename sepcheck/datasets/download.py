"""Streaming HTTP(S) download: to a ``.part`` file beside the target, with a progress bar,
checked against the published checksum, then renamed. Nothing half-written is left behind.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from .._version import __version__
from ..errors import DownloadError
from .checksums import default_file_mode

#: seconds without data before a transfer is abandoned
TIMEOUT_S = 60.0
_CHUNK = 1 << 20




def download(
    url: str,
    dest: str | os.PathLike,
    *,
    checksum: tuple[str, str] | None = None,
    timeout: float | None = None,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest``; verify ``checksum`` = (algorithm, hex) when given.

    The bytes go to ``.<name>.<random>.part`` in the destination folder and are renamed
    only when the transfer is complete (Content-Length reached) and the checksum matches.
    Raises :class:`DownloadError` with the reason otherwise; the ``.part`` file is removed.
    """
    target = Path(dest)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    part = Path(tmp)
    try:
        with os.fdopen(fd, "wb") as out:
            digest = _stream(url, out, checksum, TIMEOUT_S if timeout is None else timeout, progress, target.name)
        if checksum is not None and digest != checksum[1]:
            raise DownloadError(
                f"{checksum[0]} of the downloaded file is {digest}, the published one is {checksum[1]}"
            )
        os.chmod(part, default_file_mode())
        os.replace(part, target)
    finally:
        if part.exists():
            part.unlink()
    return target


def _stream(url: str, out, checksum: tuple[str, str] | None, timeout: float, progress: bool, name: str) -> str | None:
    request = urllib.request.Request(url, headers={"User-Agent": f"sepcheck/{__version__}"})
    h = hashlib.new(checksum[0]) if checksum is not None else None
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            from tqdm.auto import tqdm

            received = 0
            with tqdm(total=total, desc=f"downloading {name}", unit="B", unit_scale=True,
                      file=sys.stderr, leave=False, delay=1.0, disable=not progress) as bar:
                while chunk := resp.read(_CHUNK):
                    out.write(chunk)
                    if h is not None:
                        h.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise DownloadError(f"{exc.reason}") from None
    except (http.client.HTTPException, OSError) as exc:
        raise DownloadError(f"transfer interrupted ({type(exc).__name__}: {exc})") from None
    if total is not None and received != total:
        raise DownloadError(f"transfer interrupted after {received} of {total} bytes")
    if received == 0:
        raise DownloadError("the server sent an empty file")
    return h.hexdigest() if h is not None else None
