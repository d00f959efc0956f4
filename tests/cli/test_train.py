"""`sepcheck train` -> `sepcheck eval` on a tiny .npz end to end, and every bad-input path:
one-line errors, exit code 2, no traceback."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from sepcheck.cli import main
from tests.train.tiny import stripes

pytestmark = pytest.mark.usefixtures("one_thread")


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture()
def npz(tmp_path):
    X, y = stripes(60)
    Xt, yt = stripes(30, seed=1)
    path = tmp_path / "stripes.npz"
    np.savez(path, X=X, y=y, X_test=Xt, y_test=yt)
    return path


def _train(npz, out, method="natural", *extra):
    return run("train", method, "--dataset", npz, "--eps", 0.1, "--epochs", 2, "--batch-size", 20,
               "--lr", 0.1, "--out", out, "--quiet", "--device", "cpu", *extra)


def _one_line_error(r, *needles):
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.output
    for n in needles:
        assert n in lines[0], lines[0]


def test_train_then_eval_end_to_end(tmp_path, npz):
    runs = tmp_path / "runs"
    for method, extra in [("natural", ()), ("trades", ("--beta", 3, "--steps", 2)), ("at", ("--steps", 2))]:
        r = _train(npz, runs / method, method, "--json", *extra)
        assert r.exit_code == 0, r.output
        rep = json.loads(r.stdout)
        assert rep["arch"] == "tiny_cnn" and rep["final"]["epoch"] == 2
    table, csv, plot = tmp_path / "t.md", tmp_path / "t.csv", tmp_path / "p.png"
    r = run("eval", "--device", "cpu", runs / "trades", runs / "natural", runs / "at", "--attack-steps", 3, "--table", table,
            "--csv", csv, "--plot", plot, "--json", "--lip-protocol", "ascent", "--lip-protocol", "paper-code")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    labels = [row["label"] for row in rep["rows"]]
    assert labels == ["Natural", "AT", "TRADES(β=3)"]  # the paper's order
    ref = rep["bounds"][0]["reference"]
    assert ref["test_lipschitz"] > 0 and ref["test_lipschitz_paper_code"] > 0  # same estimators, on the 1-NN
    for row in rep["rows"]:
        for key in ("train_acc", "test_acc", "adv_test_acc", "test_lipschitz", "test_lipschitz_paper_code",
                    "separation", "r", "inv_r", "lipschitz_vs_reference"):
            assert row[key] is not None, key
        assert 0 <= row["adv_test_acc"] <= row["test_acc"] <= 1
        assert row["lipschitz_vs_reference"] == pytest.approx(row["test_lipschitz"] / ref["test_lipschitz"])
        assert row["attack"]["steps"] == 3 and row["attack"]["step_size"] == pytest.approx(2 * 0.1 / 3)
    bound = rep["bounds"][0]
    assert bound["inv_r"] == pytest.approx(1 / bound["r"])
    text = table.read_text()
    assert ("| method | train acc | test acc | adv test acc | test lipschitz | test lipschitz (paper code) | "
            "separation | r | 1/r (per class) | lip / ref |") in text
    assert "PGD linf eps=0.1: 3 steps" in text
    assert csv.read_text().splitlines()[0].startswith("method,train acc,test acc")
    assert plot.read_bytes()[:4] == b"\x89PNG"
    assert (runs / "natural" / "eval.json").exists()
    # human output prints the attack settings and the table
    r = run("eval", "--device", "cpu", runs / "natural", "--subset", 10, "--no-bound")
    assert r.exit_code == 0, r.output
    assert "PGD linf eps=0.1: 10 steps of 0.02" in r.stdout and "| Natural |" in r.stdout


def test_bad_input_one_line_errors(tmp_path, npz):
    _one_line_error(run("train", "--device", "cpu", "fgsm", "--dataset", npz, "--eps", 0.1), "unknown method 'fgsm'", "natural")
    _one_line_error(_train(npz, tmp_path / "a", "at", "--eps", -0.1), "--eps -0.1")
    _one_line_error(_train(npz, tmp_path / "b", "trades", "--beta", -1), "--beta -1")
    _one_line_error(_train(npz, tmp_path / "c", "gr", "--lambda", -2), "--lambda -2")
    _one_line_error(_train(npz, tmp_path / "c", "natural", "--norm", "l1"), "'linf' or 'l2'")
    _one_line_error(run("train", "--device", "cpu", "at", "--dataset", tmp_path / "missing.npz", "--eps", 0.1), "does not exist")
    # a run folder without a checkpoint
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_error(run("eval", "--device", "cpu", empty), "not a run folder")
    r = _train(npz, tmp_path / "ok", "natural")
    assert r.exit_code == 0, r.output
    (tmp_path / "ok" / "checkpoint_final.pt").unlink()
    (tmp_path / "ok" / "checkpoint_latest.pt").unlink()
    _one_line_error(run("eval", "--device", "cpu", tmp_path / "ok"), "has no checkpoint")
    # a checkpoint from another architecture
    assert _train(npz, tmp_path / "cnn", "natural").exit_code == 0
    assert _train(npz, tmp_path / "mlp", "natural", "--arch", "mlp").exit_code == 0
    shutil.copy(tmp_path / "cnn" / "checkpoint_final.pt", tmp_path / "mlp" / "checkpoint_final.pt")
    _one_line_error(run("eval", "--device", "cpu", tmp_path / "mlp"), "holds a tiny_cnn model", "another run")
    # a corrupted checkpoint
    (tmp_path / "cnn" / "checkpoint_final.pt").write_bytes(b"not a checkpoint")
    _one_line_error(run("eval", "--device", "cpu", tmp_path / "cnn"), "corrupted")
    # an existing run is not overwritten
    _one_line_error(_train(npz, tmp_path / "mlp", "natural", "--arch", "mlp"), "--resume", "--force")
    _one_line_error(run("eval", "--device", "cpu", tmp_path / "mlp", "--eps", -1), "--eps -1")


def test_paper_flags_and_preset_errors(tmp_path, npz):
    # a method parameter of another method, a preset for an unknown shape: one line each
    _one_line_error(_train(npz, tmp_path / "v", "natural", "--variant", "paper-code"), "--variant", "gr, llr")
    _one_line_error(_train(npz, tmp_path / "m", "gr", "--attack-mode", "train"), "--attack-mode", "at")
    _one_line_error(_train(npz, tmp_path / "p", "natural", "--preset", "paper"), "no paper preset", "1, 8, 8")
    r = _train(npz, tmp_path / "g", "gr", "--variant", "paper-code", "--reduction", "sum", "--json")
    assert r.exit_code == 0, r.output
    rep = json.loads(r.stdout)
    assert rep["label"] == "GR (paper code)" and rep["params"]["variant"] == "paper-code"


def test_train_defaults_come_from_the_config_dataclasses():
    """Each option that is a TrainConfig field or a method parameter shows the dataclass's
    default (and Literal choices); `sepcheck train --help` imports no torch."""
    import dataclasses
    import subprocess
    import sys

    from sepcheck.cli.train import train
    from sepcheck.train.config import ATParams, LLRParams, TradesParams, TrainConfig

    config = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    options = {p.name: p for p in train.params}
    for name in ("arch", "norm", "eps", "lr", "holdout", "reduction", "epochs", "batch_size", "optimizer",
                 "momentum", "weight_decay", "schedule", "augment", "seed", "device", "amp", "deterministic",
                 "preset"):
        assert options[name].default == config[name], name
    assert list(options["reduction"].type.choices) == ["mean", "sum"]
    assert options["steps"].help == (f"Inner maximisation steps (AT/TRADES {ATParams().steps}, "
                                     f"LLR {LLRParams().steps}).")
    assert f"(default {TradesParams().beta:g})" in options["beta"].help
    code = ("import sys; from sepcheck.cli import main\n"
            "try:\n    main(['train', '--help'], standalone_mode=False)\n"
            "finally:\n    print('IMPORTED', 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "IMPORTED False"
