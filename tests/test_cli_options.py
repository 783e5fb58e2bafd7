"""Options built from the config dataclasses: every knob is an option, off words map to the
field's off value, options not given keep the defaults, and sweeps leave out what they vary."""

from __future__ import annotations

import dataclasses

import pytest

from mechlistops.cli import build_parser
from mechlistops.cli.train import run_config_from_args
from mechlistops.config import DataConfig, ModelConfig, RunConfig, TrainConfig


def _options(command: str) -> set[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return {s for a in sub.choices[command]._actions for s in a.option_strings}


def _flag(f: dataclasses.Field) -> str:
    return "--" + f.metadata.get("flag", f.name.replace("_", "-"))


def _config(*argv: str) -> RunConfig:
    return run_config_from_args(build_parser().parse_args(["train", *argv]))


def test_every_knob_is_a_train_option_with_help():
    options = _options("train")
    for kind in (DataConfig, ModelConfig, TrainConfig):
        for f in dataclasses.fields(kind):
            assert f.metadata.get("help"), f.name
            if f.metadata.get("cli", True):
                assert _flag(f) in options, f.name
            else:
                assert _flag(f) not in options, f.name


def test_sweep_leaves_out_what_it_varies():
    options = _options("sweep")
    assert {"--ops", "--data-seed", "--seed"} & options == set()
    assert {"--mixture", "--d-model", "--seeds", "--lr", "--train-size"} <= options


def test_no_options_give_the_defaults():
    assert _config() == RunConfig()


@pytest.mark.parametrize(
    "argv, section, field, value",
    [
        (["--normalization", "none"], "model", "normalization", None),
        (["--normalization", "RMS"], "model", "normalization", "RMS"),
        (["--d-head", "auto"], "model", "d_head", None),
        (["--grad-clip", "0"], "train", "grad_clip", 0.0),
        (["--eval-size", "all"], "train", "eval_size", None),
        (["--eval-size", "300"], "train", "eval_size", 300),
        (["--weights", "equal"], "data", "weights", None),
        (["--no-log-checkpoints"], "train", "log_checkpoints", False),
        (["--cot"], "data", "chain_of_thought", True),
        (["--ops", "sum,max"], "data", "ops", ("SUM", "MAX")),
        (["--seed", "3"], "data", "seed", 3),  # the data seed follows --seed
        (["--seed", "3", "--data-seed", "5"], "data", "seed", 5),
        (["--eval-batch-size", "128"], "train", "eval_batch_size", 128),
    ],
)
def test_options_map_to_fields(argv, section, field, value):
    assert getattr(getattr(_config(*argv), section), field) == value
