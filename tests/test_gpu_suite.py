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
        "300",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    figures = json.loads((out / "suite.json").read_text())
    assert not [k for k in figures if k.endswith("_error")], figures
    assert figures["correctness"]["passed"]
    assert len(figures["throughput"]) == 2
    assert all(r["ensemble_model_steps_per_s"] > 0 for r in figures["throughput"])
    assert all(
        r["data_workers"] == 1 and r["fed_model_steps_per_s"] > 0 for r in figures["throughput"]
    )
    assert figures["sweep_120"]["measured_seconds"] > 0
    assert figures["study"]["sizes_done"] == [8, 12]
    table = (out / "study.md").read_text()
    assert "| 1,718 | SUM |" in table and "SUM+MAX+MED" in table
    assert (out / "suite.log").read_text().count("\n") >= 5


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
