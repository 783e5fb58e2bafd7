"""Sweeps: members are ordinary runs, equal to training them alone; reruns skip finished runs."""

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mechlistops import checkpoint as ckpt
from mechlistops import load_run
from mechlistops.cli import main
from mechlistops.data import make_test_sets
from mechlistops.errors import ConfigError
from mechlistops.evaluate import to_tensors
from mechlistops.launch import SlurmOptions
from mechlistops.sweep import (
    SweepConfig,
    finished_runs,
    load_sweep,
    open_sweep_dir,
    parse_seeds,
    plan_tasks,
    run_sweep,
)
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
    out = run_sweep(sweep, tmp_path / "sw", workers=2, progress=False).out
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
    with pytest.raises(ConfigError, match=r"different sweep \(d_models: \[8, 16\] there, \[8\]"):
        run_sweep(_sweep(d_models=(8,)), out, workers=1, progress=False)  # a part of it: no


def test_a_sweep_grows_by_seeds_and_sizes_and_keeps_what_it_trained(tmp_path, capsys):
    args = ["sweep", "--mixture", "MAX", "--d-model", "8", "--steps", "5", "--test-size", "50"]
    args += ["--eval-interval", "5", "--save-interval", "5", "--workers", "1", "--no-progress"]
    out = tmp_path / "sw"
    assert main([*args, "--seeds", "2-3", "--out", str(out)]) == 0
    assert json.loads((out / "sweep.json").read_text())["seeds"] == [2, 3]
    assert load_run(out / "max_d8_s3").config.train.seed == 3  # the seed is the run's seed
    trained = {p: p.stat().st_mtime_ns for p in out.glob("*/model.safetensors")}
    capsys.readouterr()
    grown = [*args[:4], "8,16", *args[5:], "--seeds", "0-3", "--out", str(out)]
    assert main(grown) == 0
    assert "the sweep grew from 2 to 8 runs" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == [
        f"max_d{d}_s{s}" for d in (16, 8) for s in range(4)
    ]
    assert trained == {p: p.stat().st_mtime_ns for p in trained}  # not trained again
    assert json.loads((out / "sweep.json").read_text())["seeds"] == 4  # 0..3: the old form
    assert [m.name for m in finished_runs([out])][:2] == ["max_d8_s0", "max_d8_s1"]
    # a grid that leaves part of it out, or another base, is refused with the difference
    assert main([*args, "--seeds", "0-4", "--lr", "0.002", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "base.train.lr: 0.003 there, 0.002 here" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    "text,seeds",
    [("3", (0, 1, 2)), ("5-7", (5, 6, 7)), ("0,3,8-9", (0, 3, 8, 9)), (" 4 ", (0, 1, 2, 3))],
)
def test_seeds_parse(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize(
    "text,message",
    [
        ("0", "runs 1..1,000 seeds"),
        ("4-2", "runs backwards"),
        ("1-", "expected N"),
        ("-3", "expected N"),
        ("a,b", "expected N"),
        ("0-5000", "at most 1,000 seeds"),
        ("3000000000-3000000001", "seeds are 0..2,147,483,647"),
    ],
)
def test_seeds_that_cannot_work_are_refused(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_seeds(text)
    with pytest.raises(ConfigError, match="seed once: 1 given twice"):
        _sweep(seeds=(1, 1))
    with pytest.raises(ConfigError, match="mixture once: MAX given twice"):
        _sweep(mixtures=(("MAX",), ("MAX",)))


def test_sweep_files_from_before_seed_lists_still_read(tmp_path):
    sweep = _sweep(seeds=2)
    (tmp_path / "sweep.json").write_text(json.dumps({**sweep.to_dict(), "seeds": 2}))
    assert load_sweep(tmp_path) == sweep and sweep.seeds == (0, 1)


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


def test_finished_runs_reads_runs_sweeps_and_folders_of_runs(tmp_path, tiny_run):
    sweep = _sweep(mixtures=(("MAX",),))
    out = run_sweep(sweep, tmp_path / "sw", workers=1, progress=False).out
    (out / "max_d8_s0" / "results.json").unlink()  # a member still training
    folder = tmp_path / "one_by_one"
    for name in ("b", "a"):
        shutil.copytree(tiny_run, folder / name)
    shutil.copytree(tiny_run, folder / "c")
    (folder / "c" / "results.json").unlink()
    (folder / "notes").mkdir()
    shutil.copytree(tiny_run, folder / "more" / "alone" / "d")  # a folder of folders of runs
    (folder / "more" / "loop").symlink_to(folder, target_is_directory=True)  # not followed
    shutil.copytree(out, folder / "more" / "sw")  # a sweep inside: its finished members
    assert finished_runs([out, folder, tiny_run]) == [
        out / "max_d16_s0",
        folder / "a",
        folder / "b",
        folder / "more" / "alone" / "d",
        folder / "more" / "sw" / "max_d16_s0",
        tiny_run,
    ]
    with pytest.raises(ConfigError, match="has not finished"):
        finished_runs([folder / "c"])
    with pytest.raises(ConfigError, match="no such run or folder"):
        finished_runs([tmp_path / "missing"])


def test_fourier_analysis_reads_a_folder_of_runs(tmp_path, tiny_run):
    folder = tmp_path / "runs"
    shutil.copytree(tiny_run, folder / "tiny")
    script = Path(__file__).resolve().parents[1] / "analyses" / "fourier.py"
    args = [sys.executable, str(script), str(tmp_path / "out"), str(folder), "--op", "MAX"]
    odd = tiny_config(data={"modulus": 11}, train={"steps": 20, "eval_interval": 20})
    train(odd, folder / "odd", progress=False)
    done = subprocess.run(args, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    table = (tmp_path / "out" / "fourier.md").read_text().splitlines()
    assert len(table) == 4 and all(row.startswith("| MAX |") for row in table[2:])
    mod10, mod11 = sorted(table[2:], key=lambda row: "mod 11" in row)
    assert float(mod10.split("|")[-2]) >= 0  # the readout's share at even k
    assert mod11.split("|")[-2].strip() == "-"  # mod 11 has no v -> v + n/2
    assert (tmp_path / "out" / "fourier.png").stat().st_size > 0
    missing = subprocess.run(args[:3] + [str(tmp_path / "nope")], capture_output=True, text=True)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        f"fourier: error: {tmp_path / 'nope'}: no such run or folder"
    ]


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
    args = ["transition", str(out), "--bootstrap", "10", "--threshold", "0.01"]
    assert main([*args, "--complexity", "smallest_0.9"]) == 2  # a threshold not asked for
    assert "smallest_0.9" in capsys.readouterr().err
    assert main([*args, "--complexity"]) == 0  # N* at the first threshold
    stdout = capsys.readouterr().out
    assert "MAX in MAX+MIN: proxy" in stdout and "fit: N* ~" in stdout
    saved = json.loads((out / "transitions_complexity.json").read_text())
    assert {p["task"] for p in saved["points"]} == {"MAX", "MAX+MIN"} and saved["fit"]["n"] == 3
    # the folder above the sweep: its finished runs read at any depth, the same transitions
    assert main(["transition", str(tmp_path), "--bootstrap", "10", "--json"]) == 0
    assert [r["n_runs"] for r in json.loads(capsys.readouterr().out)] == [8, 8, 8]
    assert main(["transition", str(tmp_path / "missing")]) == 2


def _final_weights(out):
    return {p.parent.name: load_file(p) for p in sorted(out.glob("*/model.safetensors"))}


def _assert_same_sweep(a, b):
    wa, wb = _final_weights(a), _final_weights(b)
    assert wa.keys() == wb.keys() and len(wa) == 4
    for run in wa:
        for name, tensor in wa[run].items():
            if not name.endswith("attn.b_K"):  # see test_sweep_members_are_runs_equal...
                torch.testing.assert_close(wb[run][name], tensor, atol=1e-5, rtol=1e-4)


def test_ensemble_engine_gives_the_runs_of_the_process_engine(tmp_path):
    sweep = _sweep()
    tasks = plan_tasks(sweep.members(), "ensemble")
    # one ensemble per size (both mixtures, all seeds); at most 1 model each: one per member
    assert sorted(len(t) for t in tasks) == [2, 2]
    assert len(plan_tasks(sweep.members(), "ensemble", max_models=1)) == 4
    assert all(len(t) == 1 for t in plan_tasks(sweep.members(), "auto"))  # CPU: processes
    run_sweep(sweep, tmp_path / "ens", workers=1, progress=False, engine="ensemble")
    run_sweep(sweep, tmp_path / "proc", workers=1, progress=False, engine="processes")
    _assert_same_sweep(tmp_path / "proc", tmp_path / "ens")
    with pytest.raises(ConfigError, match="engine"):
        run_sweep(sweep, tmp_path / "x", engine="gpu")
    with pytest.raises(ConfigError, match="launcher"):
        run_sweep(sweep, tmp_path / "x", launcher="pbs")
    with pytest.raises(ConfigError, match="max-models"):
        run_sweep(sweep, tmp_path / "x", max_models=-1)


def test_ray_launcher_gives_the_runs_of_the_local_launcher(tmp_path):
    ray = pytest.importorskip("ray")
    sweep = _sweep()
    run_sweep(sweep, tmp_path / "local", workers=1, progress=False, engine="ensemble")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        run_sweep(sweep, tmp_path / "ray", progress=False, engine="ensemble", launcher="ray")
        # a rerun finds every member finished and submits nothing
        before = {p: p.stat().st_mtime_ns for p in (tmp_path / "ray").glob("*/model.safetensors")}
        run_sweep(sweep, tmp_path / "ray", progress=False, launcher="ray")
        after = {p: p.stat().st_mtime_ns for p in (tmp_path / "ray").glob("*/model.safetensors")}
        assert before == after
    finally:
        ray.shutdown()
    _assert_same_sweep(tmp_path / "local", tmp_path / "ray")
    results = json.loads((tmp_path / "ray" / "max_d8_s0" / "results.json").read_text())
    assert results["step"] == 40 and load_run(tmp_path / "ray" / "max_d8_s0@40").step == 40


def test_ray_launcher_without_ray_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    args = ["sweep", "--mixture", "MAX", "--d-model", "8", "--seeds", "1", "--steps", "5"]
    code = main([*args, "--out", str(tmp_path / "sw"), "--launcher", "ray", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "pip install 'mechlistops[ray]'" in err and len(err.splitlines()) == 1


def test_workers_die_with_a_killed_sweep(tmp_path):
    """SIGKILL the sweep process: its worker processes must not train on, orphaned."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = f"""
from mechlistops.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from mechlistops.sweep import SweepConfig, run_sweep
base = RunConfig(DataConfig(ops=("MAX",), test_size=50), ModelConfig(n_layers=1, d_model=8,
    n_heads=2), TrainConfig(steps=100000, eval_interval=50000, save_interval=50000))
if __name__ == "__main__":
    run_sweep(SweepConfig((("MAX",),), (8, 16), 1, base), {str(tmp_path / "sw")!r}, workers=2,
              progress=False)
"""
    (tmp_path / "long_sweep.py").write_text(script)
    parent = subprocess.Popen([sys.executable, str(tmp_path / "long_sweep.py")])

    def workers() -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(parent.pid)], capture_output=True, text=True)
        pids = [int(p) for p in out.stdout.split()]
        return [p for p in pids if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()]

    deadline = time.time() + 60
    while len(workers()) < 2 and time.time() < deadline:
        time.sleep(0.5)
    children = workers()
    assert len(children) == 2
    time.sleep(3)  # let them import and start training
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 20
    alive = children
    while alive and time.time() < deadline:
        time.sleep(0.5)
        alive = [
            p
            for p in children
            if Path(f"/proc/{p}").exists() and Path(f"/proc/{p}/stat").read_text().split()[2] != "Z"
        ]
    for p in alive:  # a failing run must not leave them training
        os.kill(p, signal.SIGKILL)
    assert not alive, f"workers {alive} outlived their sweep"


def test_a_failing_member_does_not_stop_the_sweep(tmp_path, capsys):
    """One member cannot start (its directory holds something that is not a run): the others
    finish, the failure is listed with its reason, the exit status says so, `transition`
    names the missing member, and a rerun retries only the failed one."""
    out = tmp_path / "sw"
    argv = ["sweep", "--mixture", "MAX", "--d-model", "8,16", "--seeds", "1", "--steps", "20"]
    argv += ["--eval-interval", "10", "--n-layers", "1", "--test-size", "50", "--no-progress"]
    argv += ["--workers", "2", "--out", str(out)]
    assert main([a.replace("8,16", "16") for a in argv]) == 0  # the sweep, one size of two
    (out / "max_d8_s0").mkdir()
    (out / "max_d8_s0" / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert main(argv) == 1  # grown to both sizes
    printed = capsys.readouterr().out
    assert "1 of 2 runs failed" in printed and "max_d8_s0: " in printed and "not empty" in printed
    assert json.loads((out / "failures.json").read_text()).keys() == {"max_d8_s0"}
    assert (out / "max_d16_s0" / "results.json").is_file()
    assert (out / "max_d8_s0" / "notes.txt").read_text() == "mine"  # left as it was

    assert main(["transition", str(out), "--bootstrap", "10"]) == 0
    assert "1 runs missing" in capsys.readouterr().out

    done = (out / "max_d16_s0" / "model.safetensors").stat().st_mtime_ns
    (out / "max_d8_s0" / "notes.txt").unlink()
    assert main(argv) == 0
    assert (out / "max_d8_s0" / "results.json").is_file() and not (out / "failures.json").exists()
    assert (out / "max_d16_s0" / "model.safetensors").stat().st_mtime_ns == done  # not retrained

    (out / "max_d16_s0" / "results.json").write_text("{ damaged")  # listed, not a crash
    assert main(argv) == 1
    assert "max_d16_s0: " in capsys.readouterr().out
    assert "corrupted JSON" in json.loads((out / "failures.json").read_text())["max_d16_s0"]


def test_a_diverging_member_is_reported_and_the_sweep_goes_on(tmp_path):
    sweep = _sweep(
        mixtures=(("MAX",),),
        base=tiny_config(train={"steps": 40, "eval_interval": 20, "lr": 1e6, "grad_clip": 0}),
    )
    outcome = run_sweep(sweep, tmp_path / "sw", workers=1, progress=False)
    assert not outcome.failed
    assert set(outcome.diverged) == {"max_d8_s0", "max_d16_s0"}
    assert all(r.startswith("diverged") for r in outcome.diverged.values())


def test_slurm_launcher_gives_the_runs_of_the_local_launcher(tmp_path, capsys):
    """An array job through submitit's local executor (no cluster here): same run directories
    and weights as the local launcher; a failing array task is listed, not fatal."""
    pytest.importorskip("submitit")
    sweep = _sweep()
    run_sweep(sweep, tmp_path / "local", workers=1, progress=False)
    open_sweep_dir(sweep, tmp_path / "slurm")  # the sweep's folder, then a member in the way
    (tmp_path / "slurm" / "max_d16_s0").mkdir()
    (tmp_path / "slurm" / "max_d16_s0" / "x").write_text("in the way")
    options = SlurmOptions(executor="local", time_min=10)
    outcome = run_sweep(sweep, tmp_path / "slurm", progress=False, launcher="slurm", slurm=options)
    assert set(outcome.failed) == {"max_d16_s0"} and "not empty" in outcome.failed["max_d16_s0"]
    (tmp_path / "slurm" / "max_d16_s0" / "x").unlink()
    outcome = run_sweep(sweep, tmp_path / "slurm", progress=False, launcher="slurm", slurm=options)
    assert not outcome.failed
    _assert_same_sweep(tmp_path / "local", tmp_path / "slurm")
    assert list((tmp_path / "slurm" / "slurm").glob("*/*_log.out"))  # the tasks' logs


def test_slurm_launcher_without_a_cluster_refuses_before_writing(tmp_path, capsys):
    args = ["sweep", "--mixture", "MAX", "--d-model", "8", "--seeds", "1", "--steps", "5"]
    code = main([*args, "--out", str(tmp_path / "sw"), "--launcher", "slurm", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "no SLURM here" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "sw").exists()


def _tensors(path):
    return load_file(str(path / "model.safetensors"))


def test_a_branched_sweep_ends_as_the_sweep_trained_so_from_the_start(tmp_path, capsys):
    common = ["--mixture", "MAX", "--d-model", "8", "--seeds", "2", "--max-depth", "2"]
    common += ["--n-layers", "1", "--test-size", "100", "--eval-interval", "10"]
    common += ["--save-interval", "10", "--schedule", "wsd", "--warmup-steps", "5"]
    common += ["--workers", "1", "--no-progress"]
    trunk, out = tmp_path / "trunk", tmp_path / "branch"
    assert main(["sweep", *common, "--steps", "40", "--decay-steps", "10", "--keep-states",
                 "--out", str(trunk)]) == 0  # fmt: skip
    before = sorted((p, p.stat().st_mtime_ns) for p in trunk.rglob("*"))
    bad = [
        ([f"{trunk}@x"], "expected SWEEP@STEP"),
        ([f"{trunk}@15"], "no resume state kept at step 15 in 2 of 2 members"),
        ([f"{tmp_path}/none@10"], "not a sweep directory"),
        ([f"{trunk}@20", "--steps", "20"], "max_d8_s0: branch point 20 is not before"),
        ([f"{trunk}@20", "--steps", "60", "--lr", "0.01"], "cannot change train.lr"),
        ([f"{trunk}@20", "--steps", "60", "--d-model", "16"], "has no member max_d16_s0"),
        ([f"{trunk}@20", "--search", "bisect"], "cannot --branch-from"),
    ]
    for extra, message in bad:
        code = main(["sweep", "--branch-from", *extra, "--out", str(out), "--no-progress"])
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and message in err, err
    assert not out.exists()
    assert sorted((p, p.stat().st_mtime_ns) for p in trunk.rglob("*")) == before
    longer = ["--steps", "60", "--decay-steps", "20"]
    branched = ["sweep", "--branch-from", f"{trunk}@30", *longer, "--no-keep-states"]
    branched += ["--workers", "1"]
    assert main([*branched, "--no-progress", "--out", str(out)]) == 0
    assert main([*branched, "--no-progress", "--out", str(out)]) == 0  # a rerun: nothing to do
    assert "2 runs in" in capsys.readouterr().out
    scratch = tmp_path / "scratch"
    assert main(["sweep", *common, *longer, "--out", str(scratch)]) == 0
    assert load_sweep(out) == load_sweep(scratch)  # the parent's grid, the options given
    for name in ("max_d8_s0", "max_d8_s1"):
        got, want = _tensors(out / name), _tensors(scratch / name)
        assert got.keys() == want.keys()
        assert all(torch.equal(got[k], want[k]) for k in got), name
        records = [ckpt.read_metrics(d / name) for d in (out, scratch)]
        for record in records[0] + records[1]:
            del record["elapsed_s"]  # wall-clock time, the one field that may differ
        assert records[0] == records[1]
        assert json.loads((out / name / "config.json").read_text())["branch"]["step"] == 30
    part = tmp_path / "part"  # part of the grid: one seed
    assert main([*branched, "--seeds", "1-1", "--no-progress", "--out", str(part)]) == 0
    assert sorted(p.name for p in part.iterdir() if p.is_dir()) == ["max_d8_s1"]
