"""CIFAR-100 (python version): canonical URL and published md5 checksums (Krizhevsky 2009).

Fine labels (100 classes) by default; ``label_mode="coarse"`` gives the 20 super-classes.
Extracted-file md5s are those listed by torchvision.
"""

from __future__ import annotations

from .info import DatasetInfo
from .remote import RemoteFile

ARCHIVE = RemoteFile(
    "cifar-100-python.tar.gz",
    ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
    md5="eb9058c3a382ffc7106e4002c42a8d85",
)
FOLDER = "cifar-100-python"
MEMBERS = {"train": ("train",), "test": ("test",)}
META = "meta"
MEMBER_MD5 = {
    "train": "16019d7e3df5f24257cddd939b257f8d",
    "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
    "meta": "7973b15100ade9c7d40fb424638fde48",
}
LABEL_KEYS = {
    "fine": (b"fine_labels", b"fine_label_names"),
    "coarse": (b"coarse_labels", b"coarse_label_names"),
}
N_CLASSES = {"fine": 100, "coarse": 20}

INFO = DatasetInfo(
    name="cifar100",
    title="CIFAR-100 tiny colour images (fine labels; coarse as an option)",
    shape=(3, 32, 32),
    sizes={"train": 50000, "test": 10000},
    n_classes=100,
    eps=8 / 255,
    eps_text="8/255",
    eps_source="common choice (as for CIFAR-10); not in Yang et al. 2020",
    homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
    files={"train": (ARCHIVE.name,), "test": (ARCHIVE.name,)},
    notes=(f"the extracted {FOLDER}/ folder is read as well as the archive",
           "load(..., label_mode='coarse') gives the 20 coarse classes"),
)
