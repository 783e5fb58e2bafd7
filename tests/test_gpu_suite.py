"""The GPU suite runs end to end on CPU at a tiny scale, so it cannot rot between GPU runs; the
wheel list leaves out what the GPU machine has."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_suite_runs_on_cpu_tiny(tmp_path):
    out = tmp_path / "suite"
    # a budget every stage fits on a busy 2-core machine too (compiling alone took 144 s
    # there beside two trainings; the whole suite 539 s beside the other test worker and two
    # trainings, 227 s beside the other worker alone); at tiny scale every stage runs whole,
    # so a larger budget adds no work
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        str(ROOT / "benchmarks" / "gpu_suite.py"),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--tiny",
        "--budget-s",
        "900",
        "--scratch",
        str(tmp_path / "scratch"),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1200)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads((out / "suite.json").read_text())
    assert not [k for k in figures if k.endswith("_error")], figures
    assert figures["correctness"]["passed"]
    assert len(figures["throughput"]) == 2
    assert all(r["ensemble_model_steps_per_s"] > 0 for r in figures["throughput"])
    assert all(
        r["data_workers"] == 1 and r["fed_model_steps_per_s"] > 0 for r in figures["throughput"]
    )
    # at the smallest size, eager and compiled, also booked every step (no reading ahead)
    first, second = figures["throughput"]
    assert first["steady_model_steps_per_s_booked_every_step"] > 0
    assert second["steady_model_steps_per_s_booked_every_step"] is None
    assert figures["compiled"][0]["steady_model_steps_per_s_booked_every_step"] > 0
    assert set(figures["pool_feed_steps_per_s"]) == {"host", "device"}
    conc = figures["concurrency"]
    assert conc["processes"] == 2 and conc["together_model_steps_per_s"] > 0
    assert figures["sweep_120"]["processes"] in (1, 2)
    # compiled at the smallest size: the same weights as eager, its warm-up timed apart
    (row,) = figures["compiled"]
    assert row["mode"] == "default" and row["max_abs_weight_diff_vs_eager"] <= 1e-4
    assert row["warmup_s"] > 0 and row["steady_model_steps_per_s"] > 0
    # the study's looped models are checked apart; the study compiles only if they passed
    looped, used = row["looped"], figures["compile_used"]
    assert looped["max_abs_weight_diff_vs_eager"] <= 1e-4  # compiles on CPU (sweeps.md)
    assert used["sweep"] in ("off", "default")
    assert used["study"] == ("off" if "error" in looped else used["sweep"])
    assert figures["study"]["compile"] == used["study"]
    assert figures["throughput"][0]["gpu_busy_fraction"] is None  # no nvidia-smi on a CPU
    assert figures["sweep_120"]["measured_seconds"] > 0
    study = figures["study"]
    assert study["exit_code"] == 0 and not study["stopped_at_deadline"]
    assert study["seeds"] == 3  # --tiny's default; 12 on a GPU
    assert study["last_step_reached"] == {
        f"{m}_d{d}_s{s}": 60 for m in ("sum", "sum+max+med") for d in (8, 12) for s in range(3)
    }
    table = (out / "study.md").read_text()
    # the study's default draw, and its task: exactly 3 operands
    assert "training pool per operator: 300 sampled, 3 operands;" in table
    # every size and mixture, read before (@40) and after (@60) the decay, 3 seeds each
    rows = [x for x in table.splitlines() if x.startswith("| 1,718 |") or x.startswith("| 3,142 |")]
    assert len(rows) == 4 and all(x.count(" / ") == 4 for x in rows), table
    assert all(x.count("/3 pass 0.9") == 2 for x in rows), table
    # a study stopped at the deadline is read where every run got to, too
    assert sorted(x.name for x in out.iterdir()) == [
        "study.log",
        "study.md",
        "study_runs_step40.csv",
        "study_runs_step60.csv",
        "suite.json",
        "suite.log",
    ]
    assert study["runs_tables"] == ["study_runs_step40.csv", "study_runs_step60.csv"]
    # the runs table fits off the machine as the runs would
    from mechlistops.cli import main

    table = str(out / "study_runs_step60.csv")
    assert main(["transition", table, "--heldout", "--bootstrap", "5", "--out", str(tmp_path)]) == 0
    study_runs = tmp_path / "scratch" / "study"
    assert figures["study_runs"] == str(study_runs)
    metrics = study_runs / "sum_d8_s1" / "metrics.jsonl"
    metrics.write_text(metrics.read_text().splitlines()[0] + "\n")  # its step-20 evaluation
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu_suite
    finally:
        sys.path.pop(0)
    lines, reached, tables = gpu_suite.study_table(study_runs, (40, 60), "cpu", 20)
    assert sorted(tables) == [20, 40, 60] and len(tables[20]) == 6 + 6 * 3  # a row per run and op
    assert reached["sum_d8_s1"] == 20 and reached["sum_d12_s0"] == 60
    assert "| parameters | trained as | @20 | @40 | @60 |" in lines
    (sum_8,) = [x for x in lines if x.startswith("| 1,718 | SUM |")]
    assert sum_8.split("|")[3].count(" / ") == 2  # @20: all 3 seeds
    assert (out / "suite.log").read_text().count("\n") >= 5


def test_numbers_that_cannot_work_are_refused_in_one_line(tmp_path):
    cases = [
        ("--study-seeds", "0", "--study-seeds 0: must be 1 to 1000"),
        ("--study-pool", "-5", "--study-pool -5: must be 1 to 10000000"),
        ("--data-workers", "999", "--data-workers 999: must be 0 to 256"),
    ]
    for option, value, message in cases:
        cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu_suite.py"), "--out", str(tmp_path)]
        done = subprocess.run(cmd + [option, value], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done.stderr
        assert done.stderr.splitlines()[-1].endswith(message), done.stderr
        assert not (tmp_path / "suite.json").exists()


def test_utilisation_lines_are_read_as_percentages():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu_suite
    finally:
        sys.path.pop(0)
    assert gpu_suite.parse_utilisation("87\n100\n\n0\n") == [87.0, 100.0, 0.0]
    assert gpu_suite.parse_utilisation("[N/A]\n42\n") == [42.0]


def test_wheel_list_leaves_out_what_the_gpu_machine_has():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import fetch_wheels
    finally:
        sys.path.pop(0)
    loaded = {
        "torch": "2",
        "numpy": "2",
        "transformer-lens": "3.9.0",
        "pyarrow": "26",
        "datasets": "5",
        "circuitsvis": "1.4",
        "typing_extensions": "4",
        "pytest": "8",
    }
    assert fetch_wheels.needed(loaded) == {"circuitsvis": "1.4", "transformer-lens": "3.9.0"}
