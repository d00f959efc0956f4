"""Exact radius search and the class-pair matrix from the Python API.

    python examples/radius_search.py [path/to/mnist] [eps]   # default: the built-in spiral

Prints the conflict graph at 2 eps (every pair of differently labelled training points
within 2 eps, closed: their eps-balls meet), the points in it, the closest pairs, and the
matrix of minimum distances between classes.
"""

from __future__ import annotations

import sys

import numpy as np

import sepcheck


def main() -> None:
    spec = sys.argv[1] if len(sys.argv) > 1 else "spiral"
    ds = sepcheck.datasets.open_dataset(spec)
    pairs = sepcheck.class_pair_separation(ds.X, ds.y, norm="linf")
    a, b, d = pairs.closest()
    print(f"{ds.name}: closest classes {a} and {b} at linf {d:.4f}, points {pairs.pairs[a, b]}")
    eps = float(sys.argv[2]) if len(sys.argv) > 2 else 0.6 * d  # default: just past the closest pair
    graph = sepcheck.neighbors_within(ds.X, ds.y, 2 * eps, norm="linf")  # self mode
    rows, cols, dist = graph.pairs()
    print(f"conflict graph at 2 eps = {2 * eps:.4f}: {graph.nnz // 2} edges, "
          f"{np.count_nonzero(graph.counts())} of {graph.shape[0]} points in one")
    once = np.flatnonzero(rows < cols)  # (i, j) and (j, i) are both there
    for k in once[np.argsort(dist[once], kind="stable")[:5]]:
        print(f"  {rows[k]} (label {ds.y[rows[k]]}) - {cols[k]} (label {ds.y[cols[k]]}): {dist[k]:.4f}")
    half = graph.within(eps)  # a smaller radius without a new search
    print(f"within eps = {eps:.4f}: {half.nnz // 2} edges")
    with np.printoptions(precision=3, suppress=True):
        print("class-pair minimum distances (diagonal NaN):")
        print(pairs.distances)


if __name__ == "__main__":
    main()
