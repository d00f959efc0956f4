"""Data sets: the registered real data sets, the user's own files, and resolution of a CLI
``DATASET`` argument.

* :func:`load` ``(name, split)`` -> ``(X, y)``: X uint8 (n, C, H, W), y int64, for the
  registered names of :func:`available` (mnist, fashion-mnist, cifar10, cifar100, svhn,
  restricted-imagenet, spiral). Files live in ``<data dir>/<name>/`` (``data_dir``, else
  ``$SEPCHECK_DATA``, else ``~/.cache/sepcheck``), are downloaded from the canonical URLs
  when missing (unless ``download=False`` or ``$SEPCHECK_OFFLINE=1``), verified against
  the published checksums (a re-compressed ``.gz`` by the published md5 of its content, with
  a note), and converted once to an HDF5 cache per split.
* :func:`open_dataset` ``(spec)`` -> :class:`Dataset` with train and test arrays, the
  typical linf eps and notes: a registered name, a .npz/.h5 file with X, y (X_test,
  y_test), a directory of IDX files or an ImageFolder tree.
* :func:`load_imagefolder` for the user's own image trees.

Nothing in a data file is ever executed: CIFAR's pickles go through a restricted
unpickler, .npz files are read without pickles, .mat files with scipy's array reader.

One module per format family, as torchvision: :mod:`.idx` (MNIST, Fashion-MNIST, a folder
of IDX files), :mod:`.cifar` (CIFAR-10/100), :mod:`.svhn`, :mod:`.imagenet` (Restricted
ImageNet), :mod:`.userfiles` (.npz/.h5, ImageFolder trees, image decoding); beside them
:mod:`.download` (download and verify), :mod:`.safe_pickle` (the restricted unpickler, a
security boundary), :mod:`.splitcache` (the HDF5 split cache), :mod:`.registry` (names ->
data set classes, ``spiral``, on-disk state), :mod:`.loader` (load, prepare, open_dataset)
and :mod:`.base` (containers, the data set interface).
"""

from __future__ import annotations

from ..core.errors import DatasetWarning, DataUnavailableError
from .base import Dataset, DatasetInfo, SplitData
from .idx import find_idx_pairs, read_idx, read_idx_pair
from .loader import load, load_split, open_dataset, open_registered, prepare
from .registry import available, dataset_dir, make_spiral
from .userfiles import load_imagefolder, read_arrays

__all__ = [
    "Dataset",
    "DatasetInfo",
    "DatasetWarning",
    "DataUnavailableError",
    "SplitData",
    "available",
    "dataset_dir",
    "find_idx_pairs",
    "load",
    "load_imagefolder",
    "load_split",
    "make_spiral",
    "open_dataset",
    "open_registered",
    "prepare",
    "read_arrays",
    "read_idx",
    "read_idx_pair",
]
