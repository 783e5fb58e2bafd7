"""Training: it learns, checkpoints round-trip, interrupted runs resume to the same weights."""

import dataclasses
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformer_lens import HookedTransformer, HookedTransformerConfig

from mechlistops import checkpoint as ckpt
from mechlistops import load_run
from mechlistops.atomic import atomic_write, write_json
from mechlistops.data import make_test_sets
from mechlistops.errors import CheckpointError, ConfigError
from mechlistops.evaluate import evaluate_sets, to_tensors
from mechlistops.train import branch, lr_at, snapshot_steps, train
from tests.conftest import tiny_config, train_interrupted


def test_smoke_run_learns_max(tiny_run):
    results = json.loads((tiny_run / "results.json").read_text())["results"]
    assert results["MAX"]["accuracy"] > 0.9 > 2 * results["MAX"]["baseline"]
    lines = (tiny_run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [100, 200, 300]
    first = json.loads(lines[0])["eval"]["MAX"]["accuracy"]
    assert results["MAX"]["accuracy"] > first or first > 0.9


def test_run_directory_is_self_describing(tiny_run):
    raw = json.loads((tiny_run / "config.json").read_text())
    assert {"data", "model", "train", "hooked_transformer_config", "provenance"} <= set(raw)
    assert raw["provenance"]["versions"]["torch"]
    # where it finished: what sets its rounding (a seed matches bit for bit only there)
    platform = json.loads((tiny_run / "results.json").read_text())["platform"]
    assert platform["torch"] == torch.__version__ and platform["device"] == "cpu"
    assert platform["threads"] >= 1 and platform["cpu_capability"]
    assert json.loads((tiny_run / "vocab.json").read_text())["tokens"][:3] == ["0", "1", "2"]
    assert ckpt.saved_steps(tiny_run) == [0, 1, 2, 4, 8, 16, 32, 64, 100, 128, 200, 256, 300]
    assert not (tiny_run / "state.safetensors").exists()  # finished runs drop resume state
    assert not list(tiny_run.rglob("*.tmp"))
    # nothing pickled: every weights file is safetensors
    for path in tiny_run.rglob("*"):
        assert path.suffix in {".json", ".jsonl", ".safetensors", ""}, path


def test_plain_hooked_transformer_loads_the_checkpoint(tiny_run):
    raw = json.loads((tiny_run / "config.json").read_text())
    model = HookedTransformer(HookedTransformerConfig(**raw["hooked_transformer_config"]))
    model.load_state_dict(load_file(tiny_run / "model.safetensors"))
    loaded, cfg, vocab = load_run(tiny_run)
    tokens, _, _ = to_tensors(make_test_sets(cfg.data)["MAX"], "cpu")
    torch.testing.assert_close(model(tokens), loaded(tokens), atol=0, rtol=0)


def test_save_load_gives_identical_logits(tmp_path):
    cfg = tiny_config(
        train={"steps": 30, "eval_interval": 30, "save_interval": 30},
        model={"n_layers": 2, "looped": True},
    )
    result = train(cfg, tmp_path / "run", progress=False)
    loaded = load_run(tmp_path / "run")
    tokens, _, _ = to_tensors(make_test_sets(cfg.data)["MAX"], "cpu")
    assert torch.equal(result.model(tokens), loaded.model(tokens))
    assert loaded.model.blocks[1].attn.W_Q is loaded.model.blocks[0].attn.W_Q
    at_16 = load_run(f"{tmp_path / 'run'}@16")
    assert at_16.step == 16 and not torch.equal(at_16.model.W_E, loaded.model.W_E)


def _weights(run_dir):
    return load_file(run_dir / "model.safetensors")


def test_interrupted_run_resumes_to_identical_weights(tmp_path, monkeypatch):
    cfg = tiny_config(train={"steps": 120, "save_interval": 40, "eval_interval": 40})
    ref = train(cfg, tmp_path / "ref", progress=False)

    train_interrupted(monkeypatch, cfg, tmp_path / "cut", at_step=95)  # between 80 and 120
    assert not (tmp_path / "cut" / "model.safetensors").exists()
    resumed = train(cfg, tmp_path / "cut", resume=True, progress=False)
    for name, tensor in _weights(tmp_path / "ref").items():
        assert torch.equal(tensor, _weights(tmp_path / "cut")[name]), name
    assert resumed.results["MAX"].accuracy == ref.results["MAX"].accuracy
    steps = [json.loads(x)["step"] for x in (tmp_path / "cut" / "metrics.jsonl").open()]
    assert steps == [40, 80, 120]
    # the training curve too: every window's loss and accuracy, across the interruption
    curve = [json.loads(x)["train_curve"] for x in (tmp_path / "ref" / "metrics.jsonl").open()]
    again = [json.loads(x)["train_curve"] for x in (tmp_path / "cut" / "metrics.jsonl").open()]
    assert curve == again


def test_a_run_with_no_held_out_expressions_keeps_its_evaluations(tmp_path, monkeypatch):
    """Flat trees only: no test expression is guaranteed absent from training, so each
    evaluation's accuracy_heldout is null. Those evaluations are still the run's: its
    curves plot, and a resume keeps the ones before its checkpoint."""
    from mechlistops.plots import plot_training

    cfg = tiny_config(
        data={"branch_prob": 0.0},
        train={"steps": 120, "save_interval": 40, "eval_interval": 40},
    )
    train_interrupted(monkeypatch, cfg, tmp_path / "cut", at_step=95)
    records = ckpt.read_metrics(tmp_path / "cut")
    assert [r["step"] for r in records] == [40, 80]
    assert records[0]["eval"]["MAX"]["accuracy_heldout"] is None
    result = train(cfg, tmp_path / "cut", resume=True, progress=False)
    assert result.results["MAX"].n_heldout == 0
    assert [r["step"] for r in ckpt.read_metrics(tmp_path / "cut")] == [40, 80, 120]
    assert plot_training(tmp_path / "cut").is_file()


def test_a_short_run_has_a_dense_training_curve(tiny_run):
    """300 steps, 3 evaluations: about 250 points of training loss and batch accuracy."""
    from mechlistops.plots import training_curve

    records = [json.loads(x) for x in (tiny_run / "metrics.jsonl").open()]
    assert [r["step"] for r in records] == [100, 200, 300]
    points = [p for r in records for p in r["train_curve"]]
    assert [p[0] for p in points] == list(range(1, 301))  # 300 // 250 = 1: every step
    assert all(p[1] > 0 and 0 <= p[2] <= 1 for p in points)
    first = records[0]  # each line's train_loss is the mean of its window's points
    assert first["train_loss"] == pytest.approx(
        sum(p[1] for p in first["train_curve"]) / 100, rel=1e-4
    )
    curve = training_curve(tiny_run)
    assert len(curve) == 300 and curve.train_accuracy.notna().all()


def test_killed_process_resumes_to_identical_weights(tmp_path):
    """SIGKILL a real training process at an arbitrary moment (possibly mid-write), resume."""
    args = [
        "--ops",
        "MAX",
        "--max-depth",
        "2",
        "--test-size",
        "200",
        "--n-layers",
        "1",
        "--d-model",
        "32",
        "--n-heads",
        "2",
        "--steps",
        "400",
        "--batch-size",
        "64",
        "--lr",
        "3e-3",
        "--eval-interval",
        "100",
        "--save-interval",
        "25",
        "--device",
        "cpu",
        "--threads",  # bit for bit needs the same count ("auto" follows the machine's load)
        "1",
        "--no-progress",
        "--no-report",
    ]
    cmd = [sys.executable, "-m", "mechlistops.cli", "train", *args]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    subprocess.run([*cmd, "--out", str(tmp_path / "ref")], check=True, env=env, capture_output=True)
    proc = subprocess.Popen(
        [*cmd, "--out", str(tmp_path / "cut")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while not (tmp_path / "cut" / "state.safetensors").exists() and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if (tmp_path / "cut" / "results.json").exists():
        pytest.skip("the run finished before it could be killed")
    resume = [
        sys.executable,
        "-m",
        "mechlistops.cli",
        "train",
        "--resume",
        str(tmp_path / "cut"),
        "--threads",
        "1",
        "--no-progress",
        "--no-report",
    ]
    done = subprocess.run(resume, check=True, env=env, capture_output=True, text=True)
    assert "1 CPU thread " in done.stdout and "resumes with" not in done.stderr
    ref, cut = _weights(tmp_path / "ref"), _weights(tmp_path / "cut")
    for name in ref:
        assert torch.equal(ref[name], cut[name]), name


def test_resume_with_another_thread_count_says_it_rounds_differently(tmp_path, monkeypatch, caplog):
    cfg = tiny_config(train={"steps": 60, "save_interval": 20, "eval_interval": 20})
    torch.set_num_threads(1)  # conftest restores the count
    train_interrupted(monkeypatch, cfg, tmp_path / "cut", at_step=30)
    torch.set_num_threads(2)
    with caplog.at_level(logging.WARNING, logger="mechlistops"):
        train(cfg, tmp_path / "cut", resume=True, progress=False)
    assert "trained with 1 CPU threads and resumes with 2 CPU threads" in caplog.text
    assert "(--threads 1 to match)" in caplog.text


def test_resume_on_other_cpu_kernels_says_how_to_match(tmp_path, monkeypatch, caplog):
    cfg = tiny_config(train={"steps": 60, "save_interval": 20, "eval_interval": 20})
    with monkeypatch.context() as m:
        m.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
        train_interrupted(monkeypatch, cfg, tmp_path / "cut", at_step=30)
    with caplog.at_level(logging.WARNING, logger="mechlistops"):
        train(cfg, tmp_path / "cut", resume=True, progress=False)
    now = torch.backends.cpu.get_cpu_capability()
    if now == "AVX2":
        assert "resumes with" not in caplog.text
    else:
        assert f"trained with AVX2 kernels and resumes with {now} kernels" in caplog.text
        assert "(ATEN_CPU_CAPABILITY=avx2 where the CPU has them to match)" in caplog.text


def test_a_platform_change_names_what_differs_and_ignores_what_is_unreadable():
    now = {"torch": "2.13.0", "device": "cpu", "cpu_capability": "AVX512", "threads": 2}
    assert ckpt.platform_change(dict(now), now) is None
    assert ckpt.platform_change({"threads": None}, now) is None  # an old state without the count
    for hostile in (None, [], "AVX2", {"threads": True}, {"threads": [1]}, {"torch": {}}):
        assert ckpt.platform_change(hostile, now) is None
    was, is_, match = ckpt.platform_change({**now, "torch": "2.12.0", "threads": 1}, now)
    assert (was, is_, match) == (
        "torch 2.12.0, 1 CPU threads",
        "torch 2.13.0, 2 CPU threads",
        "--threads 1",
    )
    assert ckpt.platform_change({"gpu": "H100"}, now)[1] == "no gpu"
    on_gpu = {"torch": "2.13.0", "device": "cuda", "gpu": "NVIDIA H100 80GB HBM3"}
    assert ckpt.platform_change(on_gpu, now) == ("device cuda", "device cpu", "--device cuda")


def test_atomic_write_leaves_old_file_when_interrupted(tmp_path):
    path = tmp_path / "f.json"
    write_json(path, {"a": 1})

    def half_then_die(tmp):
        with open(tmp, "w") as f:
            f.write('{"a": 2, "b"')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, half_then_die)
    assert json.loads(path.read_text()) == {"a": 1}
    assert os.listdir(tmp_path) == ["f.json"]


def test_resume_ignores_leftover_temp_files(tmp_path):
    cfg = tiny_config(train={"steps": 60, "save_interval": 20, "eval_interval": 20})
    run = tmp_path / "run"
    train(cfg, run, progress=False)
    (run / "results.json").unlink()
    (run / "model.safetensors").unlink()
    ckpt.step_path(run, 40).rename(run / ".state.safetensors.abc.tmp")
    # state.safetensors was removed at the end; rebuild the situation "killed after step 40"
    with pytest.raises(CheckpointError):
        load_run(run)
    resumed = train(cfg, run, resume=True, progress=False)  # no state: restart from step 0
    assert resumed.results["MAX"].n == 200


def test_curriculum_and_transfer(tmp_path):
    pre = tiny_config(
        data={"ops": ("SUM",)},
        train={
            "steps": 40,
            "pretrain_ops": ("MAX",),
            "pretrain_steps": 40,
            "eval_interval": 20,
            "save_interval": 40,
        },
    )
    result = train(pre, tmp_path / "pre", progress=False)
    assert set(result.results) == {"SUM", "MAX", "mixture"}
    phases = [json.loads(x)["phase"] for x in (tmp_path / "pre" / "metrics.jsonl").open()]
    assert phases == [0, 0, 1, 1]

    source = load_run(tmp_path / "pre").model
    for mode, same in [("embed", {"embed.W_E"}), ("no-embed", None), ("all", None)]:
        cfg = tiny_config(
            train={"steps": 1, "init_from": str(tmp_path / "pre"), "transfer": mode, "seed": 5}
        )
        train(cfg, tmp_path / mode, progress=False)
        start = load_file(ckpt.step_path(tmp_path / mode, 0))
        for name, tensor in source.state_dict().items():
            copied = torch.equal(start[name], tensor)
            if mode == "all":
                assert copied, name
            elif mode == "embed" and name.endswith(("W_Q", "W_in", "W_E")):
                assert copied == (name in same), name
            elif mode == "no-embed" and name.endswith(("W_Q", "W_in", "W_E")):
                assert copied == (name != "embed.W_E"), name


@pytest.mark.parametrize(
    "over", [{"data": {"chain_of_thought": True}}, {"train": {"loss_on": "sequence"}}]
)
def test_other_targets_train(tmp_path, over):
    cfg = tiny_config(
        data=over.get("data"),
        train={"steps": 20, "eval_interval": 20, "save_interval": 20, **over.get("train", {})},
    )
    result = train(cfg, tmp_path / "run", progress=False)
    assert 0 <= result.results["MAX"].accuracy <= 1
    again = evaluate_sets(result.model, make_test_sets(cfg.data), cfg.data)
    assert again["MAX"].accuracy == result.results["MAX"].accuracy


def test_schedule_and_snapshots():
    t = tiny_config(train={"steps": 1000, "warmup_steps": 100, "save_interval": 300}).train
    assert lr_at(t, 0, 1000) == pytest.approx(t.lr / 100)
    assert lr_at(t, 99, 1000) == pytest.approx(t.lr)
    assert lr_at(t, 1000, 1000) == pytest.approx(t.lr * t.min_lr_frac)
    assert {0, 1, 2, 512, 300, 600, 900, 1000} <= snapshot_steps(t)
    assert np.all(np.diff([lr_at(t, s, 1000) for s in range(100, 1000)]) <= 0)


def test_wsd_schedule_is_constant_then_decays_over_its_last_steps():
    t = tiny_config(
        train={"steps": 1000, "warmup_steps": 10, "schedule": "wsd", "decay_steps": 400}
    ).train
    assert [lr_at(t, s, 1000) for s in (10, 300, 599, 600)] == [t.lr] * 4
    assert lr_at(t, 800, 1000) == pytest.approx(t.lr * (t.min_lr_frac + (1 - t.min_lr_frac) / 2))
    assert lr_at(t, 1000, 1000) == pytest.approx(t.lr * t.min_lr_frac)
    assert np.all(np.diff([lr_at(t, s, 1000) for s in range(600, 1001)]) < 0)
    assert lr_at(t, 50, 100) < lr_at(t, 20, 100) < t.lr  # a shorter phase decays over all of it
    for bad in ({"decay_steps": 0}, {"decay_steps": 1001}, {"decay_steps": -1}):
        with pytest.raises(ConfigError, match="decay_steps"):
            tiny_config(train={"steps": 1000, "schedule": "wsd", **bad})
    with pytest.raises(ConfigError, match="only wsd takes decay_steps"):
        tiny_config(train={"schedule": "linear", "decay_steps": 5})


def test_both_trainers_use_torchs_adamw_eps():
    """The ensemble's own AdamW update takes torch AdamW's default eps, as `train` does (the
    ensemble tests widen both to compare them; conftest.wide_adam_eps)."""
    import mechlistops.ensemble as ensemble
    from mechlistops.model import build_model
    from mechlistops.train import make_optimizer

    cfg = tiny_config()
    model = build_model(cfg.model, cfg.data)
    eps = {g["eps"] for g in make_optimizer(model, cfg.train).param_groups}
    assert eps == {torch.optim.AdamW([torch.zeros(1, requires_grad=True)]).defaults["eps"]}
    assert ensemble.ADAM_EPS in eps


# ----------------------------------------------------------------------------- branching
def _wsd(steps: int, decay: int, **train):
    """A pooled SUM+MAX run with a constant rate, then `decay` steps of decay to 0."""
    settings = {
        "steps": steps,
        "schedule": "wsd",
        "decay_steps": decay,
        "min_lr_frac": 0.0,
        "warmup_steps": 10,
        "save_interval": 20,
        "eval_interval": 20,
        **train,
    }
    return tiny_config(
        data={"ops": ("SUM", "MAX"), "tree": "single", "train_size": 300}, train=settings
    )


def _wider(cfg):
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, d_model=16))


