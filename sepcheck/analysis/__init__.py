"""What sepcheck computes from the exact engine: per-point separation (:mod:`.separation`,
stored by :mod:`.results_io`), cross-label near-duplicates (:mod:`.conflicts`), the distance
between every two classes (:mod:`.classpairs`), the robust-accuracy ceiling (:mod:`.ceiling`;
its conflict-graph solver :mod:`.ceiling_graph`), data hygiene (:mod:`.hygiene`), the
certification result type (:mod:`.certify`) and the figures of these results (:mod:`.plots`)."""
