"""The command line of sharded runs: ``torchrun -m sepcheck`` (two gloo processes) equals one
process, ``--shard I/N`` + ``sepcheck merge`` equals one run, ``--resume``, the refusals (exit
2, one line, the existing file intact) and a process of the job that dies."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import sepcheck
from tests.cli.helpers import assert_one_line_error, run

ROOT = Path(__file__).resolve().parents[2]
TORCHRUN = shutil.which("torchrun", path=str(Path(sys.executable).parent))
#: keys that say how a run went, not what it found
HOW = ("shards", "backend", "cached", "out")


def _npz(tmp_path: Path, name: str = "data", seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 3, size=(260, 6)).astype(np.uint8)
    path = tmp_path / f"{name}.npz"
    np.savez(path, X=X, y=rng.integers(0, 3, 260), X_test=rng.integers(0, 3, size=(50, 6)).astype(np.uint8),
             y_test=rng.integers(0, 3, 50))
    return path


def _h5(tmp_path: Path) -> Path:
    """The arrays of :func:`_npz` in an HDF5 file (the CLI streams it)."""
    import h5py

    path = tmp_path / "data.h5"
    with np.load(_npz(tmp_path, "h5src")) as z, h5py.File(path, "w") as f:
        for k in z.files:
            f.create_dataset(k, data=z[k], chunks=(32, 6) if k.startswith("X") else None)
    return path


def _floats(tmp_path: Path) -> Path:
    rng = np.random.default_rng(5)
    X = rng.random((180, 4))
    path = tmp_path / "floats.npz"
    np.savez(path, X=X, y=(X[:, 0] > 0.5).astype(int) + (X[:, 1] > 0.5), X_test=rng.random((40, 4)),
             y_test=rng.integers(0, 3, 40))
    return path


def _what(stdout: str) -> dict:
    return {k: v for k, v in json.loads(stdout).items() if k not in HOW}


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def _torchrun(*args: object, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [TORCHRUN, "--standalone", "--nproc_per_node", "2", "-m", "sepcheck", *map(str, args)]
    return subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=300)


@pytest.mark.skipif(TORCHRUN is None, reason="torchrun is not installed next to this interpreter")
def test_torchrun_two_processes_equal_one(tmp_path):
    data = _h5(tmp_path)  # streamed from the file by every rank
    one = run("separation", data, "--device", "cpu", "--split", "both", "--no-cache", "--json")
    r = _torchrun("separation", data, "--device", "cpu", "--split", "both", "--shard-rows", 37, "--json",
                  "--out", tmp_path / "r.h5", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count('"separation"') == 1  # rank 0 alone prints the one JSON object
    assert json.loads(r.stdout)["shards"]["ranks"] == 2
    assert _what(r.stdout) == _what(one.stdout)
    single = tmp_path / "single.h5"
    assert run("separation", data, "--device", "cpu", "--split", "both", "--shard-rows", 37, "--out",
               single).exit_code == 0
    a, b = sepcheck.SeparationResult.load(tmp_path / "r.h5"), sepcheck.SeparationResult.load(single)
    for name in ("distances", "neighbors", "test_distances", "test_neighbors", "conflicts", "test_conflicts"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert not (tmp_path / "r.h5.parts").exists()


@pytest.mark.skipif(TORCHRUN is None, reason="torchrun is not installed next to this interpreter")
def test_torchrun_certify_equals_one_process(tmp_path):
    data = _floats(tmp_path)
    one = run("certify", data, "--device", "cpu", "--no-cache", "--json", "--eps", 0.02)
    r = _torchrun("certify", data, "--device", "cpu", "--shard-rows", 29, "--json", "--eps", 0.02, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert _what(r.stdout) == _what(one.stdout)


def test_shard_groups_and_merge_equal_one_run(tmp_path):
    data = _npz(tmp_path)
    one = run("separation", data, "--device", "cpu", "--split", "both", "--shard-rows", 40, "--out",
              tmp_path / "one.h5", "--json")
    for i in range(3):
        r = run("separation", data, "--device", "cpu", "--split", "both", "--shard-rows", 40, "--shard", f"{i}/3",
                "--out", tmp_path / f"piece-{i}.h5", "--json")
        assert json.loads(r.stdout)["shards"]["group"] == f"{i}/3"
    m = run("merge", *sorted(tmp_path.glob("piece-*.h5")), "--out", tmp_path / "merged.h5", "--json")
    assert json.loads(m.stdout)["separation"] == json.loads(one.stdout)["separation"]
    a, b = sepcheck.SeparationResult.load(tmp_path / "merged.h5"), sepcheck.SeparationResult.load(tmp_path / "one.h5")
    assert a.summary() == b.summary() and a.content_hash == b.content_hash
    np.testing.assert_array_equal(a.test_conflicts, b.test_conflicts)
    # certify: the same for the per-class search
    fl = _floats(tmp_path)
    for i in range(2):
        run("certify", fl, "--device", "cpu", "--shard-rows", 50, "--shard", f"{i}/2", "--out", tmp_path / f"c{i}.h5")
    run("merge", tmp_path / "c0.h5", tmp_path / "c1.h5", "--out", tmp_path / "c.h5")
    resumed = run("certify", fl, "--device", "cpu", "--shard-rows", 50, "--out", tmp_path / "c.h5", "--resume",
                  "--eps", 0.02, "--json")
    assert json.loads(resumed.stdout)["shards"]["computed"] == 0  # the merged file is the finished run
    direct = run("certify", fl, "--device", "cpu", "--no-cache", "--eps", 0.02, "--json")
    assert _what(resumed.stdout) == _what(direct.stdout)


def test_sharded_certify_of_a_streamed_h5_file(tmp_path):
    """An .h5 file is streamed (its X is a source, not an array): the sharded certify still
    reports and equals the in-memory run."""
    import h5py

    fl = _floats(tmp_path)
    h5 = tmp_path / "h5" / "floats.h5"
    h5.parent.mkdir()
    with np.load(fl) as z, h5py.File(h5, "w") as f:
        for k in z.files:
            f.create_dataset(k, data=z[k], chunks=(32, 4) if k.startswith("X") else None)
    sharded = run("certify", h5, "--device", "cpu", "--shard-rows", 50, "--out", tmp_path / "c.h5", "--eps", 0.02,
                  "--json")
    assert sharded.exit_code == 0, sharded.output
    direct = run("certify", fl, "--device", "cpu", "--no-cache", "--eps", 0.02, "--json")
    got = _what(sharded.stdout)
    assert got["n_train"] == 180 and got == _what(direct.stdout)


def test_refusals_exit_2_and_keep_the_file(tmp_path):
    data, other = _npz(tmp_path), _npz(tmp_path, "other", seed=1)
    out = tmp_path / "r.h5"
    assert run("separation", data, "--device", "cpu", "--out", out, "--shard-rows", 50).exit_code == 0
    before = out.read_bytes()
    assert_one_line_error(run("separation", other, "--device", "cpu", "--out", out, "--resume"),
                          "holds results of other inputs or options")
    assert_one_line_error(run("separation", data, "--device", "cpu", "--norm", "l2", "--out", out, "--resume"),
                          "norm")
    assert_one_line_error(run("separation", data, "--device", "cpu", "--resume"), "--resume needs --out")
    assert_one_line_error(run("separation", data, "--device", "cpu", "--shard", "1/2"), "--shard I/N needs --out")
    assert_one_line_error(run("separation", data, "--device", "cpu", "--shard", "2/2", "--out", out), "'2/2'")
    assert out.read_bytes() == before
    for i, d in enumerate((data, other)):
        run("separation", d, "--device", "cpu", "--shard-rows", 50, "--shard", f"{i}/2", "--out", tmp_path / f"p{i}.h5")
    assert_one_line_error(run("merge", tmp_path / "p0.h5", tmp_path / "p1.h5", "--out", out), "different inputs")
    assert_one_line_error(run("merge", tmp_path / "p0.h5", "--out", out), "query train rows 150-259 are in no piece")
    assert_one_line_error(run("merge", out, "--out", tmp_path / "x.h5"), "not a sepcheck shard result")
    assert out.read_bytes() == before and not (tmp_path / "x.h5").exists()


def test_a_process_that_dies_stops_the_others(tmp_path):
    """Rank 1 joins the group and is killed; rank 0 (the real command) stops with one line and
    writes no output."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**_env(), "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2"}
    dies = ("import os, signal, torch.distributed as dist\n"
            "dist.init_process_group('gloo')\nos.kill(os.getpid(), signal.SIGKILL)\n")
    other = subprocess.Popen([sys.executable, "-c", dies], env={**env, "RANK": "1", "LOCAL_RANK": "1"})
    out = tmp_path / "r.h5"
    r0 = subprocess.run([sys.executable, "-m", "sepcheck", "separation", str(_npz(tmp_path)), "--device", "cpu",
                         "--out", str(out)], env={**env, "RANK": "0", "LOCAL_RANK": "0"}, capture_output=True,
                        text=True, timeout=300)
    assert other.wait(timeout=60) == -signal.SIGKILL
    lines = [ln for ln in r0.stderr.splitlines() if ln.strip()]
    assert r0.returncode == 2 and len(lines) == 1, r0.stderr
    assert lines[0].startswith("error: rank 0 of 2: another process of the job stopped")
    assert not out.exists()
