"""The typed training configuration: one parameter dataclass per method, one-line errors,
config.json round trip (and version-1 configs read), and the resume check."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sepcheck import SepcheckError
from sepcheck.train.config import (
    PARAMS,
    ATParams,
    GRParams,
    LLRParams,
    NaturalParams,
    TradesParams,
    TrainConfig,
    check_same_run,
    params_of,
    run_config,
)
from sepcheck.train.losses import method_params
from tests.train.tiny import tiny_data

weights = st.floats(0.0, 10.0)
steps = st.integers(1, 20)
sizes = st.none() | st.floats(1e-4, 1.0)
PARAM_CASES = st.one_of(
    st.just(NaturalParams()),
    st.builds(GRParams, lam=weights, h=st.floats(1e-4, 2.0)),
    st.builds(LLRParams, lam=weights, mu=weights, steps=steps, step_size=sizes),
    st.builds(ATParams, steps=steps, step_size=sizes),
    st.builds(TradesParams, beta=weights, steps=steps, step_size=sizes),
)


@settings(max_examples=25, deadline=None)
@given(params=PARAM_CASES, eps=st.none() | st.floats(0.0, 0.5), norm=st.sampled_from(["linf", "l2"]),
       optimizer=st.sampled_from(["sgd", "adam"]), schedule=st.sampled_from(["step", "cosine", "constant"]))
def test_config_json_round_trip(params, eps, norm, optimizer, schedule):
    cfg = TrainConfig(params.method, "stripes", params=params, eps=eps if eps is not None else 0.1, norm=norm,
                      optimizer=optimizer, schedule=schedule, arch="tiny_cnn", device="cpu", augment="none")
    cfg.validate()
    stored = run_config(cfg, tiny_data(), "tiny_cnn", 1, None)
    back = TrainConfig.from_json(stored)
    back.validate()
    assert back == dataclasses.replace(cfg, download=True, verify=True)
    assert cfg.loss_kwargs().keys() <= method_params(cfg.method).keys()  # the loss takes every parameter


def test_dataclass_defaults_are_the_loss_defaults():
    for method, cls in PARAMS.items():
        loss_defaults = method_params(method)
        for f in dataclasses.fields(cls):
            assert loss_defaults[f.name] == f.default, (method, f.name)


def test_version_1_config_is_read_and_resumes():
    cfg = TrainConfig("trades", "stripes", params=TradesParams(beta=6.0, steps=3), eps=0.1, arch="tiny_cnn",
                      device="cpu")
    cfg.validate()
    new = run_config(cfg, tiny_data(), "tiny_cnn", 1, None)
    old = {**new, "format": "sepcheck.train.run/1", "params": {"eps": 0.1, "norm": "linf", "beta": 6.0, "steps": 3}}
    old.pop("amp_dtype")
    assert TrainConfig.from_json(old).params == TradesParams(beta=6.0, steps=3)
    check_same_run(old, new, "run")  # same run: no error
    with pytest.raises(SepcheckError, match="started with params="):
        check_same_run({**old, "params": {"beta": 1.0}}, new, "run")
    with pytest.raises(SepcheckError, match="not a sepcheck run config"):
        TrainConfig.from_json({**new, "format": "other/1"})


def test_flat_options_and_one_line_errors():
    cfg = TrainConfig.from_options("TRADES", "d", beta=6, eps=0.1)
    assert cfg.method == "trades" and cfg.params == TradesParams(beta=6)
    assert TrainConfig.from_options("gr", "d", lam=2.0).params == GRParams(lam=2.0)
    for method, kw, msg in [("at", {"beta": 2.0}, "--beta is a parameter of trades: method at"),
                            ("natural", {"steps": 3}, "--steps is a parameter of llr, at, trades"),
                            ("at", {"lam": 1.0}, "--lambda is a parameter of gr, llr"),
                            ("trades", {"beta": -2.0}, "--beta -2.0 is invalid"),
                            ("gr", {"h": 0.0}, "--h 0.0 is invalid: it must be > 0"),
                            ("at", {"steps": 0}, "--steps 0 is invalid"),
                            ("llr", {"mu": float("nan")}, "--mu nan is invalid"),
                            ("fgsm", {}, "unknown method 'fgsm'")]:
        with pytest.raises(SepcheckError, match=msg) as err:
            TrainConfig.from_options(method, "d", **kw)
        assert "\n" not in str(err.value)
    for kw, msg in [({"schedule": "linear"}, "unknown schedule"), ({"augment": "mixup"}, "unknown augmentation"),
                    ({"lr": 0.0}, "--lr"), ({"holdout": 0}, "--holdout"), ({"device": "tpu"}, "unknown device")]:
        with pytest.raises(SepcheckError, match=msg):
            TrainConfig("natural", "d", **kw).validate()
    assert params_of("natural") == NaturalParams()
