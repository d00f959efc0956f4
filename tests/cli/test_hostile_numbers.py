"""Numbers on the command line: --memory-budget is listed, parsed and validated; extreme
results are printed with a sane precision and plotted; a plot that fails leaves no file
written."""

from __future__ import annotations

import numpy as np
import pytest

from tests.cli.helpers import assert_one_line_error, run


def _npz(tmp_path, X, y):
    path = tmp_path / "d.npz"
    np.savez(path, X=np.asarray(X), y=np.asarray(y))
    return path


def test_memory_budget_option_is_parsed_and_validated(tmp_path):
    data = _npz(tmp_path, [[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]], [0, 1, 1])
    ok = run("separation", "--device", "cpu", data, "--no-cache", "--norm", "l2", "--memory-budget", "64MiB", "--json")
    assert ok.exit_code == 0 and '"separation": 5.0' in ok.stdout
    bad = run("separation", "--device", "cpu", data, "--no-cache", "--memory-budget", "1")
    assert_one_line_error(bad, "memory_budget")


def test_huge_separation_is_printed_briefly_and_plotted(tmp_path):
    data = _npz(tmp_path, [[1e200, 0.0], [-1e200, 0.0], [0.0, 1.0]], [0, 1, 1])
    out, plot = tmp_path / "r.h5", tmp_path / "h.png"
    r = run("separation", "--device", "cpu", data, "--no-cache", "--norm", "l2", "--out", out, "--plot", plot)
    assert r.exit_code == 0, r.output
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("separation"))
    assert "e+200" in line and len(line) < 40
    assert out.exists() and plot.exists()


def test_a_failing_plot_leaves_no_out_file(tmp_path, monkeypatch):
    from sepcheck.analysis.separation import SeparationResult
    from sepcheck.core.errors import SepcheckError

    def broken(self, *args, **kwargs):
        raise SepcheckError("cannot draw this histogram")

    monkeypatch.setattr(SeparationResult, "plot", broken)
    data = _npz(tmp_path, [[0.0], [1.0]], [0, 1])
    out, plot = tmp_path / "r.h5", tmp_path / "h.png"
    r = run("separation", "--device", "cpu", data, "--no-cache", "--out", out, "--plot", plot)
    assert_one_line_error(r, "histogram")
    assert not out.exists() and not plot.exists()


@pytest.mark.parametrize("command", ["separation", "certify"])
def test_memory_budget_option_is_listed(command):
    assert "--memory-budget" in run(command, "--help").stdout
