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
from typing import Any, ClassVar

import numpy as np

from ..core.errors import DataUnavailableError, SepcheckError
from .base import DatasetInfo, RegisteredDataset, SplitData, check_split
from .userfiles import DecodeSpec, decode_all, is_image, list_images

DOWNLOAD_PAGE = "https://image-net.org/download.php"
_WNID = re.compile(r"n\d{8}")


class RestrictedImageNet(RegisteredDataset):
    """The WNID folders of the 203 kept classes under ``<data dir>/restricted-imagenet/<split>/``."""

    #: super-class -> inclusive ImageNet class index range; label = position in this dict
    RANGES: ClassVar[dict[str, tuple[int, int]]] = {
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
    #: WNIDS[i] is the WNID of ImageNet class i, for i in 0..397: the first 398 ILSVRC 2012
    #: classes in sorted WNID order (the devkit's LOC_synset_mapping.txt), which cover every
    #: range above (the highest index used is 397, puffer); the list is sorted, so a tree
    #: holding all 1000 class folders gives the same indices
    WNIDS: ClassVar[tuple[str, ...]] = (
        "n01440764", "n01443537", "n01484850", "n01491361", "n01494475", "n01496331", "n01498041", "n01514668",
        "n01514859", "n01518878", "n01530575", "n01531178", "n01532829", "n01534433", "n01537544", "n01558993",
        "n01560419", "n01580077", "n01582220", "n01592084", "n01601694", "n01608432", "n01614925", "n01616318",
        "n01622779", "n01629819", "n01630670", "n01631663", "n01632458", "n01632777", "n01641577", "n01644373",
        "n01644900", "n01664065", "n01665541", "n01667114", "n01667778", "n01669191", "n01675722", "n01677366",
        "n01682714", "n01685808", "n01687978", "n01688243", "n01689811", "n01692333", "n01693334", "n01694178",
        "n01695060", "n01697457", "n01698640", "n01704323", "n01728572", "n01728920", "n01729322", "n01729977",
        "n01734418", "n01735189", "n01737021", "n01739381", "n01740131", "n01742172", "n01744401", "n01748264",
        "n01749939", "n01751748", "n01753488", "n01755581", "n01756291", "n01768244", "n01770081", "n01770393",
        "n01773157", "n01773549", "n01773797", "n01774384", "n01774750", "n01775062", "n01776313", "n01784675",
        "n01795545", "n01796340", "n01797886", "n01798484", "n01806143", "n01806567", "n01807496", "n01817953",
        "n01818515", "n01819313", "n01820546", "n01824575", "n01828970", "n01829413", "n01833805", "n01843065",
        "n01843383", "n01847000", "n01855032", "n01855672", "n01860187", "n01871265", "n01872401", "n01873310",
        "n01877812", "n01882714", "n01883070", "n01910747", "n01914609", "n01917289", "n01924916", "n01930112",
        "n01943899", "n01944390", "n01945685", "n01950731", "n01955084", "n01968897", "n01978287", "n01978455",
        "n01980166", "n01981276", "n01983481", "n01984695", "n01985128", "n01986214", "n01990800", "n02002556",
        "n02002724", "n02006656", "n02007558", "n02009229", "n02009912", "n02011460", "n02012849", "n02013706",
        "n02017213", "n02018207", "n02018795", "n02025239", "n02027492", "n02028035", "n02033041", "n02037110",
        "n02051845", "n02056570", "n02058221", "n02066245", "n02071294", "n02074367", "n02077923", "n02085620",
        "n02085782", "n02085936", "n02086079", "n02086240", "n02086646", "n02086910", "n02087046", "n02087394",
        "n02088094", "n02088238", "n02088364", "n02088466", "n02088632", "n02089078", "n02089867", "n02089973",
        "n02090379", "n02090622", "n02090721", "n02091032", "n02091134", "n02091244", "n02091467", "n02091635",
        "n02091831", "n02092002", "n02092339", "n02093256", "n02093428", "n02093647", "n02093754", "n02093859",
        "n02093991", "n02094114", "n02094258", "n02094433", "n02095314", "n02095570", "n02095889", "n02096051",
        "n02096177", "n02096294", "n02096437", "n02096585", "n02097047", "n02097130", "n02097209", "n02097298",
        "n02097474", "n02097658", "n02098105", "n02098286", "n02098413", "n02099267", "n02099429", "n02099601",
        "n02099712", "n02099849", "n02100236", "n02100583", "n02100735", "n02100877", "n02101006", "n02101388",
        "n02101556", "n02102040", "n02102177", "n02102318", "n02102480", "n02102973", "n02104029", "n02104365",
        "n02105056", "n02105162", "n02105251", "n02105412", "n02105505", "n02105641", "n02105855", "n02106030",
        "n02106166", "n02106382", "n02106550", "n02106662", "n02107142", "n02107312", "n02107574", "n02107683",
        "n02107908", "n02108000", "n02108089", "n02108422", "n02108551", "n02108915", "n02109047", "n02109525",
        "n02109961", "n02110063", "n02110185", "n02110341", "n02110627", "n02110806", "n02110958", "n02111129",
        "n02111277", "n02111500", "n02111889", "n02112018", "n02112137", "n02112350", "n02112706", "n02113023",
        "n02113186", "n02113624", "n02113712", "n02113799", "n02113978", "n02114367", "n02114548", "n02114712",
        "n02114855", "n02115641", "n02115913", "n02116738", "n02117135", "n02119022", "n02119789", "n02120079",
        "n02120505", "n02123045", "n02123159", "n02123394", "n02123597", "n02124075", "n02125311", "n02127052",
        "n02128385", "n02128757", "n02128925", "n02129165", "n02129604", "n02130308", "n02132136", "n02133161",
        "n02134084", "n02134418", "n02137549", "n02138441", "n02165105", "n02165456", "n02167151", "n02168699",
        "n02169497", "n02172182", "n02174001", "n02177972", "n02190166", "n02206856", "n02219486", "n02226429",
        "n02229544", "n02231487", "n02233338", "n02236044", "n02256656", "n02259212", "n02264363", "n02268443",
        "n02268853", "n02276258", "n02277742", "n02279972", "n02280649", "n02281406", "n02281787", "n02317335",
        "n02319095", "n02321529", "n02325366", "n02326432", "n02328150", "n02342885", "n02346627", "n02356798",
        "n02361337", "n02363005", "n02364673", "n02389026", "n02391049", "n02395406", "n02396427", "n02397096",
        "n02398521", "n02403003", "n02408429", "n02410509", "n02412080", "n02415577", "n02417914", "n02422106",
        "n02422699", "n02423022", "n02437312", "n02437616", "n02441942", "n02442845", "n02443114", "n02443484",
        "n02444819", "n02445715", "n02447366", "n02454379", "n02457408", "n02480495", "n02480855", "n02481823",
        "n02483362", "n02483708", "n02484975", "n02486261", "n02486410", "n02487347", "n02488291", "n02488702",
        "n02489166", "n02490219", "n02492035", "n02492660", "n02493509", "n02493793", "n02494079", "n02497673",
        "n02500267", "n02504013", "n02504458", "n02509815", "n02510455", "n02514041", "n02526121", "n02536864",
        "n02606052", "n02607072", "n02640242", "n02641379", "n02643566", "n02655020",
    )
    info = DatasetInfo(
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
        labels = self.wnid_labels()
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

    @classmethod
    def wnid_labels(cls) -> dict[str, int]:
        """WNID -> super-class label for the 203 ImageNet classes kept."""
        return {cls.WNIDS[i]: label for label, (lo, hi) in enumerate(cls.RANGES.values())
                for i in range(lo, hi + 1)}

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
        if missing_classes:
            notes.append(f"restricted-imagenet {split}: {missing_classes} of the 203 ImageNet classes are missing "
                         f"from {directory / split}")
        if count == 0:
            raise SepcheckError(f"restricted-imagenet {split}: none of the {len(items)} images could be decoded "
                                f"(first error: {skipped[0]})")
        X, y = X[:count], y[:count]
        check_split(self.name, split, X, y, 9, (3, s, s), str(directory / split))
        return SplitData(
            X=X, y=y, classes=list(self.RANGES), sources=[fp], verified=False,
            preprocessing={"format": "imagenet-folders", "resize_shorter": r, "center_crop": s,
                           "interpolation": "bilinear (Pillow)", "mode": "RGB", "layout": "NCHW",
                           "ranges": {name: list(rng) for name, rng in self.RANGES.items()}},
            skipped=skipped[:100], n_skipped=len(skipped), notes=notes, origin=str(directory / split),
        )
