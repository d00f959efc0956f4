"""Helpers for the data set tests: small files in the official formats, a local HTTP
server, and isolation (a fresh data dir, offline by default, no internet ever)."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import pickle
import tarfile
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from sepcheck.datasets.download import RemoteFile


def isolate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh $SEPCHECK_DATA (returned), downloads off, and a guard: any URL not on
    127.0.0.1 fails the test. Each test module wraps this in its ``data_home`` fixture."""
    import sepcheck.datasets.download as dl

    home = tmp_path / "data"
    home.mkdir()
    monkeypatch.setenv("SEPCHECK_DATA", str(home))
    monkeypatch.setenv("SEPCHECK_OFFLINE", "1")
    monkeypatch.delenv("SEPCHECK_MIRROR", raising=False)
    monkeypatch.setattr(dl, "TIMEOUT_S", 5.0)
    real = dl.urllib.request.urlopen

    def local_only(request, *args, **kwargs):
        url = request.full_url if hasattr(request, "full_url") else str(request)
        host = urllib.parse.urlsplit(url).hostname
        assert host == "127.0.0.1", f"a test tried to reach {url}"
        return real(request, *args, **kwargs)

    monkeypatch.setattr(dl.urllib.request, "urlopen", local_only)
    return home


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# ----- IDX ---------------------------------------------------------------------------

_IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i2"): 0x0B,
              np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}


