"""Every script of analyses/ meets bad input as the `mechlistops` command does: a path that
holds no run ends in one line naming it, and exit 2, never a traceback."""

from __future__ import annotations

import runpy
import sys
from functools import partial
from pathlib import Path

import pytest

from tests.conftest import script_fails_in_one_line

ANALYSES = Path(__file__).resolve().parents[1] / "analyses"
MISSING = "/no/such/runs"

# script: (its arguments around a missing path, what its one line says)
CASES = {
    "anneal": (["OUT", MISSING], "no such run or folder"),
    "arms": (["OUT", MISSING], "no such run or folder"),
    "bounds": (["OUT", MISSING], "no such run or folder"),
    "complexity_fit": ([MISSING, "--out", "OUT"], "no such run or folder"),
    "fourier": (["OUT", MISSING], "no such run or folder"),
    "joint_screen": ([MISSING, "OUT"], "no such folder"),
    "long_runs": (["OUT", MISSING], "no such run or folder"),
    "pool_sizes": (["OUT", MISSING], "not a sweep directory"),
    "realisations": (["OUT", f"A={MISSING}"], "no such run or folder"),
    "size_scan": ([MISSING, "--out", "OUT"], "no such run or folder"),
    "stop_savings": ([MISSING], "no finished run with evaluations under it"),
    "sum_transition_cpu": (["OUT", MISSING], "one argument, OUT; got 2"),
    "training_curves": ([MISSING], "no evaluations in its metrics.jsonl"),
}


def test_every_script_is_covered():
    assert {p.stem for p in ANALYSES.glob("*.py")} == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_missing_path_fails_in_one_line(name, tmp_path, monkeypatch, capsys):
    args, fragment = CASES[name]
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in args]
    monkeypatch.setattr(sys, "argv", [str(ANALYSES / f"{name}.py"), *argv])
    run = partial(runpy.run_path, str(ANALYSES / f"{name}.py"), run_name="__main__")
    line = script_fails_in_one_line(capsys, run, fragment)
    assert line.startswith(f"{name}: error: "), line
    assert not (tmp_path / "out").exists()  # nothing written
