"""Data hygiene from the Python API: test-train near-duplicates, cross-label near-duplicates
and label-noise candidates.

    python examples/hygiene.py [DATASET] [TAU]   # default: the built-in spiral, tau 0.05

Prints the counts, the closest rows of each list and writes out/hygiene/*.csv.
"""

from __future__ import annotations

import sys

import sepcheck


def main() -> None:
    spec = sys.argv[1] if len(sys.argv) > 1 else "spiral"
    tau = float(sys.argv[2]) if len(sys.argv) > 2 else 0.05
    ds = sepcheck.datasets.open_dataset(spec)
    rep = sepcheck.hygiene(ds.X, ds.y, ds.X_test, ds.y_test, tau=tau, norm="linf", k=5, dataset=ds.name,
                           progress=True)
    print(rep.summary())
    for name, table in rep.tables().items():
        print(f"{name}: {len(table)} rows ({table.description})")
        for row in table.head(3).to_records():
            print("   ", row)
    print("wrote", [str(p) for p in rep.to_csv("out/hygiene")])


if __name__ == "__main__":
    main()
