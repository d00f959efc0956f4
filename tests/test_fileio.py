"""sepcheck.fileio: atomic writes leave nothing half-written; JSON is strict."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from sepcheck.errors import SepcheckError
from sepcheck.fileio import atomic_write, check_writable, json_text, to_jsonable


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


def test_check_writable(tmp_path):
    assert check_writable(tmp_path / "new" / "f.h5", "--out") == tmp_path / "new" / "f.h5"
    assert (tmp_path / "new").is_dir()
    with pytest.raises(SepcheckError, match="--out .* is a directory"):
        check_writable(tmp_path, "--out")
    (tmp_path / "file").write_text("")
    with pytest.raises(SepcheckError, match="cannot create the folder for --plot"):
        check_writable(tmp_path / "file" / "x.png", "--plot")
