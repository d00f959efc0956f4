"""Sharded, resumable runs (sepcheck.runs): the same answer as one exact search, resume after
a crash or SIGKILL, SLURM-style groups and their merge, and the refusals (one line, nothing
touched)."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sepcheck
from sepcheck.core.errors import SepcheckError
from sepcheck.runs.job import certify_job
from sepcheck.runs.merge import merge_pieces
from sepcheck.runs.pieces import certification, read_piece
from sepcheck.runs.plan import ShardPlan, plan_shards
from sepcheck.runs.run import LogLines, run_job, sharded_separation
from tests import oracle

ARRAYS = ("distances", "neighbors", "test_distances", "test_neighbors", "conflicts", "test_conflicts")
ATTRS = ("norm", "dataset", "n_classes", "dim", "units", "content_hash", "extra")


def _data(n=230, n_test=70, d=5, seed=0):
    """uint8 data with few values: ties and identical rows of different labels (conflicts)."""
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 3, size=(n, d)).astype(np.uint8)
    Xt = rng.integers(0, 3, size=(n_test, d)).astype(np.uint8)
    return X, rng.integers(0, 3, n), Xt, rng.integers(0, 3, n_test)


def _same(a: sepcheck.SeparationResult, b: sepcheck.SeparationResult, attrs=ATTRS) -> None:
    for name in ARRAYS:
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            np.testing.assert_array_equal(x, y, err_msg=name)
    for name in attrs:
        assert getattr(a, name) == getattr(b, name), name


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_sharded_equals_oracle_and_one_search(norm):
    X, y, Xt, yt = _data()
    res, run = sharded_separation(X, y, Xt, yt, norm=norm, shard_rows=37, device="cpu")  # 37 divides nothing
    assert run.total == math.ceil(300 / 37) and run.computed == run.total
    p = math.inf if norm == "linf" else 2.0
    d, i = oracle.nearest_other(X, y, p=p, scale=255.0)
    np.testing.assert_array_equal(res.distances, d[:, 0])
    np.testing.assert_array_equal(res.neighbors, i[:, 0])
    td, ti = oracle.nearest_other(X, y, Xt, yt, p=p, scale=255.0)
    np.testing.assert_array_equal(res.test_distances, td[:, 0])
    np.testing.assert_array_equal(res.test_neighbors, ti[:, 0])
    assert res.conflicts.shape[0] > 0  # the conflicts of every shard, as in one search
    _same(res, sepcheck.separation(X, y, Xt, yt, norm=norm, device="cpu"), ATTRS[:-1])


@pytest.mark.parametrize("store", ["h5", "npy"])
def test_sharded_run_streams_files(tmp_path, store):
    """HDF5 and .npy inputs stream (reference and queries) and give the in-memory answer."""
    import h5py

    X, y, Xt, yt = _data()
    if store == "h5":
        path = tmp_path / "d.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("X", data=X, chunks=(16, 5))
            f.create_dataset("X_test", data=Xt, chunks=(16, 5))
        src, srct = sepcheck.open_source(f"{path}:X"), sepcheck.open_source(f"{path}:X_test")
    else:
        np.save(tmp_path / "X.npy", X)
        np.save(tmp_path / "Xt.npy", Xt)
        src, srct = sepcheck.open_source(tmp_path / "X.npy"), sepcheck.open_source(tmp_path / "Xt.npy")
    res, run = sharded_separation(src, y, srct, yt, shard_rows=41, out=tmp_path / "r.h5", device="cpu",
                                  memory_budget="16MiB", block_size=23)
    _same(res, sepcheck.separation(X, y, Xt, yt, device="cpu"), ATTRS[:-1])
    _same(sepcheck.SeparationResult.load(tmp_path / "r.h5"), res)


def test_streamed_float_shards_equal_the_oracle(tmp_path):
    """Float .npy inputs (many ties): both searches of a certify run (nearest other
    label for the training rows, nearest of each class for the test rows) are the oracle's."""
    rng = np.random.default_rng(5)
    X, Xt = rng.integers(-4, 5, size=(150, 3)).astype(float), rng.integers(-4, 5, size=(40, 3)).astype(float)
    y, yt = rng.integers(0, 3, 150), rng.integers(0, 3, 40)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "Xt.npy", Xt)
    src, srct = sepcheck.open_source(tmp_path / "X.npy"), sepcheck.open_source(tmp_path / "Xt.npy")
    job = certify_job(src, y, srct, yt, norm="l2", shard_rows=29, device="cpu", memory_budget="16MiB")
    parts = {}
    for i in range(job.plan.count):
        for k, v in job.compute(i).items():
            parts.setdefault(k, []).append(v)
    got = {k: np.concatenate(v) for k, v in parts.items()}
    d, i = oracle.nearest_other(X, y, p=2.0)
    np.testing.assert_array_equal(got["train.dist"], d[:, 0])
    np.testing.assert_array_equal(got["train.idx"], i[:, 0])
    cd, ci, _ = oracle.class_distances(X, y, Xt, p=2.0)
    np.testing.assert_array_equal(got["test.dist"], cd)
    np.testing.assert_array_equal(got["test.idx"], ci)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(0, 500), rows=st.integers(1, 120), groups=st.integers(1, 9))
