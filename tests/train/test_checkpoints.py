"""Hand-edited or damaged checkpoints give one-line errors (no torch text) on resume and
evaluation; a run that stopped before its first checkpoint restarts without --force."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sepcheck import SepcheckError
from sepcheck.train import ATParams, TrainConfig, train
from sepcheck.train.evaluate import load_model
from sepcheck.train.runs import RunDir, load_checkpoint, read_log
from tests.fuzz import FLIPS, flip
from tests.train.tiny import tiny_data

pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(**kw) -> TrainConfig:
    base = dict(method="at", dataset="stripes", params=ATParams(steps=1), arch="tiny_cnn", eps=0.1, epochs=3,
                batch_size=16, lr=0.05, seed=3, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def cut_run(tmp_path_factory):
    """A 3-epoch run interrupted after epoch 1 (checkpoint_latest.pt, no final)."""
    root = tmp_path_factory.mktemp("runs") / "cut"

    def stop(record):
        if record["epoch"] == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_cfg(), root, data=tiny_data(), progress=False, on_epoch_end=stop)
    return RunDir(root)


def _copy(run: RunDir, tmp_path) -> RunDir:
    dest = tmp_path / "copy"
    shutil.copytree(run.path, dest)
    return RunDir(dest)


def _edit(run: RunDir, change) -> None:
    state = torch.load(run.latest, weights_only=True)
    change(state)
    torch.save(state, run.latest)


EDITS = {
    "no_epoch": (lambda s: s.pop("epoch"), "'epoch' is missing"),
    "epoch_99_of_3": (lambda s: s.update(epoch=99), "after epoch 99 but the run has --epochs 3"),
    "param_groups": (lambda s: s["optimizer"]["param_groups"].append(dict(s["optimizer"]["param_groups"][0])),
                     "does not fit this run's"),
    "rng_size": (lambda s: s["rng"].update(torch=[torch.zeros(7, dtype=torch.uint8)]), "random generator"),
    "model_not_tensors": (lambda s: s.update(model={"w": 1}), "not a state dict of tensors"),
    "schedule": (lambda s: s.update(schedule={}), "does not fit this run's"),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_hand_edited_checkpoints_give_one_line_errors(cut_run, tmp_path, edit):
    change, words = EDITS[edit]
    run = _copy(cut_run, tmp_path)
    _edit(run, change)
    with pytest.raises(SepcheckError, match=words) as e:
        train(_cfg(), run.path, data=tiny_data(), progress=False, resume=True)
    assert "\n" not in str(e.value)


def test_garbage_checkpoint_hides_torch_text(cut_run, tmp_path):
    run = _copy(cut_run, tmp_path)
    run.latest.write_bytes(b"PK\x03\x04" + b"garbage" * 50)
    with pytest.raises(SepcheckError, match="corrupted or not a sepcheck checkpoint") as e:
        load_checkpoint(run.latest)
    assert "\n" not in str(e.value) and "issue" not in str(e.value).lower()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(FLIPS, st.booleans())
def test_fuzzed_checkpoints_load_or_fail_in_one_line(cut_run, tmp_path_factory, flips, resume):
    data = flip(cut_run.latest.read_bytes(), flips)
    path = tmp_path_factory.mktemp("fuzz") / "checkpoint_latest.pt"
    path.write_bytes(data)
    try:
        state = load_checkpoint(path, resume=resume)
    except SepcheckError as exc:
        assert "\n" not in str(exc)
    else:
        assert isinstance(state["model"], dict)


def test_run_stopped_before_its_first_checkpoint_restarts_without_force(cut_run, tmp_path):
    run = _copy(cut_run, tmp_path)
    run.latest.unlink()
    run.log.write_text('{"epoch": 1, "lo')  # torn
    assert json.loads(run.config.read_text())
    res = train(_cfg(epochs=1), run.path, data=tiny_data(), progress=False)
    assert [r["epoch"] for r in read_log(RunDir(res.run_dir))] == [1]


def test_evaluate_refuses_a_checkpoint_without_a_model(cut_run, tmp_path):
    run = _copy(cut_run, tmp_path)
    _edit(run, lambda s: s.pop("model"))
    with pytest.raises(SepcheckError, match="'model' is missing"):
        load_model(run.path)
