"""Every script of analyses/ meets bad input as the `mechlistops` command does: a path that
holds no run ends in one line naming it, and exit 2, never a traceback."""

from __future__ import annotations

import runpy
import sys
from functools import partial
from pathlib import Path

import pandas as pd
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
    "data_need": (["OUT", MISSING], "no such run or folder"),
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


def test_data_need_reads_the_share_of_learners_along_the_pool(tmp_path, monkeypatch, capsys):
    """Pools 1,000, 2,000 and 4,000 (equal steps in log pool) with 1, 2 and 3 of 4 runs
    passing: the logistic fit is symmetric, so half pass at 2,000; its coefficients and its
    likelihood-ratio test against one share match scipy's optimiser; a group on one pool is
    left out."""
    import numpy as np
    from scipy.optimize import minimize
    from scipy.stats import chi2

    rows = ["run,op,mixture,seed,n_params,accuracy,accuracy_heldout,train_size,data"]
    held = {1000: [0.95, 0.1, 0.2, 0.3], 2000: [0.95, 0.92, 0.2, 0.5], 4000: [1, 0.9, 0.97, 0.4]}
    for pool, accs in held.items():
        for seed, a in enumerate(accs):
            name, data = f"r{pool}_{seed}", f'"{pool:,} sampled, mod 11"'
            rows.append(f"{name},SUM,SUM,{seed},3167,0.99,{a},{pool},{data}")
    rows.append('lone,SUM,SUM,0,4983,0.99,0.95,1000,"1,000 sampled, mod 11"')
    table = tmp_path / "runs.csv"
    table.write_text("\n".join(rows) + "\n")
    argv = [str(ANALYSES / "data_need.py"), str(tmp_path / "out"), str(table), "--bootstrap", "50"]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(ANALYSES / "data_need.py"), run_name="__main__")
    out = tmp_path / "out"
    lines = [x for x in (out / "data_need.md").read_text().splitlines() if x.startswith("| SUM")]
    assert len(lines) == 1  # 4,983 parameters ran on one pool only
    cells = [c.strip() for c in lines[0].split("|")[1:-1]]
    assert cells[:3] == ["SUM alone", "3,167", "sampled, mod 11"]
    assert cells[4].startswith("1,000: 1 of 4 (0.05-0.70); 2,000: 2 of 4 (0.15-0.85); 4,000: 3")
    assert cells[5].startswith("2,000 [")
    x = np.log10(np.repeat([1000, 2000, 4000], 4))
    y = np.array([a >= 0.9 for accs in held.values() for a in accs], float)

    def nll(b):
        z = b[0] + b[1] * x
        return -np.sum(y * z - np.logaddexp(0, z))

    best = minimize(nll, [0, 0])
    lr = 2 * (nll([np.log(y.mean() / (1 - y.mean())), 0]) - best.fun)
    csv = pd.read_csv(out / "data_need.csv")
    assert csv.trend_p.iloc[0] == pytest.approx(chi2.sf(lr, 1), rel=1e-4)
    centre, b0, b1 = csv[["fit_centre", "fit_intercept", "fit_slope"]].iloc[0]  # the curve drawn
    assert centre == pytest.approx(x.mean()) and b1 == pytest.approx(best.x[1], rel=1e-3)
    assert b0 == pytest.approx(best.x[0] + best.x[1] * centre, abs=1e-3)
    assert cells[6] == f"{csv.trend_p.iloc[0]:.2g}"
    assert list(csv.passed) == [1, 2, 3] and csv.half_pool.iloc[0] == pytest.approx(2000)
    assert (out / "data_need.png").stat().st_size > 0
    capsys.readouterr()


def test_arms_counts_learners_and_tests_them_against_a_reference(tmp_path, monkeypatch, capsys):
    """A runs table of three arms at one size, SUM's held-out at the end: each arm's runs at
    0.9 with the share's Wilson interval and Fisher's p against the reference arm (scipy's);
    the pair's mixture weights name its arm, not its data; partners as medians over seeds."""
    from scipy.stats import binomtest, fisher_exact

    rows = ["run,op,mixture,seed,n_params,accuracy,accuracy_heldout,accuracy_pool,data,d_model"]
    arms = {
        ("SUM+MAX+MED", '"10,000 sampled"'): [0.95, 0.93, 0.97, 0.91, 0.96, 0.5],
        ("SUM+PROD", '"10,000 sampled, weights 1:2"'): [0.95, 0.2, 0.3, 0.1, 0.92, 0.4],
        ("SUM", '"10,000 sampled"'): [0.1, 0.2, 0.91, 0.3],
    }
    for (mixture, data), accs in arms.items():
        for seed, a in enumerate(accs):
            name = f"{mixture}_{seed}"
            rows.append(f"{name},SUM,{mixture},{seed},3142,0.99,{a},0.98,{data},12")
            for k, partner in enumerate(mixture.split("+")[1:]):
                held = 0.8 + 0.02 * seed + 0.1 * k
                rows.append(f"{name},{partner},{mixture},{seed},3142,1,{held},,{data},12")
    table = tmp_path / "runs.csv"
    table.write_text("\n".join(rows) + "\n")
    argv = [str(tmp_path / "out"), str(table), "--examples", "0", "--reference", "SUM+MAX+MED"]
    monkeypatch.setattr(sys, "argv", [str(ANALYSES / "arms.py"), *argv])
    runpy.run_path(str(ANALYSES / "arms.py"), run_name="__main__")
    lines = (tmp_path / "out" / "arms.md").read_text().splitlines()
    cells = {c[0]: c for c in ([x.strip() for x in line.split("|")[1:-1]] for line in lines[2:])}
    assert set(cells) == {"SUM", "SUM+MAX+MED", "SUM+PROD (weights 1:2)"}  # one data: no column
    pair, ref = cells["SUM+PROD (weights 1:2)"], cells["SUM+MAX+MED"]
    ci = binomtest(2, 6).proportion_ci(method="wilson")
    assert pair[4] == f"2 of 6 [{ci.low:.2f}, {ci.high:.2f}]" and ref[4].startswith("5 of 6 [")
    assert pair[5] == f"{fisher_exact([[2, 4], [5, 1]]).pvalue:.2g}" and ref[5] == "-"
    assert cells["SUM"][5] == f"{fisher_exact([[1, 3], [5, 1]]).pvalue:.2g}"
    assert pair[3].endswith("; **0.35**") and pair[7] == "PROD 0.85"
    assert ref[7] == "MAX 0.85, MED 0.95"
    assert (tmp_path / "out" / "arms.png").stat().st_size > 0
    capsys.readouterr()