def test_plan_covers_every_query_once(n, rows, groups):
    plan = ShardPlan(n, rows)
    seen = np.zeros(n, dtype=int)
    for i in range(plan.count):
        a, b = plan.bounds(i)
        seen[a:b] += 1
    assert (seen == 1).all()
    got = [i for g in range(groups) for i in plan.group(g, groups)]
    assert got == list(range(plan.count))


def test_default_plan_follows_n_and_budget():
    assert plan_shards(1_000_000, 784).count == 64  # a kill loses at most 1/64 of the work
    assert plan_shards(1000, 784).count == 1  # small runs: few engine calls
    small = plan_shards(200_000, 3072, memory_budget=16 * 2**20)  # a quarter of the budget per shard
    assert small.shard_rows * 3072 <= 4 * 2**20 < (small.shard_rows + 1) * 3072 and small.count > 64
    with pytest.raises(SepcheckError, match="shard_rows"):
        plan_shards(10, 4, shard_rows=0)


def _crash_after(shards):
    """A progress callback that interrupts the run when ``shards`` shards are done."""
    done = []

    def crash(_):
        done.append(1)
        if len(done) == shards:
            raise KeyboardInterrupt

    return crash


def test_crash_then_resume_equals_uninterrupted_run(tmp_path):
    X, y, Xt, yt = _data()
    whole, _ = sharded_separation(X, y, Xt, yt, shard_rows=40, out=tmp_path / "whole.h5", device="cpu")
    out = tmp_path / "r.h5"
    with pytest.raises(KeyboardInterrupt):
        sharded_separation(X, y, Xt, yt, shard_rows=40, out=out, progress=_crash_after(3), device="cpu")
    assert not out.exists() and len(list((tmp_path / "r.h5.parts").glob("shard-*.npz"))) == 3
    res, run = sharded_separation(X, y, Xt, yt, shard_rows=40, out=out, resume=True, device="cpu")
    assert (run.reused, run.computed) == (3, run.total - 3)
    assert not (tmp_path / "r.h5.parts").exists()
    _same(sepcheck.SeparationResult.load(out), sepcheck.SeparationResult.load(tmp_path / "whole.h5"))
    _same(res, whole)


def test_resume_keeps_the_journals_shard_size(tmp_path):
    """A resume whose only difference is the shard size carries on with the journal's shards."""
    X, y, Xt, yt = _data()
    whole, _ = sharded_separation(X, y, Xt, yt, shard_rows=40, device="cpu")
    out = tmp_path / "r.h5"
    with pytest.raises(KeyboardInterrupt):
        sharded_separation(X, y, Xt, yt, shard_rows=40, out=out, progress=_crash_after(2), device="cpu")
    res, run = sharded_separation(X, y, Xt, yt, shard_rows=25, out=out, resume=True, device="cpu")
    assert run.reused == 2 and run.total == -(-(len(X) + len(Xt)) // 40)
    _same(res, whole)


def test_resume_of_a_finished_output_computes_nothing(tmp_path):
    """A finished result (whole run) or piece (one group) is the answer of its resume."""
    X, y, Xt, yt = _data()
    whole, _ = sharded_separation(X, y, Xt, yt, shard_rows=40, out=tmp_path / "r.h5", device="cpu")
    res, run = sharded_separation(X, y, Xt, yt, shard_rows=40, out=tmp_path / "r.h5", resume=True, device="cpu")
    assert run.computed == 0
    _same(res, whole)
    piece, _ = sharded_separation(X, y, Xt, yt, shard_rows=40, out=tmp_path / "p.h5", shard=(1, 2), device="cpu")
    again, run = sharded_separation(X, y, Xt, yt, shard_rows=40, out=tmp_path / "p.h5", shard=(1, 2), resume=True,
                                    device="cpu")
    assert run.computed == 0 and (again.lo, again.hi) == (piece.lo, piece.hi)
    assert sorted(again.arrays) == sorted(piece.arrays)
    for key, arr in piece.arrays.items():
        np.testing.assert_array_equal(again.arrays[key], arr, err_msg=key)


_KILLED = """
import sys, time
from sepcheck.runs.run import sharded_separation
from tests.test_shards import _data
X, y, _, _ = _data()
count = []
def stall(_):
    count.append(1)
    if len(count) == 2:   # after the 2nd shard is in the journal: wait for the test's SIGKILL
        print("ready", flush=True)
        time.sleep(600)
sharded_separation(X, y, shard_rows=30, out=sys.argv[1], progress=stall, device="cpu")
"""


def test_sigkill_loses_at_most_the_shard_in_progress(tmp_path):
    out = tmp_path / "r.h5"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_KILLED), str(out)], stdout=subprocess.PIPE,
                            env=env, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    journal = tmp_path / "r.h5.parts"
    in_journal = len(list(journal.glob("shard-*.npz")))
    assert in_journal == 2 and not out.exists()
    X, y, _, _ = _data()
    res, run = sharded_separation(X, y, shard_rows=30, out=out, resume=True, device="cpu")
    assert run.computed == run.total - in_journal  # nothing finished was lost
    _same(res, sepcheck.separation(X, y, device="cpu"), ATTRS[:-1])


