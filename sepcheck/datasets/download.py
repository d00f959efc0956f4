"""Download and verify: a data set's published files (:class:`RemoteFile`), found in
``<data dir>/<name>/`` or downloaded (streamed to a ``.part`` file beside the target, with a
progress bar, checked, then renamed: nothing half-written is left behind), and verified
against their published checksums in bounded memory.

A gzipped file whose bytes differ from the published archive (re-compressed, e.g. a lossless
reconstruction) is still verified when the md5 of its *decompressed content* is published:
the record says which of the two was checked.
"""

from __future__ import annotations

import contextlib
import glob
import gzip
import hashlib
import http.client
import os
import stat
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._version import __version__
from ..core.errors import DataUnavailableError, DownloadError, SepcheckError
from ..core.fileio import default_file_mode, output_target, replace_file
from ..core.progress import bar as progress_bar
from .base import warn

#: seconds without data before a transfer is abandoned
TIMEOUT_S = 60.0
_CHUNK = 1 << 20
#: files at least this big get a progress bar while hashed
_BAR_BYTES = 64 << 20


@dataclass(frozen=True)
class RemoteFile:
    """A file as its publisher distributes it.

    ``urls`` are tried in order; ``$SEPCHECK_MIRROR`` (a base URL) is tried first as
    ``<mirror>/<data set>/<name>``. At least one of ``md5``/``sha256`` is published for
    every downloadable file. ``content_md5`` is the published md5 of a ``.gz`` file's
    decompressed content: a file whose gzip bytes differ from the archive is verified by it.
    """

    name: str
    urls: tuple[str, ...] = ()
    md5: str | None = None
    sha256: str | None = None
    content_md5: str | None = None

    @property
    def checksum(self) -> tuple[str, str] | None:
        """(algorithm, hex digest) to verify against, sha256 preferred."""
        if self.sha256:
            return "sha256", self.sha256.lower()
        if self.md5:
            return "md5", self.md5.lower()
        return None

    def candidate_urls(self, dataset: str) -> list[str]:
        """URLs to try, the user's mirror first."""
        mirror = os.environ.get("SEPCHECK_MIRROR", "").strip()
        urls = [f"{mirror.rstrip('/')}/{dataset}/{self.name}"] if mirror else []
        return urls + list(self.urls)


