"""Safe file writing and strict JSON: the I/O helpers every layer shares (results, runs, CLI).

A core module: it imports nothing from sepcheck except :mod:`sepcheck.core.errors`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SepcheckError


def to_jsonable(obj: Any) -> Any:
    """numpy scalars/arrays -> Python; non-finite floats -> None (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def json_text(obj: Any, indent: int | None = 2) -> str:
    """Strict JSON text of ``obj`` (through :func:`to_jsonable`; never ``NaN``)."""
    return json.dumps(to_jsonable(obj), indent=indent, allow_nan=False)


def file_kind(mode: int) -> str:
    """A file type in words, from ``os.stat().st_mode`` ("regular file", "FIFO", ...)."""
    for test, name in ((stat.S_ISREG, "regular file"), (stat.S_ISDIR, "directory"), (stat.S_ISFIFO, "FIFO"),
                       (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISSOCK, "socket")):
        if test(mode):
            return name
    return "special file"


def output_target(path: str | os.PathLike, what: str) -> Path:
    """The file an output to ``path`` replaces: ``path`` itself, or where a symlink leads.

    Outputs are only ever renamed onto a regular file or a new name. A symlink is followed
    to its regular file (the link stays, its target gets the new content); a dangling link,
    a directory, a FIFO, a device or a socket is refused with a :class:`SepcheckError`
    naming ``what`` (an option such as ``--out``).
    """
    p = Path(path)
    real = Path(os.path.realpath(p)) if p.is_symlink() else p
    try:
        mode = os.stat(real).st_mode
    except FileNotFoundError:
        if real is not p:
            raise SepcheckError(f"{what} {p} is a symlink to {real}, which does not exist: "
                                "give a regular file or a new name") from None
        return p
    except OSError as exc:
        raise SepcheckError(f"cannot write {what} {p} ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        via = f" (through the symlink to {real})" if real is not p else ""
        raise SepcheckError(f"{what} {p} is a {file_kind(mode)}{via}, which sepcheck never replaces: "
                            "give a regular file or a new name")
    return real


def check_writable(path: str | os.PathLike, what: str) -> Path:
    """Fail before any work if ``path`` cannot be written; creates nothing.

    The target must be a regular file or a new name (:func:`output_target`); a temporary
    file is created and removed in its nearest existing folder to prove that the folder
    accepts files (``os.access`` says yes to root even on /proc). Missing folders are
    created only when the output is written (:func:`atomic_write`). Returns ``path``.
    """
    p = Path(path)
    target = output_target(p, what)
    folder = target.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise SepcheckError(f"cannot write {what} {p}: {folder} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".sepcheck-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise SepcheckError(f"cannot write {what} {p}: {folder} does not accept files ({exc.strerror})") from None
    return p


def replace_file(tmp: Path, target: Path, what: str = "output") -> None:
    """Rename the finished ``tmp`` onto ``target`` -- only onto a regular file or a new name
    (a symlink: onto the regular file it leads to)."""
    os.replace(tmp, output_target(target, what))


def writable_dir(directory: str | os.PathLike) -> bool:
    """A folder sepcheck may write caches into: it (or, when missing, its nearest existing
    parent, where it would be created) is writable and not marked read-only (no write bit
    at all), even for root (who may write anywhere)."""
    folder = Path(directory)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        st = os.stat(folder)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and bool(stat.S_IMODE(st.st_mode) & 0o222) and os.access(folder, os.W_OK)


def h5_dataset(f: Any, key: str, source: str | os.PathLike, *, streamed: bool = False) -> Any:
    """The dataset ``f[key]`` of an open ``h5py.File``, checked to read only from ``f`` itself.

    Refused with a one-line :class:`SepcheckError` naming the feature: external links,
    soft links that lead nowhere or out of the file, groups, virtual datasets (data in
    other files; a missing source would be read as fill values), external storage (raw
    data in another file: any file, a FIFO, /dev/zero), object / compound types, an HDF5
    filter that is not installed, and sizes that do not fit: more bytes than memory
    available (unless ``streamed``: the dataset is read in blocks), or (uncompressed) fewer
    bytes stored than declared.
    """
    import h5py

    where = f"data file {source}: {key!r}"
    link = f.get(key, getlink=True)
    if isinstance(link, h5py.ExternalLink):
        raise SepcheckError(f"{where} is an HDF5 external link (to {link.filename}), which sepcheck never "
                            "follows: copy the data into the file")
    obj = f.get(key)
    if obj is None:
        raise SepcheckError(f"{where} is an HDF5 soft link to {getattr(link, 'path', '?')}, which does not exist")
    if obj.file.id != f.id:
        raise SepcheckError(f"{where} is a link that leaves the file, which sepcheck never follows: copy the "
                            "data into the file")
    if not isinstance(obj, h5py.Dataset):
        raise SepcheckError(f"{where} is a group, not an array")
    if obj.is_virtual:
        raise SepcheckError(f"{where} is an HDF5 virtual dataset (its data lives in other files), which sepcheck "
                            "never reads: store the array itself")
    if obj.external:
        raise SepcheckError(f"{where} uses HDF5 external storage (its bytes live in {obj.external[0][0]!r}), "
                            "which sepcheck never reads: store the array in the file")
    if obj.dtype.kind in "OV" or obj.dtype.hasobject:
        raise SepcheckError(f"{where} has HDF5 type {obj.dtype}: store a numeric array")
    plist = obj.id.get_create_plist()
    n_filters = plist.get_nfilters()
    for i in range(n_filters):
        code, _, _, name = plist.get_filter(i)
        if not h5py.h5z.filter_avail(code):
            label = name.decode(errors="replace") if isinstance(name, bytes) else str(name)
            raise SepcheckError(f"{where} is compressed with the HDF5 filter {label or '?'} (id {code}), which is "
                                "not installed: `pip install hdf5plugin` or rewrite the file with gzip")
    nbytes = math.prod(int(s) for s in obj.shape) * obj.dtype.itemsize
    if not streamed:
        check_read_size(nbytes, str(source), repr(key))
    stored = obj.id.get_storage_size()
    if nbytes and (stored < nbytes if n_filters == 0 else stored == 0):
        raise SepcheckError(f"{where} declares {nbytes} bytes but the file stores {stored}: the file is truncated "
                            "or incomplete (missing data would be read as fill values)")
    return obj


#: bytes at the start of a sealed HDF5 file (its user block, which HDF5 ignores)
USERBLOCK = 512


def _body_hash(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        fh.seek(USERBLOCK)
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def seal_file(path: Path, tag: str) -> None:
    """Write ``tag blake2b=<hash of every byte after the user block>`` into the first
    :data:`USERBLOCK` bytes of ``path`` (an HDF5 file created with ``userblock_size=USERBLOCK``)."""
    seal = f"{tag} blake2b={_body_hash(path)}\n".encode()
    with open(path, "r+b") as fh:
        fh.write(seal.ljust(USERBLOCK, b"\0"))


def seal_problem(path: Path, tag: str) -> str | None:
    """None when ``path`` carries a valid :func:`seal_file` seal for ``tag``; else what is
    wrong. Checked before HDF5 parses a file of ours: the library can crash on damaged files."""
    with open(path, "rb") as fh:
        head = fh.read(USERBLOCK)
    prefix = f"{tag} blake2b=".encode()
    stored = head[len(prefix):].split(b"\n", 1)[0] if head.startswith(prefix) else b""
    if not stored:
        return f"no '{tag}' seal"
    if stored != _body_hash(path).encode():
        return "its bytes do not match its checksum (edited or corrupted)"
    return None


def input_file(path: str | os.PathLike, what: str) -> Path:
    """``path`` if it is a regular file (symlinks followed); a FIFO, device, folder or
    missing file raises :class:`SepcheckError` (reading a FIFO or /dev/zero never ends)."""
    p = Path(path)
    try:
        mode = os.stat(p).st_mode
    except FileNotFoundError:
        raise SepcheckError(f"{what} {p} does not exist") from None
    except OSError as exc:
        raise SepcheckError(f"cannot read {what} {p} ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        raise SepcheckError(f"{what} {p} is a {file_kind(mode)}, not a regular file: give a file")
    return p


def read_json_object(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """The JSON object in the regular file ``path`` (:func:`input_file`); unreadable text,
    invalid JSON or another JSON value raises :class:`SepcheckError` naming ``what``."""
    p = input_file(path, what)
    try:
        obj = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SepcheckError(f"{what} {p} is unreadable or not JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise SepcheckError(f"{what} {p} is not a JSON object")
    return obj


def available_memory() -> int:
    """Bytes of memory a reader may ask for: MemAvailable on Linux, else the physical memory."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def check_read_size(nbytes: int, source: str, what: str) -> None:
    """Refuse to read ``nbytes`` (a size a file declares) beyond :func:`available_memory`."""
    limit = available_memory()
    if nbytes > limit:
        raise SepcheckError(f"{source}: {what} declares {nbytes / 2**30:.1f} GiB, more than the "
                            f"{limit / 2**30:.1f} GiB of memory available: the file is corrupted or too large")


@functools.cache
def default_file_mode() -> int:
    """0o666 minus the umask: the mode a plain ``open()`` would give (mkstemp gives 0o600).

    The umask is read from /proc on Linux (no global change); elsewhere it is read once by
    setting and restoring it.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str | os.PathLike, writer: Callable[[Path], None], what: str = "output") -> Path:
    """Call ``writer(tmp)`` then rename tmp onto ``path``: nothing half-written is left behind.

    tmp lies in the target's folder (created now if missing); the rename goes only onto a
    regular file or a new name (a symlink is followed to its regular file; anything else
    raises :class:`SepcheckError`, checked before and again after ``writer``).
    """
    target = output_target(path, what)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    os.chmod(tmp, default_file_mode())  # mkstemp makes 0600; results get the usual permissions
    tmp_path = Path(tmp)
    try:
        writer(tmp_path)
        replace_file(tmp_path, target, what)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
    return Path(path)
