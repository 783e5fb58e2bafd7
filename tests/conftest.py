"""Shared fixtures: tiny configs with overrides, a seeded RNG, and one tiny trained run."""

from __future__ import annotations

import dataclasses
import os
import random

from mechlistops import threads

# Tests run in pytest-xdist workers, one per core: idle OpenMP threads must not spin while
# another worker holds the core (threads.py), so the cap goes in before torch loads, and each
# worker takes one thread.
threads.set_wait_policy()

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from mechlistops.config import DataConfig, ModelConfig, RunConfig, TrainConfig  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


def tiny_config(data=None, model=None, train=None) -> RunConfig:
    """A run that trains in seconds on CPU; override any field by dict."""
    d = DataConfig(ops=("MAX",), test_size=200, max_depth=2)
    m = ModelConfig(n_layers=1, d_model=32, n_heads=2)
    t = TrainConfig(
        steps=300,
        batch_size=64,
        lr=3e-3,
        warmup_steps=20,
        eval_interval=100,
        save_interval=100,
    )
    return RunConfig(
        dataclasses.replace(d, **(data or {})),
        dataclasses.replace(m, **(model or {})),
        dataclasses.replace(t, **(train or {})),
    )


def script_fails_in_one_line(capsys, call, *fragments) -> str:
    """A script of analyses/ given bad input: exit 2 and one line on stderr holding every
    fragment (the line, for further checks)."""
    with pytest.raises(SystemExit) as stop:
        call()
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and len(err) == 1, err
    assert all(f in err[0] for f in fragments), err
    return err[0]


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A finished tiny MAX run directory (trained once per test session)."""
    from mechlistops.train import train

    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    train(tiny_config(), run_dir, progress=False)
    return run_dir


def train_interrupted(monkeypatch, cfg: RunConfig, run_dir, at_step: int) -> None:
    """Train `cfg` into `run_dir` and stop it with KeyboardInterrupt at step `at_step` (as a
    Ctrl-C would), leaving the run as an interrupted one to resume."""
    import mechlistops.train as train_mod

    calls, real_loss = {"n": 0}, train_mod.loss_fn

    def dying_loss(*args):
        calls["n"] += 1
        if calls["n"] == at_step:
            raise KeyboardInterrupt
        return real_loss(*args)

    monkeypatch.setattr(train_mod, "loss_fn", dying_loss)
    with pytest.raises(KeyboardInterrupt):
        train_mod.train(cfg, run_dir, progress=False)
    monkeypatch.setattr(train_mod, "loss_fn", real_loss)


@pytest.fixture(autouse=True)
def _tracebacks(monkeypatch):
    """In tests an unexpected exception in the CLI raises (and fails the test) instead of
    becoming the one-line "internal error" users see."""
    monkeypatch.setenv("MECHLISTOPS_TRACEBACK", "1")


@pytest.fixture(autouse=True)
def _keep_threads():
    """The CLI sets torch's thread count (mechlistops.threads); tests call it in-process."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def assert_same_weights(a: dict, b: dict, atol=1e-5) -> None:
    """Two state dicts hold the same weights, to float rounding."""
    assert a.keys() == b.keys()
    for name, tensor in a.items():
        # b_K has an exactly zero gradient (softmax ignores a constant added to every score):
        # Adam turns float noise into updates of either sign; it changes no output.
        if not name.endswith("attn.b_K"):
            torch.testing.assert_close(b[name], tensor, atol=atol, rtol=1e-4, msg=name)


WIDE_ADAM_EPS = 1e-6


@pytest.fixture
def wide_adam_eps(monkeypatch):
    """AdamW's eps at 1e-6 in both trainers (`train.make_optimizer`'s torch AdamW and the
    ensemble's own update), for tests that hold an ensemble member to the same run trained
    alone. At the default 1e-8 a weight whose gradient cancels to about 1e-9 moves by
    lr * g / (|g| + eps), so a rounding difference of 1e-9 between the two trainers' kernels
    becomes a difference of a tenth of the learning rate, and grows: on one CPU (AMD EPYC) a
    30-step SUM+MAX member differed from its run alone by 8e-3 at eps 1e-8 and by 7e-7 at
    1e-6, the other members by 1e-7 at both. Both trainers take the same constant, so what is
    compared is still the same arithmetic (test_train checks that the default is torch's)."""
    import mechlistops.ensemble as ensemble
    import mechlistops.train as train_mod

    monkeypatch.setattr(ensemble, "ADAM_EPS", WIDE_ADAM_EPS)
    make = train_mod.make_optimizer

    def make_optimizer(model, t):
        opt = make(model, t)
        for group in opt.param_groups:
            group["eps"] = WIDE_ADAM_EPS
        return opt

    monkeypatch.setattr(train_mod, "make_optimizer", make_optimizer)
