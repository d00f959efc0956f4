"""CIFAR-10 (python version): canonical URL and published md5 checksums (Krizhevsky 2009).

The archive md5 is the one published on the CIFAR page; the md5s of the extracted batch
files are those listed by torchvision, so an extracted ``cifar-10-batches-py/`` folder is
verified too.
"""

from __future__ import annotations

from .info import DatasetInfo
from .remote import RemoteFile

ARCHIVE = RemoteFile(
    "cifar-10-python.tar.gz",
    ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
    md5="c58f30108f718f92721af3b95e74349a",
)
FOLDER = "cifar-10-batches-py"
MEMBERS = {
    "train": ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5"),
    "test": ("test_batch",),
}
META = "batches.meta"
MEMBER_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}
#: label mode -> (key of the labels in a batch, key of the class names in the meta file)
LABEL_KEYS = {"fine": (b"labels", b"label_names")}

INFO = DatasetInfo(
    name="cifar10",
    title="CIFAR-10 tiny colour images",
    shape=(3, 32, 32),
    sizes={"train": 50000, "test": 10000},
    n_classes=10,
    eps=8 / 255,
    eps_text="8/255",
    eps_source="Yang et al. 2020, Table 1 (0.031)",
    homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
    files={"train": (ARCHIVE.name,), "test": (ARCHIVE.name,)},
    notes=(f"the extracted {FOLDER}/ folder is read as well as the archive",),
)
