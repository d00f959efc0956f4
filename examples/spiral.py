"""The theorem of Yang et al. (2020) in a picture, through the Python API.

The 2-D spiral is 2r-separated; the scaled 1-nearest-neighbour classifier
f_i(x) = 1 - d(x, X_i) / r is 1/r-Lipschitz and its argmax is accurate and robust at
radius r around the data. The figure tints every point of the plane with the colour of its
predicted class, in proportion to the winning score (full colour on the training data,
white from distance r on), draws the decision boundary and a ball of radius r, and the
script prints the certified accuracy on the spiral's test split.

    python examples/spiral.py [--norm linf|l2|l1] [--out spiral_classifier.png]

The same figure from the command line: ``sepcheck plot-classifier spiral --out fig.png``.
"""

from __future__ import annotations

import argparse

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from sepcheck.classifier import LipschitzNNClassifier
from sepcheck.datasets import make_spiral


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--norm", default="linf", choices=["linf", "l2", "l1"])
    parser.add_argument("--out", default="spiral_classifier.png")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    args = parser.parse_args()

    X, y = make_spiral("train")
    X_test, y_test = make_spiral("test")
    clf = LipschitzNNClassifier(norm=args.norm, device=args.device).fit(X, y)
    print(f"separation {clf.separation_:.4f}, r = {clf.r_:.4f}, Lipschitz constant 1/r = {clf.lipschitz_constant_:.2f}")

    res = clf.certify(X_test, y_test, eps=[clf.r_ / 4, clf.r_ / 2, clf.r_])
    print(f"test accuracy {res.accuracy:.3f}, within r of own class {res.within_r:.3f}")
    for eps, acc in res.certified_accuracy.items():
        print(f"  certified accuracy at eps = {eps:.4f}: {acc:.3f}")

    fig, ax = plt.subplots(figsize=(5.0, 4.4), dpi=200)
    clf.plot(ax=ax, X_test=X_test, y_test=y_test)
    fig.savefig(args.out, bbox_inches="tight")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
