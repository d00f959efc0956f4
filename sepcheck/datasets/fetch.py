"""Make a data set's published files available: find them in ``<data dir>/<name>/``,
download the missing ones when allowed, and verify their published checksums.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import DataUnavailableError, SepcheckError
from . import download as _download
from ._warn import warn
from .checksums import file_digest, fingerprint
from .remote import RemoteFile


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
    mtime_ns}`` plus ``md5``/``sha256`` when verified.
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
                raise SepcheckError(
                    f"{dataset}: {path} has {algo} {actual} but the published {algo} is {expected}: "
                    "the file is corrupted or not the official one; delete it to download it again "
                    "(or pass --no-verify for a trusted mirror)"
                )
            rec[algo] = actual
        records.append(rec)
    if not verify and any(f.checksum is not None for f in files):
        warn(f"{dataset}: checksums not verified (verify=False / --no-verify); the format is still checked")
    return records


def _fetch_one(dataset: str, f: RemoteFile, directory: Path, verify: bool, progress: bool) -> None:
    urls = f.candidate_urls(dataset)
    if not urls:
        raise DataUnavailableError(f"{dataset}: {f.name} not found in {directory} and it has no download URL",
                                   dataset=dataset, missing=[f.name], directory=directory, reason="no URL")
    failures = []
    for url in urls:
        try:
            _download.download(url, directory / f.name, checksum=f.checksum if verify else None, progress=progress)
            return
        except _download.DownloadError as exc:
            failures.append(f"{url}: {exc}")
    raise DataUnavailableError(
        f"{dataset}: could not download {f.name} ({'; '.join(failures)}): download it by hand into {directory}",
        dataset=dataset, missing=[f.name], directory=directory, reason=f"the download failed ({failures[-1]})",
    )