@pytest.fixture(scope="module")
def trunk(tmp_path_factory):
    """120 steps (decay from step 80), every resume state kept."""
    run_dir = tmp_path_factory.mktemp("branch") / "trunk"
    train(_wsd(120, 40, keep_states=True), run_dir, progress=False)
    return run_dir


def test_a_branch_goes_on_as_the_run_trained_so_from_the_start(trunk, tmp_path):
    assert ckpt.kept_states(trunk) == [20, 40, 60, 80, 100]  # kept after it finished
    assert not (trunk / "state.safetensors").exists()
    cfg = _wsd(200, 60)  # a longer constant phase and a longer decay, from step 60
    branch(trunk, 60, cfg, tmp_path / "branch")
    assert ckpt.saved_steps(tmp_path / "branch") == [s for s in ckpt.saved_steps(trunk) if s <= 60]
    got = train(cfg, tmp_path / "branch", resume=True, progress=False)
    ref = train(cfg, tmp_path / "scratch", progress=False)
    for name, tensor in _weights(tmp_path / "scratch").items():
        assert torch.equal(tensor, _weights(tmp_path / "branch")[name]), name
    assert got.results["SUM"].to_dict() == ref.results["SUM"].to_dict()
    records = [
        [json.loads(x) for x in (tmp_path / run / "metrics.jsonl").open()]
        for run in ("branch", "scratch")
    ]
    assert [r["step"] for r in records[0]] == list(range(20, 201, 20))
    assert [r["eval"] for r in records[0]] == [r["eval"] for r in records[1]]
    raw = json.loads((tmp_path / "branch" / "config.json").read_text())
    assert raw["branch"] == {"run": str(trunk), "step": 60}
    assert raw["train"]["steps"] == 200 and raw["pools"] == ckpt.read_config(trunk)["pools"]
    assert load_run(tmp_path / "branch").config == cfg


