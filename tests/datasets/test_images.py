"""Image trees: the user's ImageFolder (PNG and JPEG, splits, grey and colour, skipped
files) and Restricted ImageNet from a WNID tree (class ranges, resize + centre crop,
parallel decoding), pixel for pixel, and separation against the oracle."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from sepcheck import SepcheckError
from sepcheck.analysis.separation import separation
from sepcheck.datasets import (
    DatasetWarning,
    DataUnavailableError,
    load,
    load_imagefolder,
    load_split,
    open_dataset,
)
from sepcheck.datasets.imagenet import RestrictedImageNet
from tests import oracle

WNIDS = RestrictedImageNet.WNIDS
RANGES = RestrictedImageNet.RANGES

#: the WNID trees below hold 18 of the 203 classes on purpose (asserted in one test)
pytestmark = pytest.mark.filterwarnings("ignore:.*of the 203 ImageNet classes are missing:sepcheck.datasets.DatasetWarning")


def _save(path, arr, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.squeeze(-1) if arr.ndim == 3 and arr.shape[2] == 1 else arr).save(path, format=fmt)


def _decoded(path, mode=None):
    """What Pillow itself decodes from a file (the reference for lossy JPEG)."""
    with Image.open(path) as im:
        a = np.asarray(im.convert(mode) if mode else im)
    return a[:, :, None] if a.ndim == 2 else a


# ----- the user's ImageFolder -----------------------------------------------------------

def test_imagefolder_png_and_jpeg_with_splits(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "pets"
    expected = {"train": [], "test": []}
    for split in ("train", "test"):
        for label, cls in enumerate(["cat", "dog", "emu"]):
            for i in range(3 if split == "train" else 2):
                arr = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
                ext = ".png" if i % 2 == 0 else ".jpg"
                path = root / split / cls / f"{i:02d}{ext}"
                _save(path, arr)
                ref = arr if ext == ".png" else _decoded(path, "RGB")
                expected[split].append((ref.transpose(2, 0, 1), label))
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    (root / "train" / ".hidden").mkdir()
    ds = open_dataset(str(root))
    assert ds.classes == ["cat", "dog", "emu"] and ds.X.shape == (9, 3, 6, 5) and ds.X_test.shape == (6, 3, 6, 5)
    np.testing.assert_array_equal(ds.X, np.stack([e[0] for e in expected["train"]]))
    np.testing.assert_array_equal(ds.y, [e[1] for e in expected["train"]])
    np.testing.assert_array_equal(ds.X_test, np.stack([e[0] for e in expected["test"]]))
    res = separation(ds.X, ds.y, ds.X_test, ds.y_test, norm="linf", device="cpu")
    d, _ = oracle.nearest_other(ds.X, ds.y, p=math.inf, scale=255.0)
    td, _ = oracle.nearest_other(ds.X, ds.y, ds.X_test, ds.y_test, p=math.inf, scale=255.0)
    np.testing.assert_array_equal(res.distances, d[:, 0])
    np.testing.assert_array_equal(res.test_distances, td[:, 0])


def test_imagefolder_grey_val_split_skips_and_mixing(tmp_path):
    rng = np.random.default_rng(1)
    root = tmp_path / "digits"
    grey = {c: rng.integers(0, 256, (4, 4, 1), dtype=np.uint8) for c in ("a", "b")}
    for c, arr in grey.items():
        _save(root / "train" / c / "x.png", arr)
        _save(root / "val" / c / "x.png", arr[::-1].copy())
    (root / "train" / "b" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.warns(DatasetWarning, match="1 of 3 images could not be decoded"):
        ds = load_imagefolder(root)
    assert ds.X.shape == (2, 1, 4, 4) and ds.X_test.shape == (2, 1, 4, 4)
    np.testing.assert_array_equal(ds.X[1, 0], grey["b"][:, :, 0])
    assert ds.meta["train"]["n_skipped"] == 1 and "broken.png" in ds.meta["train"]["skipped"][0]
    assert any("skipped" in n for n in ds.notes)
    # mixing a colour image in makes every image RGB (grey repeated in 3 channels)
    _save(root / "train" / "a" / "y.png", rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
    with pytest.warns(DatasetWarning):
        mixed = load_imagefolder(root / "train")
    assert mixed.X.shape == (3, 3, 4, 4)
    np.testing.assert_array_equal(mixed.X[0], np.repeat(grey["a"].transpose(2, 0, 1), 3, axis=0))


def test_imagefolder_errors(tmp_path):
    rng = np.random.default_rng(2)
    root = tmp_path / "sizes"
    _save(root / "a" / "1.png", rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
    _save(root / "b" / "1.png", rng.integers(0, 256, (5, 4, 3), dtype=np.uint8))
    with pytest.raises(SepcheckError, match="must have one size.*size=N"):
        open_dataset(str(root))
    resized = load_imagefolder(root, size=3)
    assert resized.X.shape == (2, 3, 3, 3)
    split = tmp_path / "split"
    _save(split / "train" / "a" / "1.png", rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
    _save(split / "test" / "zebra" / "1.png", rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
    with pytest.raises(SepcheckError, match="'zebra' that the training split lacks"):
        open_dataset(str(split))
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(SepcheckError, match="not a data set sepcheck reads"):
        open_dataset(str(tmp_path / "empty"))
    deep = tmp_path / "deep"
    _save(deep / "a" / "1.tif", np.zeros((4, 4), dtype=np.uint16))
    _save(deep / "a" / "2.png", np.zeros((4, 4, 3), dtype=np.uint8))
    with pytest.warns(DatasetWarning, match="16-bit"):
        assert load_imagefolder(deep).X.shape == (1, 3, 4, 4)


# ----- Restricted ImageNet ------------------------------------------------------------

def _expected_rimagenet(path, resize, crop):
    """torchvision's Resize(resize) + CenterCrop(crop) on the RGB image, written out here."""
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        nw, nh = (resize, int(resize * h / w)) if w <= h else (int(resize * w / h), resize)
        if (nw, nh) != (w, h):
            im = im.resize((nw, nh), Image.BILINEAR)
        top, left = int(round((nh - crop) / 2.0)), int(round((nw - crop) / 2.0))
        return np.asarray(im.crop((left, top, left + crop, top + crop))).transpose(2, 0, 1)


