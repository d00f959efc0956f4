"""One published file of a data set: its name, canonical URLs and published checksums."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class RemoteFile:
    """A file as its publisher distributes it.

    ``urls`` are tried in order; ``$SEPCHECK_MIRROR`` (a base URL) is tried first as
    ``<mirror>/<data set>/<name>``. At least one of ``md5``/``sha256`` is published for
    every downloadable file.
    """

    name: str
    urls: tuple[str, ...] = ()
    md5: str | None = None
    sha256: str | None = None

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
