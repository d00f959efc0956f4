"""MNIST: canonical URLs and published md5 checksums (LeCun, Cortes & Burges).

The original site (yann.lecun.com) often refuses downloads now, so the PyTorch mirror of
the byte-identical files comes first; the md5s are those published with torchvision and
match the shared copy of the test files.
"""

from __future__ import annotations

from .info import DatasetInfo
from .remote import RemoteFile

URLS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")

MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}

FILES = {name: RemoteFile(name, tuple(u + name for u in URLS), md5=md5) for name, md5 in MD5.items()}

INFO = DatasetInfo(
    name="mnist",
    title="MNIST handwritten digits",
    shape=(1, 28, 28),
    sizes={"train": 60000, "test": 10000},
    n_classes=10,
    eps=0.1,
    eps_text="0.1",
    eps_source="Yang et al. 2020, Table 1",
    homepage="http://yann.lecun.com/exdb/mnist/",
    files={"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
           "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")},
    notes=("with only the t10k files present and no download, open_dataset / the CLI use the "
           "first 8000 test images as train and the last 2000 as test (said in the output)",),
)