#: class index -> expected super-class label (None: outside every range), edges included
EDGES = {0: None, 29: None, 30: 2, 32: 2, 33: 3, 37: 3, 38: None, 80: 4, 100: 4, 117: None, 118: 7, 121: 7,
         150: None, 151: 0, 268: 0, 269: None, 281: 1, 285: 1, 300: 8, 319: 8, 320: None, 365: 5, 382: 5,
         389: 6, 397: 6}


def _imagenet_tree(root, rng, split="train", per_class=2, sizes=((20, 30), (33, 17), (24, 24))):
    for idx in EDGES:
        for i in range(per_class):
            w, h = sizes[(idx + i) % len(sizes)]
            arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            ext = ".JPEG" if i % 2 else ".png"
            _save(root / split / WNIDS[idx] / f"{WNIDS[idx]}_{i}{ext}", arr, "JPEG" if ext == ".JPEG" else None)


def test_wnid_table_and_ranges():
    assert len(WNIDS) == 398 and list(WNIDS) == sorted(WNIDS)
    assert WNIDS[0] == "n01440764" and WNIDS[151] == "n02085620" and WNIDS[397] == "n02655020"
    labels = RestrictedImageNet.wnid_labels()
    assert len(labels) == 203 == sum(hi - lo + 1 for lo, hi in RANGES.values())
    assert list(RANGES) == ["dog", "cat", "frog", "turtle", "bird", "primate", "fish", "crab", "insect"]
    for idx, label in EDGES.items():
        assert labels.get(WNIDS[idx]) == label