def test_groups_merge_into_the_one_run(tmp_path):
    X, y, Xt, yt = _data()
    whole, _ = sharded_separation(X, y, Xt, yt, shard_rows=37, out=tmp_path / "whole.h5", device="cpu")
    paths = []
    for g in (2, 0, 1):
        piece, run = sharded_separation(X, y, Xt, yt, shard_rows=37, out=tmp_path / f"p{g}.h5", shard=(g, 3),
                                        device="cpu")
        assert run.piece.lo == run.total * g // 3
        paths.append(tmp_path / f"p{g}.h5")
    merge_pieces(paths, tmp_path / "merged.h5")
    _same(sepcheck.SeparationResult.load(tmp_path / "merged.h5"), whole)
    # a gap and an overlap name the query rows; the existing output stays as it was
    before = (tmp_path / "merged.h5").read_bytes()
    with pytest.raises(SepcheckError, match=r"query train rows 111-221 are in no piece"):
        merge_pieces([paths[0], paths[1]], tmp_path / "merged.h5")
    with pytest.raises(SepcheckError, match=r"train rows .* are in both"):
        merge_pieces([*paths, paths[2]], tmp_path / "merged.h5")
    assert (tmp_path / "merged.h5").read_bytes() == before


def test_refusals_leave_everything_untouched(tmp_path):
    X, y, Xt, yt = _data()
    out = tmp_path / "r.h5"
    sharded_separation(X, y, shard_rows=50, out=out, device="cpu")
    before = out.read_bytes()
    other = X.copy()
    other[0, 0] ^= 1
    with pytest.raises(SepcheckError, match="other inputs or options .*content_hash"):
        sharded_separation(other, y, shard_rows=50, out=out, resume=True, device="cpu")
    with pytest.raises(SepcheckError, match="other inputs or options .*norm"):
        sharded_separation(X, y, norm="l2", shard_rows=50, out=out, resume=True, device="cpu")
    assert out.read_bytes() == before
    mine = tmp_path / "n.h5.parts"  # a folder of the user's at the journal's place is never deleted
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(SepcheckError, match="not a sepcheck results journal"):
        sharded_separation(X, y, out=tmp_path / "n.h5", device="cpu")
    assert (mine / "notes.txt").read_text() == "mine"
    with pytest.raises(SepcheckError, match="--resume needs --out"):
        sharded_separation(X, y, resume=True, device="cpu")
    with pytest.raises(SepcheckError, match="--shard I/N needs --out"):
        sharded_separation(X, y, shard="0/2", device="cpu")
    # a journal of another run is refused as well, and kept
    sharded_separation(X, y, shard_rows=50, out=tmp_path / "a.h5", shard=(0, 2), device="cpu")
    piece = tmp_path / "b.h5"
    sharded_separation(other, y, shard_rows=50, out=piece, shard=(1, 2), device="cpu")
    with pytest.raises(SepcheckError, match="different inputs"):
        merge_pieces([tmp_path / "a.h5", piece])
    with pytest.raises(SepcheckError, match="group"):  # the piece of another group of the array
        sharded_separation(X, y, shard_rows=50, out=tmp_path / "a.h5", shard=(1, 2), resume=True, device="cpu")
    with pytest.raises(SepcheckError, match="not a sepcheck shard result"):
        merge_pieces([out])


def test_certify_shards_equal_the_classifier(tmp_path):
    rng = np.random.default_rng(3)
    X = rng.random((160, 4))
    y = (X[:, 0] > 0.5).astype(int) + (X[:, 1] > 0.5)
    Xt, yt = rng.random((45, 4)), rng.integers(0, 3, 45)
    job = certify_job(X, y, Xt, yt, shard_rows=33, device="cpu")
    run = run_job(job, out=tmp_path / "c.h5", shard=(0, 1))
    got = certification(run.piece, [0.01, 0.05])
    clf = sepcheck.LipschitzNNClassifier(device="cpu").fit(X, y)
    want = clf.certify(Xt, yt, [0.01, 0.05])
    assert got.to_dict() == want.to_dict()
    np.testing.assert_array_equal(got.radius, want.radius)
    assert read_piece is not None


def test_log_lines_for_batch_jobs(capsys):
    """A job's log (no terminal) gets a line with shards done and an ETA, at most one a minute."""
    log = LogLines(64, every=0.0)
    log.tick(16)
    log.tick(32)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and lines[0].startswith("sepcheck: shards 16/64 done, ETA ")
    quiet = LogLines(64)  # the default: not before a minute has passed
    quiet.tick(1)
    assert capsys.readouterr().err == ""