@pytest.mark.parametrize(
    ("step", "cfg", "message"),
    [
        (100, _wsd(200, 60), "learning rate differs from its parent's from step 81"),
        (60, _wsd(120, 40, lr=1e-3), "cannot change train.lr"),
        (60, _wsd(120, 40, batch_size=32), "cannot change train.batch_size"),
        (60, _wider(_wsd(120, 40)), "cannot change model.d_model"),
        (60, _wsd(60, 20), "branch point 60 is not before the branch's last step"),
        (50, _wsd(200, 60), "no kept resume state at step 50 (kept: 20, 40, 60, 80, 100)"),
    ],
)
def test_a_branch_that_would_train_otherwise_is_refused_and_writes_nothing(
    trunk, tmp_path, step, cfg, message
):
    with pytest.raises(ConfigError, match=re.escape(message)):
        branch(trunk, step, cfg, tmp_path / "branch")
    assert list(tmp_path.iterdir()) == []


def test_a_branch_needs_a_new_directory_and_a_sound_state(trunk, tmp_path):
    cfg = _wsd(200, 60)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        branch(trunk, 60, cfg, tmp_path / "taken")
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["notes.txt"]
    damaged = tmp_path / "damaged"
    shutil.copytree(trunk, damaged)
    state = ckpt.kept_state_path(damaged, 60)
    state.write_bytes(state.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="truncated"):
        branch(damaged, 60, cfg, tmp_path / "branch")
    (tmp_path / "empty").mkdir()  # an empty directory is a new one
    branch(trunk, 60, cfg, tmp_path / "empty")
    assert ckpt.holds_run(tmp_path / "empty")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged", "empty", "taken"]
