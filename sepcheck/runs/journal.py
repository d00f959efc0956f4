"""The journal of a run: its finished shards, kept next to the output so that a run resumes.

``<out>.parts/`` holds ``manifest.json`` (the run's fingerprint, :mod:`.job`) and one
``shard-NNNNN.npz`` per finished shard, each written atomically, so a crash or SIGKILL loses at
most the shards in progress. A journal of other inputs or options, or a ``<out>.parts`` that
is no journal, is refused with one line and left untouched.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import SepcheckError, cause
from ..core.fileio import atomic_write
from .job import describe_mismatch

_SHARD_FILE = re.compile(r"^shard-(\d{5,})\.npz$")


class Journal:
    """Finished shards of a run, next to its output: ``<out>.parts/`` (see the module doc)."""

    def __init__(self, out: str | os.PathLike, fingerprint: dict[str, Any]):
        self.out = Path(out)
        self.folder = self.out.with_name(self.out.name + ".parts")
        self.fingerprint = fingerprint

    @property
    def manifest(self) -> Path:
        return self.folder / "manifest.json"

    def shard_path(self, i: int) -> Path:
        return self.folder / f"shard-{i:05d}.npz"

    def read_fingerprint(self) -> dict[str, Any] | None:
        """The manifest's fingerprint, None without a journal; a damaged manifest -> error."""
        if not self.manifest.exists():
            return None
        try:
            fp = json.loads(self.manifest.read_text())
            if not isinstance(fp, dict):
                raise ValueError("not an object")
        except (OSError, ValueError) as exc:
            raise SepcheckError(f"results journal {self.folder} is damaged ({cause(exc)}): remove the folder "
                                "and run again") from None
        return fp

    def check(self) -> None:
        """Refuse (one line, nothing touched) a journal written for other inputs or options."""
        fp = self.read_fingerprint()
        if fp is None:
            return
        diff = describe_mismatch(fp, self.fingerprint)
        if diff is not None:
            raise SepcheckError(f"results journal {self.folder} belongs to a run with other inputs or options "
                                f"({diff}): run without --resume to start over, or give another --out")

    def start(self, resume: bool) -> None:
        """Create the journal (resume: keep a matching one; else replace any old one)."""
        self.check_ours()
        if resume:
            self.check()
        elif self.folder.exists():
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        for stale in self.folder.glob(".*.part"):  # temporary files of a killed write
            with contextlib.suppress(OSError):
                stale.unlink()
        if not self.manifest.exists():
            atomic_write(self.manifest, lambda tmp: tmp.write_text(json.dumps(self.fingerprint, indent=1)))

    def check_ours(self) -> None:
        """Refuse to touch a ``<out>.parts`` that is not a journal (a file, or a folder holding
        anything but a manifest, shard files and temporary files of ours)."""
        if not self.folder.exists() and not self.folder.is_symlink():
            return
        ok = self.folder.is_dir() and not self.folder.is_symlink() and all(
            p.name == "manifest.json" or _SHARD_FILE.match(p.name) or (p.name.startswith(".") and
                                                                       p.name.endswith(".part"))
            for p in self.folder.iterdir())
        if not ok:
            raise SepcheckError(f"{self.folder} exists and is not a sepcheck results journal, which sepcheck "
                                "never deletes: move it away or give another --out")

    def attach(self) -> None:
        """A rank other than 0 (after rank 0's :meth:`start`): check the manifest, or create one
        when this rank does not share rank 0's filesystem."""
        if self.read_fingerprint() is None:
            self.start(resume=False)
        self.check()

    def done(self) -> set[int]:
        if not self.folder.is_dir():
            return set()
        return {int(m.group(1)) for p in self.folder.iterdir() if (m := _SHARD_FILE.match(p.name))}

    def load(self, i: int) -> dict[str, np.ndarray] | None:
        """Shard ``i`` if the journal holds it (a file that does not read back is dropped)."""
        path = self.shard_path(i)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError, KeyError, EOFError):
            with contextlib.suppress(OSError):
                path.unlink()
            return None

    def save(self, i: int, arrays: dict[str, np.ndarray]) -> None:
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)
                fh.flush()
                os.fsync(fh.fileno())

        atomic_write(self.shard_path(i), write, "results journal")

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


__all__ = ["Journal"]