def test_restricted_imagenet_pixel_exact_and_parallel(data_home):
    rng = np.random.default_rng(3)
    root = data_home / "restricted-imagenet"
    _imagenet_tree(root, rng, "train")
    _imagenet_tree(root, rng, "val", per_class=1)
    (root / "train" / WNIDS[151] / "broken.JPEG").write_bytes(b"\xff\xd8\xff garbage")
    kept = [i for i, lab in EDGES.items() if lab is not None]
    with pytest.warns(DatasetWarning, match="1 of 37 images could not be decoded"):
        data = load_split("restricted-imagenet", "train", size=8, resize=9, workers=1)
    paths = [p for i in sorted(kept, key=lambda i: WNIDS[i])
             for p in sorted((root / "train" / WNIDS[i]).iterdir()) if p.name != "broken.JPEG"]
    expected = np.stack([_expected_rimagenet(p, 9, 8) for p in paths])
    np.testing.assert_array_equal(data.X, expected)
    np.testing.assert_array_equal(data.y, [EDGES[WNIDS.index(p.parent.name)] for p in paths])
    assert data.n_skipped == 1 and "broken.JPEG" in data.skipped[0] and data.classes[0] == "dog"
    assert (root / "train-8px-resize9.h5").is_file()
    with pytest.warns(DatasetWarning, match="1 of 37 images"):  # from the cache, still reported
        again = load_split("restricted-imagenet", "train", size=8, resize=9)
    assert again.origin.endswith("train-8px-resize9.h5") and again.n_skipped == 1
    # default: the paper's 72 -> 64, val via the 'test' alias
    X, y = load("restricted-imagenet", "test", workers=1)
    vpaths = [p for i in sorted(kept, key=lambda i: WNIDS[i]) for p in sorted((root / "val" / WNIDS[i]).iterdir())]
    np.testing.assert_array_equal(X, np.stack([_expected_rimagenet(p, 72, 64) for p in vpaths]))
    assert X.shape == (len(kept), 3, 64, 64) and (root / "val.h5").is_file()


def test_restricted_imagenet_parallel_decoding_many_images(data_home, monkeypatch):
    from sepcheck.datasets import userfiles as imagefiles

    monkeypatch.setattr(imagefiles, "MIN_PARALLEL", 4)
    monkeypatch.setattr(imagefiles, "CHUNK", 3)
    pools = []

    class SpyPool(imagefiles.ProcessPoolExecutor):
        def __init__(self, *args, **kwargs):
            pools.append(kwargs.get("max_workers"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(imagefiles, "ProcessPoolExecutor", SpyPool)
    root = data_home / "restricted-imagenet"
    _imagenet_tree(root, np.random.default_rng(4), "val", per_class=1)
    serial = load_split("restricted-imagenet", "val", size=6, resize=7, workers=1, cache=False)
    parallel = load_split("restricted-imagenet", "val", size=6, resize=7, workers=2, cache=False)
    np.testing.assert_array_equal(parallel.X, serial.X)
    np.testing.assert_array_equal(parallel.y, serial.y)
    assert pools == [2]


def test_restricted_imagenet_open_dataset_and_oracle(data_home):
    root = data_home / "restricted-imagenet"
    rng = np.random.default_rng(5)
    _imagenet_tree(root, rng, "train")
    _imagenet_tree(root, rng, "val", per_class=1)
    ds = open_dataset("restricted-imagenet")
    assert ds.eps == 0.005 and ds.X.shape[1:] == (3, 64, 64) and ds.X_test.shape[0] == 18
    assert any("185 of the 203 ImageNet classes are missing" in n for n in ds.notes), ds.notes
    res = separation(ds.X, ds.y, ds.X_test, ds.y_test, norm="linf", device="cpu")
    d, _ = oracle.nearest_other(ds.X, ds.y, p=math.inf, scale=255.0)
    td, _ = oracle.nearest_other(ds.X, ds.y, ds.X_test, ds.y_test, p=math.inf, scale=255.0)
    np.testing.assert_array_equal(res.distances, d[:, 0])
    np.testing.assert_array_equal(res.test_distances, td[:, 0])


def test_restricted_imagenet_errors(data_home):
    with pytest.raises(DataUnavailableError) as e:
        load("restricted-imagenet", "train")
    msg = str(e.value)
    assert "never downloads" in msg and "image-net.org" in msg and str(data_home / "restricted-imagenet") in msg
    root = data_home / "restricted-imagenet"
    _save(root / "val" / "ILSVRC2012_val_00000001.JPEG", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(SepcheckError, match="holds 1 images but no WNID class folders: sort them"):
        load("restricted-imagenet", "val")
    _save(root / "train" / WNIDS[0] / "x.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(SepcheckError, match="none of the 203"):
        load("restricted-imagenet", "train")
    with pytest.raises(SepcheckError, match="resize=4 is smaller than size=8"):
        load("restricted-imagenet", "train", size=8, resize=4)
    with pytest.raises(SepcheckError, match="no split 'extra'"):
        load("restricted-imagenet", "extra")
