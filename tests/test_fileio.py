"""sepcheck.core.fileio: atomic writes leave nothing half-written; JSON is strict."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from sepcheck.core.errors import SepcheckError
from sepcheck.core.fileio import atomic_write, check_writable, json_text, to_jsonable


def test_atomic_write_replaces_the_file(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    atomic_write(target, lambda tmp: tmp.write_text("one"))
    atomic_write(target, lambda tmp: tmp.write_text("two"))
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["out.txt"]
    mask = os.umask(0)
    os.umask(mask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~mask


def test_atomic_write_failure_keeps_the_old_file_and_no_part(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")

    def half(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, half)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_json_is_strict_and_converts_numpy(tmp_path):
    obj = {1: np.float32(0.5), "a": np.arange(3), "nan": float("nan"), "inf": np.float64(np.inf),
           "b": np.bool_(True), "t": (np.int64(7), tmp_path)}
    back = json.loads(json_text(obj, indent=None))
    assert back == {"1": 0.5, "a": [0, 1, 2], "nan": None, "inf": None, "b": True, "t": [7, str(tmp_path)]}
    assert to_jsonable(np.array([[1.5, np.nan]])) == [[1.5, None]]


def test_check_writable_creates_nothing(tmp_path):
    assert check_writable(tmp_path / "new" / "f.h5", "--out") == tmp_path / "new" / "f.h5"
    assert list(tmp_path.iterdir()) == []  # the folder is made only when the output is written
    with pytest.raises(SepcheckError, match="--out .* is a directory"):
        check_writable(tmp_path, "--out")
    (tmp_path / "file").write_text("")
    with pytest.raises(SepcheckError, match="cannot write --plot .*Not a directory"):
        check_writable(tmp_path / "file" / "x.png", "--plot")


@pytest.mark.parametrize("special", ["fifo", "device", "dangling"])
def test_special_targets_are_refused_before_and_at_write(tmp_path, special):
    target = tmp_path / "out.png"
    if special == "fifo":
        os.mkfifo(target)
    elif special == "device":
        target = Path("/dev/null")
    else:
        target.symlink_to(tmp_path / "missing")
    kind = {"fifo": "FIFO", "device": "character device", "dangling": "does not exist"}[special]
    with pytest.raises(SepcheckError, match=kind):
        check_writable(target, "--plot")
    with pytest.raises(SepcheckError, match=kind):
        atomic_write(target, lambda tmp: tmp.write_text("x"))
    assert not list(tmp_path.glob("*.part")) and not list(tmp_path.glob(".*.part"))
    if special == "device":
        assert Path("/dev/null").is_char_device()


def test_symlinked_output_is_written_through(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    atomic_write(link, lambda tmp: tmp.write_text("new"))
    assert link.is_symlink() and real.read_text() == "new"


def test_readonly_folder_is_refused_before_the_work(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK) and os.geteuid() == 0:
            # root writes anyway; the probe then succeeds, which is right for root
            assert check_writable(ro / "x", "--out") == ro / "x"
        else:
            with pytest.raises(SepcheckError, match="does not accept files"):
                check_writable(ro / "x", "--out")
    finally:
        ro.chmod(0o755)


def test_proc_is_refused_before_the_work():
    if not Path("/proc/self").is_dir():
        pytest.skip("no /proc on this system")
    with pytest.raises(SepcheckError, match="--out"):
        check_writable("/proc/r.h5", "--out")