def file_digest(path: str | os.PathLike, algorithm: str = "md5", progress: bool = True) -> str:
    """Hex digest of a file's bytes."""
    p = Path(path)
    h = hashlib.new(algorithm)
    size = p.stat().st_size
    bar = None
    if progress and size >= _BAR_BYTES:
        bar = progress_bar(size, f"checking {p.name}", "B", unit_scale=True)
    try:
        with p.open("rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
                if bar is not None:
                    bar.update(len(chunk))
    finally:
        if bar is not None:
            bar.close()
    return h.hexdigest()


def content_digest(path: Path) -> str | None:
    """md5 of a gzip file's decompressed content (streamed), or None when it does not decompress."""
    h = hashlib.md5()
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
    except (OSError, EOFError, zlib.error):
        return None
    return h.hexdigest()


def fingerprint(path: str | os.PathLike, root: str | os.PathLike | None = None) -> dict:
    """``{name, size, mtime_ns}`` of a file (name relative to ``root`` when given)."""
    p = Path(path)
    st = p.stat()
    name = p.relative_to(root).as_posix() if root is not None else p.name
    return {"name": name, "size": int(st.st_size), "mtime_ns": int(st.st_mtime_ns)}


def offline() -> bool:
    """True when ``$SEPCHECK_OFFLINE`` forbids downloads (any value but '', '0', 'false', 'no')."""
    return os.environ.get("SEPCHECK_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


def no_download_reason(download: bool) -> str | None:
    """Why downloading is off, or None when it is allowed."""
    if not download:
        return "downloading is off (--no-download)"
    if offline():
        return "downloading is off (SEPCHECK_OFFLINE is set)"
    return None


def unavailable(dataset: str, missing: Sequence[RemoteFile], directory: Path, reason: str,
                also: str = "") -> DataUnavailableError:
    """The one-line error for files that are missing and cannot be downloaded (``also``: an
    alternative layout that would do as well, e.g. the extracted folder)."""
    names = ", ".join(f.name for f in missing) + (f" (or {also})" if also else "")
    urls = sorted({f.urls[0].rsplit("/", 1)[0] + "/" for f in missing if f.urls})
    where = f": download {'it' if len(missing) == 1 else 'them'} from {' or '.join(urls)} into that folder" if urls else ""
    return DataUnavailableError(
        f"{dataset}: {names} not found in {directory} and {reason}{where}",
        dataset=dataset, missing=[f.name for f in missing], directory=directory, reason=reason,
    )


def ensure_files(
    dataset: str,
    files: Sequence[RemoteFile],
    directory: Path,
    *,
    download: bool = True,
    verify: bool = True,
    progress: bool = True,
    also: str = "",
) -> list[dict[str, Any]]:
    """Make ``files`` present in ``directory`` and check them; return their fingerprints.

    Missing files are downloaded when allowed (``download`` and not ``$SEPCHECK_OFFLINE``).
    With ``verify`` every file's published checksum is checked (a mismatch is an error);
    without it nothing is hashed and a warning says so. Each fingerprint is ``{name, size,
    mtime_ns}`` plus the file's ``md5``/``sha256`` when verified, and ``content_md5`` when the
    file was verified by its decompressed content (see :func:`verification_notes`).
    """
    missing = [f for f in files if not (directory / f.name).is_file()]
    if missing:
        reason = no_download_reason(download)
        if reason is not None:
            raise unavailable(dataset, missing, directory, reason, also)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SepcheckError(f"{dataset}: cannot create the data folder {directory} ({exc.strerror}): "
                                "pass a writable --data-dir") from None
        for f in missing:
            _fetch_one(dataset, f, directory, verify, progress)
    fresh = {f.name for f in missing}
    records = []
    for f in files:
        path = directory / f.name
        rec = fingerprint(path, directory)
        if verify and f.checksum is not None:
            algo, expected = f.checksum
            # a fresh download was verified while it streamed
            actual = expected if f.name in fresh else file_digest(path, algo, progress)
            if actual != expected:
                content = content_digest(path) if f.content_md5 else None
                if content is None or content != f.content_md5:
                    also = (f" and its decompressed content has md5 {content or '(does not decompress)'}, "
                            f"not the published {f.content_md5}" if f.content_md5 else "")
                    raise SepcheckError(
                        f"{dataset}: {path} has {algo} {actual} but the published {algo} is {expected}{also}: "
                        "the file is corrupted or not the official one; delete it to download it again "
                        "(or pass --no-verify for a trusted mirror)"
                    )
                rec["content_md5"] = content
            rec[algo] = actual
        records.append(rec)
    if not verify and any(f.checksum is not None for f in files):
        warn(f"{dataset}: checksums not verified (verify=False / --no-verify); the format is still checked")
    return records


def verification_notes(dataset: str, records: Sequence[dict[str, Any]]) -> list[str]:
    """What was checked for files that :func:`ensure_files` verified by their decompressed
    content rather than their bytes (one note; none when every file matched exactly)."""
    names = [r["name"] for r in records if "content_md5" in r]
    if not names:
        return []
    return [f"{dataset}: {', '.join(names)} {'is' if len(names) == 1 else 'are'} not byte-identical to the "
            "published .gz archive; verified instead by the published md5 of the decompressed content"]


def _fetch_one(dataset: str, f: RemoteFile, directory: Path, verify: bool, progress: bool) -> None:
    urls = f.candidate_urls(dataset)
    if not urls:
        raise DataUnavailableError(f"{dataset}: {f.name} not found in {directory} and it has no download URL",
                                   dataset=dataset, missing=[f.name], directory=directory, reason="no URL")
    failures = []
    for url in urls:
        try:
            download(url, directory / f.name, checksum=f.checksum if verify else None, progress=progress)
            return
        except DownloadError as exc:
            failures.append(f"{url}: {exc}")
    raise DataUnavailableError(
        f"{dataset}: could not download {f.name} ({'; '.join(failures)}): download it by hand into {directory}",
        dataset=dataset, missing=[f.name], directory=directory, reason=f"the download failed ({failures[-1]})",
    )


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
    target = output_target(dest, "download target")
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_parts(target)
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
        replace_file(part, target, "download target")
    finally:
        if part.exists():
            part.unlink()
    return target


#: a ``.part`` file not written to for this long belongs to a download that was killed
STALE_PART_S = 600.0


def clean_stale_parts(target: Path) -> list[Path]:
    """Remove the ``.<name>.*.part`` files beside ``target`` left by killed downloads (not
    modified for :data:`STALE_PART_S`; a live download writes to its own continuously)."""
    removed = []
    now = time.time()
    for part in target.parent.glob(f".{glob.escape(target.name)}.*.part"):
        with contextlib.suppress(OSError):
            st = part.lstat()
            if stat.S_ISREG(st.st_mode) and now - st.st_mtime > STALE_PART_S:
                part.unlink()
                removed.append(part)
    return removed


def _stream(url: str, out, checksum: tuple[str, str] | None, timeout: float, progress: bool, name: str) -> str | None:
    request = urllib.request.Request(url, headers={"User-Agent": f"sepcheck/{__version__}"})
    h = hashlib.new(checksum[0]) if checksum is not None else None
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            received = 0
            with progress_bar(total, f"downloading {name}", "B", enabled=progress, unit_scale=True) as bar:
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
