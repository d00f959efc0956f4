"""Output paths on the command line (--out, --plot): an output never replaces what is not
ours (a device or a FIFO is refused and stays as it was), it is checked before the work,
nothing is created before the input is validated, and a symlinked output is written through."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import h5py
import numpy as np

from tests.cli.helpers import assert_one_line_error, run


def _npz(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    p = tmp_path / "d.npz"
    np.savez(p, X=rng.integers(0, 256, (30, 4)).astype(np.uint8), y=np.arange(30) % 3)
    return p


def test_plot_onto_dev_null_is_refused_and_dev_null_survives(tmp_path):
    r = run("separation", _npz(tmp_path), "--device", "cpu", "--no-cache", "--plot", "/dev/null")
    assert_one_line_error(r, "--plot /dev/null", "character device")
    assert Path("/dev/null").is_char_device()


def test_out_onto_a_fifo_is_refused_and_the_fifo_stays(tmp_path):
    fifo = tmp_path / "r.h5"
    os.mkfifo(fifo)
    r = run("separation", _npz(tmp_path), "--device", "cpu", "--no-cache", "--out", fifo)
    assert_one_line_error(r, "--out", "FIFO")
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_out_in_proc_fails_before_the_computation(tmp_path):
    r = run("separation", _npz(tmp_path), "--device", "cpu", "--no-cache", "--out", "/proc/r.h5")
    assert_one_line_error(r, "--out /proc/r.h5")


def test_out_parents_are_not_created_for_an_invalid_input(tmp_path):
    r = run("separation", tmp_path / "missing.npz", "--no-cache", "--out", tmp_path / "new" / "sub" / "r.h5")
    assert r.exit_code == 2
    assert not (tmp_path / "new").exists()


def test_symlinked_out_is_written_through(tmp_path):
    real = tmp_path / "real.h5"
    real.write_bytes(b"old")
    link = tmp_path / "link.h5"
    link.symlink_to(real)
    r = run("separation", _npz(tmp_path), "--device", "cpu", "--no-cache", "--out", link)
    assert r.exit_code == 0, r.output
    assert link.is_symlink()
    with h5py.File(real, "r") as f:
        assert f["distances"].shape == (30,)
