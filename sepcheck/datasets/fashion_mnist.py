"""Fashion-MNIST: canonical URLs and published md5 checksums (Xiao, Rasul & Vollgraf 2017)."""

from __future__ import annotations

from .info import DatasetInfo
from .remote import RemoteFile

URLS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)

MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}

FILES = {name: RemoteFile(name, tuple(u + name for u in URLS), md5=md5) for name, md5 in MD5.items()}

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]

INFO = DatasetInfo(
    name="fashion-mnist",
    title="Fashion-MNIST (Zalando article images)",
    shape=(1, 28, 28),
    sizes={"train": 60000, "test": 10000},
    n_classes=10,
    eps=0.1,
    eps_text="0.1",
    eps_source="common choice (as for MNIST); not in Yang et al. 2020",
    homepage="https://github.com/zalandoresearch/fashion-mnist",
    files={"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
           "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")},
)
