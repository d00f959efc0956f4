"""What every loader shares: the containers it returns (:class:`Dataset`, :class:`SplitData`),
the facts about a registered data set (:class:`DatasetInfo`), the interface of a registered
data set (:class:`RegisteredDataset`) with the checks every split passes, and :func:`warn`."""

from __future__ import annotations

import sys
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from ..core.errors import DatasetWarning, SepcheckError

if TYPE_CHECKING:
    from .download import RemoteFile

_PACKAGE = str(Path(__file__).resolve().parents[1])


def _stacklevel() -> int:
    """The stack level of the first frame outside the sepcheck package (the user's call)."""
    level, frame = 1, sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame = frame.f_back
        level += 1
    return level


def warn(message: str) -> None:
    """Emit a :class:`DatasetWarning` with a one-line message, attributed to the user's call."""
    warnings.warn(" ".join(str(message).split()), DatasetWarning, stacklevel=_stacklevel())


@dataclass
class Dataset:
    """A loaded data set: train arrays, optional test arrays and facts for reports.

    ``test_only``: the files hold only a test split (e.g. a folder of MNIST ``t10k`` files);
    ``X``, ``y`` are then that split, used as the training split where one is needed (a note
    says so), and ``X_test`` is None.
    """

    name: str
    X: np.ndarray
    y: np.ndarray
    X_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    #: typical linf attack radius from the literature (None when unknown)
    eps: float | None = None
    #: where the arrays came from
    source: str = ""
    #: anything the user must know about the arrays (e.g. a substitute split)
    notes: list[str] = field(default_factory=list)
    #: class names in label order, when known
    classes: list[str] | None = None
    #: provenance per split (source files, checksums, preprocessing, skipped images)
    meta: dict[str, Any] = field(default_factory=dict)
    #: the arrays X, y are a test split and there is no training split
    test_only: bool = False

    @property
    def has_test(self) -> bool:
        return self.X_test is not None

    def split_arrays(
        self, split: Literal["train", "test", "both"]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        """``(X, y, X_test, y_test)`` for a separation over ``split``: ``train`` (train-train),
        ``test`` (test-test) or ``both`` (train-train and test-train; the last two are None
        otherwise). A one-line :class:`SepcheckError` when the data set lacks the split."""
        if split not in ("train", "test", "both"):
            raise SepcheckError(f"split {split!r} is invalid: use train, test or both")
        if self.test_only:
            if split == "both":
                raise SepcheckError(f"data set {self.name!r} holds only a test split ({self.source}): "
                                    "use --split test")
            return self.X, self.y, None, None
        if split == "train":
            return self.X, self.y, None, None
        if not self.has_test:
            raise SepcheckError(f"data set {self.name!r} has no test split: use --split train")
        if split == "test":
            return self.X_test, self.y_test, None, None
        return self.X, self.y, self.X_test, self.y_test


@dataclass
class SplitData:
    """One split of a registered data set: uint8 NCHW images, int64 labels and provenance.

    ``sources`` are the fingerprints of the files it was made from (name, size, mtime_ns and,
    when verified, the md5); ``verified`` says whether their published checksums were
    checked; ``skipped`` lists images that could not be decoded (never silently dropped).
    """

    X: np.ndarray
    y: np.ndarray
    classes: list[str] | None = None
    sources: list[dict[str, Any]] = field(default_factory=list)
    verified: bool = False
    preprocessing: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    n_skipped: int = 0
    notes: list[str] = field(default_factory=list)
    #: where the arrays were read from ('cache' or the source folder)
    origin: str = ""

    def meta(self) -> dict[str, Any]:
        """Provenance as a JSON-able dict (for ``Dataset.meta`` and ``datasets prepare``)."""
        return {
            "n": int(self.X.shape[0]),
            "shape": [int(s) for s in self.X.shape[1:]],
            "sources": self.sources,
            "verified": self.verified,
            "preprocessing": self.preprocessing,
            "n_skipped": self.n_skipped,
            "skipped": self.skipped,
            "origin": self.origin,
        }


@dataclass(frozen=True)
class DatasetInfo:
    """What a registered data set is: shape, split sizes, classes and the typical linf radius.

    ``shape`` is one item's shape (C, H, W) as loaded (``(2,)`` for the 2-D spiral);
    ``sizes`` maps each split to its official number of items (None where it depends on
    the user's copy); ``eps`` is the typical linf attack radius on the [0, 1] pixel scale
    (``eps_text`` as usually written, ``eps_source`` where it comes from).
    """

    name: str
    title: str
    shape: tuple[int, ...]
    sizes: dict[str, int | None]
    n_classes: int
    eps: float | None
    eps_text: str = ""
    eps_source: str = ""
    homepage: str = ""
    #: official file names per split (what must be in <data dir>/<name>/)
    files: dict[str, tuple[str, ...]] = field(default_factory=dict)
    downloadable: bool = True
    notes: tuple[str, ...] = ()

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.sizes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (``datasets list --json``)."""
        d = asdict(self)
        d["shape"] = list(self.shape)
        d["files"] = {k: list(v) for k, v in self.files.items()}
        d["notes"] = list(self.notes)
        d["splits"] = list(self.splits)
        return d


class RegisteredDataset:
    """How a registered data set is found, converted and described: one subclass per data
    set, its published tables (URLs, checksums, class names) as class attributes; the
    registry holds one instance of each.

    Subclasses set ``info`` and implement :meth:`current_sources` (fingerprints of the
    source files present now, without hashing) and :meth:`build` (fetch, verify, parse).
    ``converter`` is part of the cache key: bump it when the conversion changes.
    """

    info: ClassVar[DatasetInfo]
    converter: ClassVar[int] = 1
    #: published checksums exist (so a cache made without verification is not trusted)
    has_checksums: ClassVar[bool] = True
    #: split name aliases accepted by load(), e.g. {"test": "val"}
    split_aliases: ClassVar[dict[str, str]] = {}
    #: option name -> default value (all options change the arrays, so they key the cache)
    option_defaults: ClassVar[dict[str, Any]] = {}
    #: options that do not change the arrays (worker count, progress)
    runtime_options: ClassVar[tuple[str, ...]] = ()

    @property
    def name(self) -> str:
        return self.info.name

    def canonical_split(self, split: str) -> str:
        s = self.split_aliases.get(str(split), str(split))
        if s not in self.info.splits:
            raise SepcheckError(
                f"{self.name} has no split {split!r}: use one of {', '.join(self.info.splits)}"
            )
        return s

    def normalize_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """Defaults filled in; unknown options rejected. Subclasses validate values."""
        known = set(self.option_defaults) | set(self.runtime_options)
        unknown = sorted(set(options) - known)
        if unknown:
            accepted = ", ".join(sorted(known)) or "none"
            raise SepcheckError(f"{self.name} has no option {unknown[0]!r}: options accepted: {accepted}")
        out = dict(self.option_defaults)
        out.update({k: v for k, v in options.items() if v is not None})
        return out

    def key_options(self, options: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in options.items() if k not in self.runtime_options}

    def option_tag(self, options: dict[str, Any]) -> str:
        """Cache file suffix for non-default options ('' for the defaults)."""
        parts = [f"{k}{v}" for k, v in sorted(self.key_options(options).items()) if v != self.option_defaults.get(k)]
        return "-".join(parts)

    def current_sources(self, directory: Path, split: str, options: dict[str, Any]) -> list[dict] | None:
        raise NotImplementedError

    def remote_files(self) -> list[RemoteFile]:
        """Every downloadable file of the data set (for ``datasets info``)."""
        return []

    def present(self, directory: Path, split: str) -> bool:
        """Whether the split's source files are in ``directory`` (cheap: no hashing)."""
        return self.current_sources(directory, split, self.normalize_options({})) is not None

    def build(self, directory: Path, split: str, options: dict[str, Any], *,
              download: bool, verify: bool, progress: bool) -> SplitData:
        raise NotImplementedError


def check_split(name: str, split: str, X: np.ndarray, y: np.ndarray, n_classes: int,
                shape: tuple[int, ...] | None, source: str) -> None:
    """A converted split is complete: uint8 N x C x H x W, one label per image, labels in range."""
    if X.dtype != np.uint8 or X.ndim != 4:
        raise SepcheckError(f"{name} {split}: {source} gave images of type {X.dtype} and shape {X.shape}: "
                            "expected uint8 (n, channels, height, width)")
    if shape is not None and tuple(X.shape[1:]) != tuple(shape):
        raise SepcheckError(f"{name} {split}: {source} holds images of shape {X.shape[1:]}, expected {tuple(shape)}: "
                            "the file is not the official one")
    if y.shape != (X.shape[0],):
        raise SepcheckError(f"{name} {split}: {source} has {X.shape[0]} images but {y.size} labels: "
                            "the file is truncated or corrupted")
    if X.shape[0] == 0:
        raise SepcheckError(f"{name} {split}: {source} holds no images")
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= n_classes:
        raise SepcheckError(f"{name} {split}: {source} has labels {lo}..{hi}, expected 0..{n_classes - 1}: "
                            "the file is corrupted or not the official one")
