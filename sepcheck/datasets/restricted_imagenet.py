"""Restricted ImageNet: the 9 super-classes of the robustness literature (Tsipras et al.
2019; Yang et al. 2020), built from the user's own ImageNet (ILSVRC 2012) folder tree.

Each super-class is an inclusive range of ImageNet class indices (sorted WNID order):
dog 151-268, cat 281-285, frog 30-32, turtle 33-37, bird 80-100, primate 365-382,
fish 389-397, crab 118-121, insect 300-319 -- 203 classes, labels 0..8 in that order.
Images are resized (shorter side 72) and centre-cropped to 64 x 64 by default, as in the
paper; both sizes are options. ImageNet is never downloaded (licence): its ``train/`` and
``val/`` class folders go in (or are symlinked into) ``<data dir>/restricted-imagenet/``.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SepcheckError
from ._warn import warn
from .base import SplitData
from .fetch import DataUnavailableError
from .imagefiles import DecodeSpec, decode_all, is_image, list_images
from .imagenet_wnids import WNIDS
from .info import DatasetInfo
from .source import Source, check_split

#: super-class -> inclusive ImageNet class index range; label = position in this dict
RANGES: dict[str, tuple[int, int]] = {
    "dog": (151, 268),
    "cat": (281, 285),
    "frog": (30, 32),
    "turtle": (33, 37),
    "bird": (80, 100),
    "primate": (365, 382),
    "fish": (389, 397),
    "crab": (118, 121),
    "insect": (300, 319),
}
CLASSES = list(RANGES)
DOWNLOAD_PAGE = "https://image-net.org/download.php"
_WNID = re.compile(r"n\d{8}")


def wnid_labels() -> dict[str, int]:
    """WNID -> super-class label for the 203 ImageNet classes kept."""
    return {WNIDS[i]: label for label, (lo, hi) in enumerate(RANGES.values()) for i in range(lo, hi + 1)}


INFO = DatasetInfo(
    name="restricted-imagenet",
    title="Restricted ImageNet (9 super-classes of ImageNet, 64 x 64)",
    shape=(3, 64, 64),
    sizes={"train": None, "val": 10150},
    n_classes=9,
    eps=0.005,
    eps_text="0.005",
    eps_source="Yang et al. 2020, Table 1",
    homepage=DOWNLOAD_PAGE,
    files={"train": ("train/n01440764/...",), "val": ("val/n01440764/...",)},
    downloadable=False,
    notes=("never downloaded (ImageNet licence): put or symlink the ILSVRC 2012 train/ and val/ "
           "class-folder trees into <data dir>/restricted-imagenet/",
           "train size depends on the copy (about 257 000 images); val is 203 classes x 50",
           "split 'test' is accepted as 'val'"),
)


class RestrictedImageNetSource(Source):
    """The WNID folders of the 203 kept classes under ``<data dir>/restricted-imagenet/<split>/``."""

    info = INFO
    has_checksums = False
    split_aliases = {"test": "val"}
    option_defaults = {"size": 64, "resize": 72}
    runtime_options = ("workers",)

    def normalize_options(self, options: dict[str, Any]) -> dict[str, Any]:
        opts = dict(options)
        if opts.get("resize") is None and opts.get("size") is not None:
            opts["resize"] = int(round(int(opts["size"]) * 9 / 8))  # the paper's 72 for 64
        out = super().normalize_options(opts)
        for k in ("size", "resize"):
            v = out[k]
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise SepcheckError(f"restricted-imagenet: {k}={v!r} is invalid: give a positive integer")
            out[k] = int(v)
        if out["resize"] < out["size"]:
            raise SepcheckError(f"restricted-imagenet: resize={out['resize']} is smaller than size={out['size']}: "
                                "the centre crop must fit in the resized image")
        return out

    def option_tag(self, options: dict[str, Any]) -> str:
        if (options["size"], options["resize"]) == (64, 72):
            return ""
        return f"{options['size']}px-resize{options['resize']}"

    def listing(self, directory: Path, split: str) -> tuple[list[tuple[Path, int]], int]:
        """(image path, label) for every image of the kept classes, in sorted WNID order, and
        how many of the 203 classes have no folder."""
        root = directory / split
        if not root.is_dir():
            raise DataUnavailableError(
                f"restricted-imagenet: no ImageNet {split}/ folder in {directory}: sepcheck never downloads "
                f"ImageNet (licence); get ILSVRC 2012 from {DOWNLOAD_PAGE} and put or symlink its {split}/ "
                "class folders (n01440764/, ...) there",
                dataset=self.name, missing=[f"{split}/"], directory=directory, reason="ImageNet is never downloaded",
            )
        wnid_dirs = sorted(p.name for p in root.iterdir() if p.is_dir() and _WNID.fullmatch(p.name))
        if not wnid_dirs:
            flat = sum(1 for p in root.iterdir() if p.is_file() and is_image(p.name))
            fix = ("sort them into WNID class folders (e.g. with the ILSVRC 2012 devkit's valprep.sh)" if flat
                   else "put the ImageNet class folders (n01440764/, ...) there")
            raise SepcheckError(f"restricted-imagenet: {root} holds {flat} images but no WNID class folders: {fix}")
        labels = wnid_labels()
        kept = [w for w in wnid_dirs if w in labels]
        if not kept:
            raise SepcheckError(f"restricted-imagenet: {root} holds none of the 203 Restricted ImageNet classes "
                                "(e.g. n02085620, dogs): is it an ImageNet folder?")
        out = []
        for w in kept:
            out.extend((p, labels[w]) for p in list_images(root / w))
        if not out:
            raise SepcheckError(f"restricted-imagenet: the class folders in {root} hold no images")
        return out, len(labels) - len(kept)

    def present(self, directory: Path, split: str) -> bool:
        return (directory / split).is_dir()

    def current_sources(self, directory: Path, split: str, options: dict[str, Any]) -> list[dict] | None:
        if not (directory / split).is_dir():
            return None
        return [self._tree_fingerprint(directory, split, self.listing(directory, split)[0])]

    @staticmethod
    def _tree_fingerprint(directory: Path, split: str, items: list[tuple[Path, int]]) -> dict[str, Any]:
        h = hashlib.blake2b(digest_size=16)
        for p, label in items:
            st = p.stat()
            h.update(f"{p.relative_to(directory).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\0{label}\n".encode())
        return {"name": f"{split}/", "files": len(items), "digest": h.hexdigest()}

    def build(self, directory: Path, split: str, options: dict[str, Any], *,
              download: bool, verify: bool, progress: bool) -> SplitData:
        items, missing_classes = self.listing(directory, split)
        fp = self._tree_fingerprint(directory, split, items)
        s, r = options["size"], options["resize"]
        spec = DecodeSpec(mode="RGB", resize=r, crop=s)
        X = np.empty((len(items), 3, s, s), dtype=np.uint8)
        y = np.empty(len(items), dtype=np.int64)
        skipped: list[str] = []
        count = 0
        paths = [p for p, _ in items]
        for i, arr, err in decode_all(paths, spec, workers=options.get("workers"),
                                      desc=f"restricted-imagenet {split}", progress=progress):
            if arr is None:
                skipped.append(f"{paths[i].relative_to(directory).as_posix()} ({err})")
                continue
            X[count] = arr.transpose(2, 0, 1)
            y[count] = items[i][1]
            count += 1
        notes = []
        if skipped:
            notes.append(f"restricted-imagenet {split}: {len(skipped)} of {len(items)} images could not be decoded "
                         f"and were skipped (first: {skipped[0]})")
            warn(notes[-1])
        if missing_classes:
            notes.append(f"restricted-imagenet {split}: {missing_classes} of the 203 ImageNet classes are missing "
                         f"from {directory / split}")
            warn(notes[-1])
        if count == 0:
            raise SepcheckError(f"restricted-imagenet {split}: none of the {len(items)} images could be decoded "
                                f"(first error: {skipped[0]})")
        X, y = X[:count], y[:count]
        check_split(self.name, split, X, y, 9, (3, s, s), str(directory / split))
        return SplitData(
            X=X, y=y, classes=list(CLASSES), sources=[fp], verified=False,
            preprocessing={"format": "imagenet-folders", "resize_shorter": r, "center_crop": s,
                           "interpolation": "bilinear (Pillow)", "mode": "RGB", "layout": "NCHW",
                           "ranges": {name: list(rng) for name, rng in RANGES.items()}},
            skipped=skipped[:100], n_skipped=len(skipped), notes=notes, origin=str(directory / split),
        )
