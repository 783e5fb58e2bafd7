"""Sweeps: members are ordinary runs, equal to training them alone; reruns skip finished runs."""

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from mechlistops import load_run
from mechlistops.cli import main
from mechlistops.data import make_test_sets
from mechlistops.errors import ConfigError
from mechlistops.evaluate import to_tensors
from mechlistops.sweep import SweepConfig, run_sweep
from mechlistops.train import train
from tests.conftest import tiny_config


def _sweep(**over):
    base = tiny_config(train={"steps": 40, "eval_interval": 40, "save_interval": 40})
    return SweepConfig(
        **{
            "mixtures": (("MAX",), ("MAX", "MIN")),
            "d_models": (8, 16),
            "seeds": 1,
            "base": base,
            **over,
        }
    )


def test_sweep_members_are_runs_equal_to_training_alone(tmp_path):
    sweep = _sweep()
    out = run_sweep(sweep, tmp_path / "sw", workers=2, progress=False)
    names = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert names == ["max+min_d16_s0", "max+min_d8_s0", "max_d16_s0", "max_d8_s0"]
    member = sweep.members()[1]
    assert member.name == "max_d16_s0"
    alone = train(member.config, tmp_path / "alone", progress=False)
    loaded = load_run(out / member.name)
    # b_K has an exactly zero gradient (softmax ignores a constant added to every score), so
    # Adam turns float noise into updates that differ between 1 and 2 threads; it has no
    # effect on the function. Everything else, and the logits, must agree.
    for name, tensor in alone.model.state_dict().items():
        if not name.endswith("attn.b_K"):
            torch.testing.assert_close(
                loaded.model.state_dict()[name], tensor, atol=1e-5, rtol=1e-4, msg=name
            )
    tokens, _, _ = to_tensors(make_test_sets(member.config.data)["MAX"], "cpu")
    torch.testing.assert_close(loaded.model(tokens), alone.model(tokens), atol=1e-4, rtol=1e-4)

    before = {p: p.stat().st_mtime_ns for p in out.glob("*/model.safetensors")}
    run_sweep(sweep, out, workers=1, progress=False)  # everything finished: nothing retrains
    assert before == {p: p.stat().st_mtime_ns for p in out.glob("*/model.safetensors")}
    with pytest.raises(ConfigError, match="different sweep"):
        run_sweep(_sweep(seeds=2), out, workers=1, progress=False)


def test_interrupted_member_resumes(tmp_path):
    sweep = _sweep(mixtures=(("MAX",),), d_models=(8,))
    member = sweep.members()[0]
    cut = dataclasses.replace(
        member.config, train=dataclasses.replace(member.config.train, save_interval=20)
    )
    sweep = dataclasses.replace(sweep, base=dataclasses.replace(sweep.base, train=cut.train))
    out = tmp_path / "sw"
    run_sweep(sweep, out, workers=1, progress=False)
    ref = load_file(out / member.name / "model.safetensors")
    # pretend the run was killed after its step-20 state: drop the end, keep the state
    (out / member.name / "results.json").unlink()
    (out / member.name / "model.safetensors").unlink()
    run_sweep(sweep, out, workers=1, progress=False)  # restarts that member from step 0 state
    again = load_file(out / member.name / "model.safetensors")
    for name in ref:
        torch.testing.assert_close(again[name], ref[name], atol=1e-6, rtol=1e-6)


def test_sizes_that_do_not_divide_fail_before_training(tmp_path):
    with pytest.raises(ConfigError, match="d_model=9"):
        _sweep(d_models=(8, 9))


def test_sweep_and_transition_cli(tmp_path, capsys):
    out = tmp_path / "sw"
    code = main(
        [
            "sweep",
            "--mixture",
            "MAX",
            "--mixture",
            "MAX,MIN",
            "--d-model",
            "4,8,12,16",
            "--seeds",
            "2",
            "--steps",
            "30",
            "--max-depth",
            "2",
            "--test-size",
            "100",
            "--n-layers",
            "1",
            "--n-heads",
            "2",
            "--eval-interval",
            "30",
            "--workers",
            "1",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert code == 0 and len(list(out.glob("*/results.json"))) == 2 * 4 * 2
    capsys.readouterr()
    code = main(["transition", str(out), "--bootstrap", "30"])
    stdout = capsys.readouterr().out
    assert code == 0 and "MAX in MAX+MIN" in stdout and "N* sigmoid midpoint" in stdout
    rows = json.loads((out / "transitions.json").read_text())
    assert {(r["op"], r["mixture"]) for r in rows} == {
        ("MAX", "MAX"),
        ("MAX", "MAX+MIN"),
        ("MIN", "MAX+MIN"),
    }
    assert (out / "transitions.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["transition", str(out), "--bootstrap", "10", "--heldout", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["n_runs"] == 8
    code = main(["transition", str(tmp_path)])
    assert code == 2
