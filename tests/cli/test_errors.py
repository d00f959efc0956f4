"""How the CLI reports failures: bad input exits 2, a runtime failure (diverged loss, kernel,
system) exits 1, each as one ``error: ...`` line; any other exception is a bug and keeps its
traceback."""

from __future__ import annotations

import errno
import importlib

import numpy as np
import pytest

from sepcheck.core.errors import KernelError, SepcheckError
from tests.cli.helpers import assert_one_line_error, run

SEPARATION = importlib.import_module("sepcheck.analysis.separation")  # the module, not the function


def _images(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "img.npz"
    np.savez(path, X=rng.integers(0, 256, (30, 1, 6, 6)).astype(np.uint8), y=np.arange(30) % 3,
             X_test=rng.integers(0, 256, (9, 1, 6, 6)).astype(np.uint8), y_test=np.arange(9) % 3)
    return path


def test_diverged_training_is_one_line_exit_1(tmp_path):
    r = run("train", "natural", "--dataset", _images(tmp_path), "--epochs", 1, "--batch-size", 10,
            "--lr", 1e30, "--out", tmp_path / "run", "--quiet", "--device", "cpu")
    assert_one_line_error(r, "loss became", "--lr", code=1)


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (KernelError("the torch backend failed: out of memory; lower --block-size"), 1),
        (OSError(errno.ENOSPC, "No space left on device", "/results/x.h5"), 1),
        (SepcheckError("bad input found late: fix it"), 2),
    ],
    ids=["kernel", "oserror", "user"],
)
def test_failure_in_the_engine_is_one_line(monkeypatch, exc, code):
    def fail(*args, **kwargs):
        raise exc

    monkeypatch.setattr(SEPARATION, "nearest_other", fail)
    line = assert_one_line_error(run("separation", "spiral", "--no-cache"), code=code)
    assert str(exc.args[-1]) in line


def test_unexpected_exception_is_a_bug_and_keeps_its_traceback(monkeypatch):
    def bug(*args, **kwargs):
        return 1 / 0

    monkeypatch.setattr(SEPARATION, "nearest_other", bug)
    r = run("separation", "spiral", "--no-cache", catch_exceptions=True)
    assert r.exit_code == 1
    assert isinstance(r.exception, ZeroDivisionError)  # propagated: the interpreter prints it
    assert "a bug in sepcheck" in r.stderr and not r.stderr.startswith("error: ")


def test_usage_errors_and_help_stay_with_click():
    assert run("separation", "spiral", "--no-such-option").exit_code == 2
    assert run("no-such-command").exit_code == 2
    r = run("separation", "--help")
    assert r.exit_code == 0 and "DATASET" in r.stdout