def idx_bytes(arr: np.ndarray) -> bytes:
    """IDX encoding of an array (big-endian payload), as the MNIST files are written."""
    a = np.asarray(arr)
    big = a.dtype.newbyteorder(">") if a.dtype.itemsize > 1 else a.dtype
    code = _IDX_CODES[np.dtype(big)]
    header = bytes([0, 0, code, a.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in a.shape)
    return header + a.astype(big).tobytes()


def write_idx_gz(path: Path, arr: np.ndarray) -> bytes:
    data = gzip.compress(idx_bytes(arr), mtime=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data


def write_mnist_like(folder: Path, rng: np.random.Generator, n_train: int = 40, n_test: int = 20,
                     side: int = 28, splits=("train", "t10k")) -> dict[str, tuple[np.ndarray, np.ndarray, dict]]:
    """Official MNIST layout in ``folder``; returns split -> (X (n,1,s,s), y, {file: md5})."""
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        if prefix not in splits:
            continue
        X = rng.integers(0, 256, (n, side, side), dtype=np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)
        rng.shuffle(y)
        sums = {
            f"{prefix}-images-idx3-ubyte.gz": md5(write_idx_gz(folder / f"{prefix}-images-idx3-ubyte.gz", X)),
            f"{prefix}-labels-idx1-ubyte.gz": md5(write_idx_gz(folder / f"{prefix}-labels-idx1-ubyte.gz", y)),
        }
        out[prefix] = (X[:, None], y.astype(np.int64), sums)
    return out


def patch_table(monkeypatch, table, sums: dict[str, str], base_url: str | None = None,
                content: dict[str, str] | None = None) -> None:
    """Point an IDX data set class (MNIST, FashionMNIST) at the fixtures' md5s (and content
    md5s, none unless given) and, when given, a local URL (no file keeps an internet URL then)."""
    files = {n: RemoteFile(n, (f"{base_url}/{n}",) if base_url else f.urls, md5=sums.get(n, f.md5),
                           content_md5=(content or {}).get(n))
             for n, f in table.files.items()}
    monkeypatch.setattr(table, "files", files)


# ----- CIFAR -------------------------------------------------------------------------

def py2_style_pickle(obj) -> bytes:
    """Protocol 2 as Python 2's cPickle wrote the original CIFAR files: every string (bytes
    and str, so also numpy's dtype code and byte order) as a Python 2 ``str`` opcode, and
    numpy's old module name ``numpy.core.multiarray``."""

    class P(pickle._Pickler):
        def save_bytes(self, b):
            n = len(b)
            self.write((b"U" + bytes([n]) if n < 256 else b"T" + n.to_bytes(4, "little")) + b)
            self.memoize(b)

        def save_str(self, s):
            self.save_bytes(s.encode("latin-1"))

        dispatch = dict(pickle._Pickler.dispatch)
        dispatch[bytes] = save_bytes
        dispatch[str] = save_str

    buf = io.BytesIO()
    P(buf, protocol=2).dump(obj)
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def cifar_batch(X: np.ndarray, y: np.ndarray, label_key: bytes = b"labels", extra: dict | None = None,
                py2: bool = False) -> bytes:
    """A pickled CIFAR batch: {b'data': uint8 (n, 3072), label_key: list of ints, ...}."""
    d = {b"batch_label": b"testing batch", label_key: [int(v) for v in y],
         b"data": np.ascontiguousarray(X.reshape(len(X), -1)),
         b"filenames": [f"img_{i}.png".encode() for i in range(len(X))]}
    d.update(extra or {})
    return py2_style_pickle(d) if py2 else pickle.dumps(d, protocol=2)


def make_cifar10(rng: np.random.Generator, per_batch: int = 6, n_test: int = 8, py2: bool = False):
    """Members of a CIFAR-10 python archive; returns ({member: bytes}, arrays)."""
    members: dict[str, bytes] = {}
    Xs, ys = [], []
    for b in range(1, 6):
        X = rng.integers(0, 256, (per_batch, 3, 32, 32), dtype=np.uint8)
        y = rng.integers(0, 10, per_batch)
        members[f"data_batch_{b}"] = cifar_batch(X, y, py2=py2)
        Xs.append(X)
        ys.append(y)
    Xt = rng.integers(0, 256, (n_test, 3, 32, 32), dtype=np.uint8)
    yt = rng.integers(0, 10, n_test)
    members["test_batch"] = cifar_batch(Xt, yt, py2=py2)
    names = [n.encode() for n in ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")]
    members["batches.meta"] = pickle.dumps({b"label_names": names, b"num_cases_per_batch": per_batch,
                                            b"num_vis": 3072}, protocol=2)
    arrays = {"train": (np.concatenate(Xs), np.concatenate(ys).astype(np.int64)), "test": (Xt, yt.astype(np.int64))}
    return members, arrays


def make_cifar100(rng: np.random.Generator, n_train: int = 30, n_test: int = 10):
    members: dict[str, bytes] = {}
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        X = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        fine = rng.integers(0, 100, n)
        coarse = fine // 5
        d = {b"filenames": [b"x.png"] * n, b"batch_label": b"batch", b"fine_labels": [int(v) for v in fine],
             b"coarse_labels": [int(v) for v in coarse], b"data": X.reshape(n, -1)}
        members[split] = pickle.dumps(d, protocol=2)
        arrays[split] = (X, fine.astype(np.int64), coarse.astype(np.int64))
    members["meta"] = pickle.dumps({b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                                    b"coarse_label_names": [f"c{i}".encode() for i in range(20)]}, protocol=2)
    return members, arrays


def tar_gz(members: dict[str, bytes], folder: str) -> bytes:
    """A .tar.gz holding ``folder/`` and its members (directory entry first, as the originals)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        d = tarfile.TarInfo(folder)
        d.type = tarfile.DIRTYPE
        d.mode = 0o755
        tar.addfile(d)
        for name, data in members.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# ----- SVHN --------------------------------------------------------------------------

def write_svhn_mat(path: Path, X: np.ndarray, digits: np.ndarray, **extra) -> bytes:
    """SVHN .mat layout: X (32, 32, 3, n) uint8, y (n, 1) with 10 for digit 0."""
    from scipy.io import savemat

    mat = {"X": np.ascontiguousarray(X.transpose(2, 3, 1, 0)), "y": np.where(digits == 0, 10, digits).astype(np.uint8)[:, None]}
    mat.update(extra)
    mat = {k: v for k, v in mat.items() if v is not None}
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(path, mat)
    return path.read_bytes()


# ----- local HTTP server -------------------------------------------------------------

@contextlib.contextmanager
def http_server(routes: dict[str, bytes], truncate: frozenset[str] = frozenset()) -> Iterator[tuple[str, list[str]]]:
    """Serve ``routes`` (path -> body) on 127.0.0.1; paths in ``truncate`` announce the full
    length but send half and close. Yields (base URL, list of requested paths); the server
    is always shut down on exit."""
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server API)
            hits.append(self.path)
            body = routes.get(self.path)
            if body is None:
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2] if self.path in truncate else body)
            self.wfile.flush()
            self.close_connection = True

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", hits
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
