"""Like-for-like budgets and stopping rules: the step arithmetic of a budget, runs that stop
when converged (alone and inside an ensemble, where a stopped member equals the same run
stopped alone), and reading a sweep at a step or at a count of training examples."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from mechlistops.checkpoint import read_metrics
from mechlistops.config import DataConfig, RunConfig, TrainConfig
from mechlistops.ensemble import train_ensemble
from mechlistops.errors import ConfigError
from mechlistops.sweep import SweepConfig, run_sweep
from mechlistops.train import StopRule, train
from mechlistops.transition import accuracies_at
from tests.conftest import assert_same_weights, tiny_config, train_interrupted


def _budget(ops, n, weights=None, batch_size=256) -> int:
    cfg = RunConfig(
        DataConfig(ops=ops, weights=weights),
        train=TrainConfig(batch_size=batch_size, budget_op="SUM", budget_examples=n),
    )
    return cfg.train.steps


def test_budget_steps_follow_the_mixture():
    assert _budget(("SUM",), 256_000) == 1000
    assert _budget(("SUM", "MAX", "MED"), 256_000) == 3000  # SUM is a third of the rows
    assert _budget(("SUM", "MAX", "MED"), 256_000, weights=(2, 1, 1)) == 2000
    assert _budget(("SUM",), 1000) == 4  # rounded up: at least N examples expected
    again = RunConfig.from_dict(
        RunConfig(
            DataConfig(ops=("SUM", "MAX")), train=TrainConfig(budget_op="SUM", budget_examples=5120)
        ).to_dict()
    )
    assert again.train.steps == 40 and again.train.budget_examples == 5120


@pytest.mark.parametrize(
    "ops, weights, train, fragment",
    [
        (("MAX",), None, {"budget_op": "SUM", "budget_examples": 100}, "not in the mixture"),
        (("SUM", "MAX"), (0, 1), {"budget_op": "SUM", "budget_examples": 100}, "weight 0"),
        (("SUM",), None, {"budget_op": "SUM"}, "must be given together"),
        (("SUM",), None, {"budget_op": "SUM", "budget_examples": 10**15}, "needs"),
    ],
)
def test_impossible_budgets_are_config_errors(ops, weights, train, fragment):
    with pytest.raises(ConfigError, match=fragment):
        RunConfig(DataConfig(ops=ops, weights=weights), train=TrainConfig(**train))


def test_a_sweep_gives_each_mixture_its_own_budget_steps():
    base = RunConfig(train=TrainConfig(budget_op="SUM", budget_examples=25_600))
    sweep = SweepConfig((("SUM",), ("SUM", "MAX", "MED")), (8,), 1, base)
    steps = {m.name: m.config.train.steps for m in sweep.members()}
    assert steps == {"sum_d8_s0": 100, "sum+max+med_d8_s0": 300}


STOP = {"steps": 60, "eval_interval": 10, "save_interval": 10, "warmup_steps": 5}


def test_a_run_stops_at_its_accuracy_threshold(tmp_path):
    cfg = tiny_config(train={**STOP, "steps": 300, "stop_accuracy": 0.9})
    train(cfg, tmp_path / "run", progress=False)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["stopped"]["step"] == results["step"] < 300
    assert all(r["accuracy"] >= 0.9 for r in results["results"].values())
    metrics = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").open()]
    assert metrics[-1]["step"] == results["step"] and "stop" in metrics[-1]


def test_patience_stops_and_survives_a_resume(tmp_path, monkeypatch):
    # delta 1.0 cannot be met: the second evaluation is one without improvement.
    cfg = tiny_config(train={**STOP, "stop_patience": 2, "stop_delta": 1.0})
    ref = json.loads(
        (train(cfg, tmp_path / "ref", progress=False).run_dir / "results.json").read_text()
    )
    assert ref["stopped"]["step"] == 30 and "did not improve" in ref["stopped"]["reason"]
    rule, fired = StopRule(cfg.train), None  # replayed on the saved metrics: the same step
    for record in read_metrics(tmp_path / "ref"):
        if rule.update(record["eval"]) and fired is None:
            fired = record["step"]
    assert fired == 30
    train_interrupted(monkeypatch, cfg, tmp_path / "cut", at_step=25)
    train(cfg, tmp_path / "cut", resume=True, progress=False)
    cut = json.loads((tmp_path / "cut" / "results.json").read_text())
    assert cut["stopped"] == ref["stopped"]


# compiled: members leave a compiled step (each leaving recompiles it: slow on CPU)
@pytest.mark.usefixtures("wide_adam_eps")  # members held to runs alone
@pytest.mark.parametrize("compile", ["off", pytest.param("default", marks=pytest.mark.slow)])
def test_a_stopped_ensemble_member_equals_the_run_stopped_alone(tmp_path, compile):
    stopping = tiny_config(train={**STOP, "stop_patience": 2, "stop_delta": 1.0})
    going_on = tiny_config(data={"ops": ("SUM", "MAX"), "seed": 1}, train={**STOP, "seed": 1})
    middle = tiny_config(train={**STOP, "seed": 2, "stop_patience": 4, "stop_delta": 1.0})
    cfgs = [stopping, going_on, middle]
    members = [(c, tmp_path / f"ens{k}") for k, c in enumerate(cfgs)]
    train_ensemble(members, progress=False, compile=compile)
    for k, cfg in enumerate(cfgs):
        train(cfg, tmp_path / f"alone{k}", progress=False)
        a = json.loads((tmp_path / f"alone{k}" / "results.json").read_text())
        e = json.loads((tmp_path / f"ens{k}" / "results.json").read_text())
        assert e["step"] == a["step"] and e["stopped"] == a["stopped"]
        assert_same_weights(
            load_file(tmp_path / f"alone{k}" / "model.safetensors"),
            load_file(tmp_path / f"ens{k}" / "model.safetensors"),
        )
    steps = [
        json.loads((tmp_path / f"ens{k}" / "results.json").read_text())["step"] for k in range(3)
    ]
    assert steps == [30, 60, 50]


def test_a_sweep_reads_at_a_step_and_at_a_count_of_examples(tmp_path):
    base = tiny_config(data={"tree": "single", "test_size": 100}, train=STOP)
    sweep = SweepConfig((("SUM",), ("SUM", "MAX")), (16,), 1, base)
    run_sweep(sweep, tmp_path, workers=1, progress=False)
    at20 = accuracies_at(tmp_path, step=20)
    assert set(at20.step) == {20}
    per_op = accuracies_at(tmp_path, examples=("SUM", 64 * 20))
    sum_rows = per_op[per_op.op == "SUM"].set_index("mixture")
    assert sum_rows.loc["SUM", "step"] == 20  # alone: every row is SUM
    assert sum_rows.loc["SUM+MAX", "step"] in (40, 50)  # about half the rows are SUM
    assert (sum_rows.examples_seen >= 64 * 20).all()
    final = accuracies_at(tmp_path)
    assert set(final.step) == {60}
    assert accuracies_at(tmp_path, examples=("SUM", 10**9)).empty  # never reached


DIVERGE = {"lr": 50.0, "grad_clip": 0.0, "warmup_steps": 0}


def test_a_diverged_run_stops_with_its_reason_and_no_traceback(tmp_path, capsys):
    from mechlistops.cli import main

    out = tmp_path / "div"
    argv = ["train", "--ops", "MAX", "--d-model", "16", "--steps", "200", "--lr", "50"]
    argv += ["--grad-clip", "0", "--warmup-steps", "0", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert results["stopped"]["reason"].startswith("diverged") and results["step"] < 200
    assert f"stopped at step {results['step']}: diverged" in printed
    assert (out / "training.png").is_file()  # the curves plot without a finite loss
    assert main(["geometry", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the run diverged" in err[0]


@pytest.mark.usefixtures("wide_adam_eps")  # members held to runs alone
def test_a_diverging_ensemble_member_leaves_and_the_others_go_on(tmp_path):
    calm = tiny_config(train=STOP)
    wild = tiny_config(train={**STOP, **DIVERGE, "seed": 1})
    train_ensemble([(calm, tmp_path / "e0"), (wild, tmp_path / "e1")], progress=False)
    train(calm, tmp_path / "alone", progress=False)
    wild_results = json.loads((tmp_path / "e1" / "results.json").read_text())
    assert wild_results["stopped"]["reason"].startswith("diverged")
    assert json.loads((tmp_path / "e0" / "results.json").read_text())["step"] == 60
    assert_same_weights(
        load_file(tmp_path / "alone" / "model.safetensors"),
        load_file(tmp_path / "e0" / "model.safetensors"),
    )


def _metrics_without_clocks(run_dir) -> str:
    lines = read_metrics(run_dir)
    for line in lines:
        line.pop("elapsed_s", None)
    return json.dumps(lines)  # NaN as text: equal to itself


def test_a_run_diverging_between_bookings_stops_where_its_loss_first_went_non_finite(
    tmp_path, monkeypatch
):
    import mechlistops.train as train_module

    wild = tiny_config(train={**STOP, **DIVERGE, "seed": 1})
    assert train_module.READ_AHEAD > 1  # steps are booked several at a time
    train_ensemble([(tiny_config(train=STOP), tmp_path / "e0"), (wild, tmp_path / "e1")], False)
    train(wild, tmp_path / "later", progress=False)
    monkeypatch.setattr(train_module, "READ_AHEAD", 1)  # every step booked before the next
    train(wild, tmp_path / "at-once", progress=False)
    stopped = json.loads((tmp_path / "at-once" / "results.json").read_text())["stopped"]
    assert stopped["reason"].startswith("diverged")
    assert stopped["step"] % STOP["eval_interval"] != 0  # between evaluations, not at a booking
    for run in ("later", "e1"):  # the ensemble member too, which took steps after it
        assert json.loads((tmp_path / run / "results.json").read_text())["stopped"] == stopped
    # booked later, the lone run's record is the same to the last digit
    assert _metrics_without_clocks(tmp_path / "later") == _metrics_without_clocks(
        tmp_path / "at-once"
    )
    steps = [m["step"] for m in read_metrics(tmp_path / "e1")]
    assert steps == [m["step"] for m in read_metrics(tmp_path / "at-once")]
