"""Transition fits on synthetic sweeps with known midpoints, and the ratios analyses/bounds.py
prints from them."""

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mechlistops.config import TrainConfig
from mechlistops.plots import plot_ratio_vs_data
from mechlistops.transition import (
    final_accuracies,
    fit_transition,
    ratio_table,
    ratio_text,
    smallest_passing,
    training_label,
    transitions,
)
from tests.conftest import script_fails_in_one_line, tiny_config


def _synthetic(op, mixture, x0, seeds=3, noise=0.02, seed=0, lo=0.1, hi=1.0):
    rng = np.random.default_rng(seed)
    rows = []
    for x in np.linspace(3.0, 6.0, 10):
        for s in range(seeds):
            acc = lo + (hi - lo) / (1 + np.exp(-6 * (x - x0))) + noise * rng.normal()
            rows.append(
                {
                    "op": op,
                    "mixture": mixture,
                    "seed": s,
                    "n_params": round(10**x),
                    "accuracy": float(np.clip(acc, 0, 1)),
                }
            )
    return pd.DataFrame(rows)


def test_fit_recovers_the_midpoint():
    df = _synthetic("SUM", "SUM", x0=4.5)
    fit = fit_transition(df.n_params, df.accuracy)
    assert fit.reason == "ok"
    assert np.log10(fit.midpoint) == pytest.approx(4.5, abs=0.05)


def test_sigmoid_jacobian_matches_finite_differences():
    from scipy.optimize import approx_fprime

    from mechlistops.transition import _sigmoid_jacobian, sigmoid

    x = np.linspace(3.0, 5.0, 7)
    params = np.array([0.1, 0.95, 4.0, 3.7])
    exact = _sigmoid_jacobian(x, *params)
    for i, xi in enumerate(x):
        numeric = approx_fprime(params, lambda p, xi=xi: sigmoid(xi, *p), 1e-7)
        np.testing.assert_allclose(exact[i], numeric, atol=1e-5)


def test_crossing_interpolates_the_medians_in_log_parameters():
    from mechlistops.transition import crossing

    runs = pd.DataFrame(
        {
            "n_params": [1000] * 3 + [4000] * 3 + [16000] * 3,
            "accuracy": [0.1, 0.2, 0.3, 0.5, 0.7, 0.6, 0.95, 0.9, 1.0],
        }
    )  # medians 0.2, 0.6, 0.95
    assert crossing(runs, 0.4) == pytest.approx(2000)  # halfway from 0.2 to 0.6: log midpoint
    assert crossing(runs, 0.6) == pytest.approx(4000)  # a median on the line passes there
    assert crossing(runs, 0.9) == pytest.approx(4000 * 4 ** (0.3 / 0.35))
    assert crossing(runs, 0.1) == 1000  # the smallest size already passes: an upper bound
    assert crossing(runs, 0.99) is None
    for t in (0.1, 0.4, 0.6, 0.9):  # never past the smallest passing size
        assert crossing(runs, t) <= smallest_passing(runs, t)


def _bimodal(sizes, passed, seeds):
    """Runs that either learn (0.95) or not (0.1): `passed[i]` of `seeds` pass at sizes[i]."""
    return pd.DataFrame(
        {"n_params": n, "accuracy": 0.95 if s < k else 0.1}
        for n, k in zip(sizes, passed)
        for s in range(seeds)
    )


def test_pass_rate_is_the_half_point_of_a_logistic_fit_over_every_run():
    from sklearn.linear_model import LogisticRegression

    from mechlistops.transition import pass_rate

    runs = _bimodal([1000, 2000, 4000, 8000, 16000], [0, 3, 5, 8, 12], seeds=12)
    x = np.log10(runs.n_params.to_numpy(float))[:, None]
    fit = LogisticRegression(C=np.inf, tol=1e-10).fit(x, runs.accuracy >= 0.9)
    expected = 10 ** (-fit.intercept_[0] / fit.coef_[0, 0])  # an independent maximum likelihood
    assert pass_rate(runs, 0.9) == pytest.approx(expected, rel=1e-4)
    assert 4000 < pass_rate(runs, 0.9) < 8000  # 5 of 12 pass at 4,000, 8 at 8,000
    assert pass_rate(runs, 0.9) == pass_rate(runs.sample(frac=1, random_state=0), 0.9)


def test_pass_rate_where_there_is_no_maximum_or_no_rise():
    from mechlistops.transition import pass_rate

    # all fail up to 2,000 and all pass from 8,000 on: the geometric middle of the gap
    assert pass_rate(_bimodal([1000, 2000, 8000], [0, 0, 3], 3), 0.9) == pytest.approx(4000)
    # one size has both, none passes below it and all pass above: that size
    assert pass_rate(_bimodal([1000, 2000, 4000], [0, 1, 3], 3), 0.9) == pytest.approx(2000)
    separated = _bimodal([1000, 2000, 8000], [0, 0, 3], 3).assign(op="SUM", mixture="SUM")
    low, high = transitions(separated, thresholds=(0.9,), n_boot=200).iloc[0]["passrate_0.9_ci"]
    assert 2000 <= low < 2200 and 7400 < high <= 8000  # the gap, not its middle alone
    assert pass_rate(_bimodal([1000, 2000], [3, 3], 3), 0.9) == 1000  # at most the smallest
    assert pass_rate(_bimodal([1000, 2000], [2, 3], 3), 0.9) == 1000  # half point below it
    assert pass_rate(_bimodal([1000, 2000], [0, 0], 3), 0.9) is None  # never passes
    assert pass_rate(_bimodal([1000, 2000, 4000], [2, 1, 0], 3), 0.9) is None  # falls with size
    # all pass up to 4,000 and the one run at 8,000 fails: the share falls, no maximum either
    assert pass_rate(_bimodal([1000, 4000, 8000], [3, 3, 0], 3).iloc[:7], 0.9) is None
    assert pass_rate(_bimodal([1000, 2000, 4000], [0, 1, 1], 3), 0.9) is None  # past 4,000
    # a nearly flat rise (1,000 of 5,000 pass at 1,000; 1,001 of 5,000 at 2,000) puts the
    # half point some 400 decades out: not reached, and no overflow on the way
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pass_rate(_bimodal([1000, 2000], [1000, 1001], 5000), 0.9) is None


def test_separated_runs_are_named_where_the_half_point_is_read_from_their_gap():
    from mechlistops.transition import crossing_text, separation

    gap = _bimodal([1000, 2000, 8000], [0, 0, 3], 3)
    tied = _bimodal([1000, 2000, 4000], [0, 1, 3], 3)  # 1 of 3 at 2,000 and no finite slope
    overlapping = _bimodal([1000, 2000, 4000, 8000], [0, 1, 1, 3], 3)
    assert separation(gap, 0.9) == (2000, 8000) and separation(tied, 0.9) == (2000, 2000)
    assert separation(overlapping, 0.9) is None  # a fitted slope
    assert separation(gap, 0.99) is None and separation(gap, 0.05) is None  # none / all pass
    texts = {}
    for name, runs in {"gap": gap, "tied": tied, "overlapping": overlapping}.items():
        row = transitions(runs.assign(op="SUM", mixture="SUM"), (0.9,), n_boot=20).iloc[0]
        texts[name] = crossing_text(row.to_dict(), 0.9, kind="passrate")
    assert texts["gap"].startswith("4,000 [") and texts["gap"].endswith(
        "(the runs separate between 2,000 and 8,000: their middle)"
    )
    assert texts["tied"].endswith("(the runs separate at 2,000, the one size with both outcomes)")
    assert "separate" not in texts["overlapping"]
    # one of three passes at the smallest size, all above: the gap's limit, not "at most"
    low = _bimodal([1000, 2000], [1, 3], 3).assign(op="SUM", mixture="SUM")
    row = transitions(low, (0.9,), n_boot=20).iloc[0].to_dict()
    text = crossing_text(row, 0.9, kind="passrate")
    assert text.startswith("1,000") and "at most" not in text and "separate at 1,000" in text


def test_no_learning_and_extrapolation_are_refused():
    flat = _synthetic("SUM", "SUM", x0=9.0)  # never learned in range
    fit = fit_transition(flat.n_params, flat.accuracy)
    assert fit.midpoint is None and "no transition" in fit.reason
    assert smallest_passing(flat, 0.9) is None
    early = _synthetic("MAX", "MAX", x0=2.0)  # learned by the smallest size
    fit = fit_transition(early.n_params, early.accuracy)
    assert fit.midpoint is None
    assert smallest_passing(early, 0.9) == early.n_params.min()


def test_ratio_alone_over_mixture_with_interval():
    df = pd.concat(
        [_synthetic("SUM", "SUM", x0=4.8, seed=1), _synthetic("SUM", "SUM+MAX+MED", x0=4.3, seed=2)]
    )
    out = transitions(df, n_boot=200).set_index("mixture")
    ratio = out.loc["SUM+MAX+MED", "ratio_midpoint"]
    assert ratio == pytest.approx(10**0.5, rel=0.15)
    lo, hi = out.loc["SUM+MAX+MED", "ratio_midpoint_ci"]
    assert lo < ratio < hi and lo > 1.5
    assert out.loc["SUM", "ratio_midpoint"] == pytest.approx(1.0)
    assert out.loc["SUM+MAX+MED", "smallest_0.9"] < out.loc["SUM", "smallest_0.9"]
    low, high = out.loc["SUM", "rise"]
    assert low == pytest.approx(0.1, abs=0.05) and high == pytest.approx(1.0, abs=0.05)


def test_a_rise_that_levels_off_low_is_reported_with_its_plateau():
    df = _synthetic("SUM", "SUM", x0=4.5, lo=0.1, hi=0.5)  # memorises part, never learns
    row = transitions(df, n_boot=20).iloc[0]
    assert row["midpoint"] is not None and row["rise"][1] == pytest.approx(0.5, abs=0.05)
    assert row["smallest_0.9"] is None


def _two_pools() -> pd.DataFrame:
    """SUM held-out accuracy by seed on two pools: on 20,000 SUM alone passes 0.9 at 2,000
    parameters and SUM+MAX+MED at 1,000 (2x); on 10,000 SUM alone never passes up to 4,000
    and SUM+MAX+MED does at 1,000 (at least 4x)."""
    arms = {
        ("20,000 sampled", "SUM"): {1000: [0.1, 0.2, 0.1], 2000: [0.95, 0.92, 0.96]},
        ("20,000 sampled", "SUM+MAX+MED"): {1000: [0.95, 0.93, 0.96]},
        ("10,000 sampled", "SUM"): {1000: [0.1, 0.1, 0.2], 4000: [0.3, 0.2, 0.1]},
        ("10,000 sampled", "SUM+MAX+MED"): {1000: [0.91, 0.95, 0.9]},
    }
    rows = [
        {"run": f"{data[:2]}k/{mixture}_{n}_s{seed}", "op": "SUM", "mixture": mixture}
        | {"data": data, "training": "100 wsd", "n_params": n}
        | {"seed": seed, "accuracy": acc, "memorisation_gap": None}
        | {"train_size": int(data.split()[0].replace(",", ""))}
        for (data, mixture), sizes in arms.items()
        for n, accs in sizes.items()
        for seed, acc in enumerate(accs)
    ]
    return pd.DataFrame(rows)


def test_size_table_counts_the_runs_passing_with_wilson_intervals():
    """Per cell: runs, median, extremes, and at each threshold the runs reaching it with the
    95% Wilson interval of their share (0 of 3: [0, z^2 / (3 + z^2)]; 3 of 3: [3 / (3 + z^2),
    1])."""
    from mechlistops.transition import size_table

    cells = size_table(_two_pools(), [0.9, 0.15]).set_index(["data", "mixture", "n_params"])
    assert len(cells) == 6
    alone = cells.loc[("20,000 sampled", "SUM", 1000)]
    assert (alone["runs"], alone["median"], alone["min"], alone["max"]) == (3, 0.1, 0.1, 0.2)
    assert (alone["passed_0.9"], alone["passed_0.15"], alone["share_0.15"]) == (0, 1, 1 / 3)
    z2 = 1.959963984540054**2
    assert alone["share_0.9_low"] == 0 and alone["share_0.9_high"] == pytest.approx(z2 / (3 + z2))
    learnt = cells.loc[("20,000 sampled", "SUM", 2000)]
    assert (learnt["passed_0.9"], learnt["share_0.9"], learnt["share_0.9_high"]) == (3, 1.0, 1.0)
    assert learnt["share_0.9_low"] == pytest.approx(3 / (3 + z2))
    joint = cells.loc[("10,000 sampled", "SUM+MAX+MED", 1000)]
    assert joint["passed_0.9"] == 3 and joint["median"] == 0.91  # 0.9 itself passes


def test_a_ratio_whose_n_star_sits_on_its_smallest_size_run_is_a_bound():
    """SUM alone passes at the smallest size it was run at, so its N* is at most that size and
    the ratio at most what it reads; where both arms pass at their smallest, no bound."""

    def arm(mixture, sizes):
        rows = [
            {"op": "SUM", "mixture": mixture, "n_params": n, "seed": seed, "accuracy": acc}
            for n, accs in sizes.items()
            for seed, acc in enumerate(accs)
        ]
        return pd.DataFrame(rows).assign(run=lambda d: d.mixture + d.n_params.astype(str))

    alone = arm("SUM", {2000: [0.95, 0.96, 0.97], 4000: [0.97, 0.98, 0.99]})
    joint = arm("SUM+MAX+MED", {1000: [0.1, 0.2, 0.1], 2000: [0.95, 0.92, 0.96]})
    fits = transitions(pd.concat([alone, joint]), (0.9,), n_boot=5)
    row = fits[fits.mixture == "SUM+MAX+MED"].iloc[0].to_dict()
    assert row["ratio_crossing_0.9_side"] == "at most"
    text = ratio_text(row, "crossing_0.9")
    assert text.startswith(f"at most {2000 / row['crossing_0.9']:.2f}x")
    assert text.endswith("(SUM alone's N* is at its smallest size run)")
    table = ratio_table(transitions(pd.concat([alone, joint]), (0.9,), n_boot=5), joint)
    assert set(table.side.dropna()) == {"at most"}
    both = arm("SUM+MAX+MED", {1000: [0.95, 0.93, 0.96]})
    fits = transitions(pd.concat([alone, both]), (0.9,), n_boot=5)
    text = ratio_text(fits[fits.mixture == "SUM+MAX+MED"].iloc[0].to_dict(), "smallest_0.9")
    assert text.startswith("2.00x") and "no bound" in text
    assert pd.isna(fits[fits.mixture == "SUM"].iloc[0]["ratio_smallest_0.9_side"])  # no ratio


def test_share_tests_compare_cells_that_differ_in_one_thing():
    """Fisher's exact test of the runs passing, size by size: a mixture against its op alone,
    one arm on two pools; never two mixtures without the op alone, nor cells that differ in
    two things (SUM+MAX+MED on 20,000 against SUM alone on 10,000)."""
    from scipy.stats import fisher_exact

    from mechlistops.transition import share_test_lines, share_tests, size_table

    runs = _two_pools()
    other = runs[runs.mixture == "SUM+MAX+MED"].assign(mixture="SUM+MAX", accuracy=0.5)
    tests = share_tests(size_table(pd.concat([runs, other]), [0.9]), [0.9])
    pairs = {(r.differs, r.a, r.b, r.mixture, r.data) for r in tests.fillna("-").itertuples()}
    ten, twenty = "10,000 sampled", "20,000 sampled"
    assert pairs == {
        ("mixture", "SUM+MAX+MED", "SUM", "-", ten),
        ("mixture", "SUM+MAX+MED", "SUM", "-", twenty),
        ("mixture", "SUM+MAX", "SUM", "-", ten),
        ("mixture", "SUM+MAX", "SUM", "-", twenty),
        ("data", ten, twenty, "SUM", "-"),
        ("data", ten, twenty, "SUM+MAX+MED", "-"),
        ("data", ten, twenty, "SUM+MAX", "-"),
    }
    assert set(tests.n_params) == {1000}  # SUM alone's 2,000 and 4,000 have no partner
    joint = tests[(tests.differs == "mixture") & (tests.a == "SUM+MAX+MED")].iloc[0]
    assert (joint.passed_a, joint.runs_a, joint.passed_b, joint.runs_b) == (3, 3, 0, 3)
    assert joint.p == pytest.approx(fisher_exact([[3, 0], [0, 3]]).pvalue) == pytest.approx(0.1)
    assert tests[tests.differs == "data"].p.eq(1).all()  # 0 of 3 twice, 3 of 3 twice
    lines = share_test_lines(tests[tests.mixture.isna()], named=("data",))
    assert "at 0.9: SUM in SUM+MAX against SUM alone, 10,000 sampled: 1,000: 0 of 3 against" in (
        "\n".join(lines)
    )
    assert len(lines) == 4  # one a pair of cells, sizes in a row


def test_step_tests_compare_each_size_with_the_next_within_a_cell():
    """Fisher's exact test of the runs passing between a cell's sizes in turn, never across
    pools or mixtures; a cell whose runs all fail (or all pass) at every size prints no line."""
    from scipy.stats import fisher_exact

    from mechlistops.transition import size_table, step_test_lines, step_tests

    runs = _two_pools()
    wider = runs[(runs.mixture == "SUM") & (runs.n_params == 2000)].assign(n_params=8000)
    wider = wider.assign(accuracy=[0.95, 0.2, 0.1])  # 3 of 3 at 2,000, then 1 of 3 at 8,000
    steps = step_tests(size_table(pd.concat([runs, wider]), [0.9, 0.15]), [0.9, 0.15])
    at = steps[steps.threshold == 0.9].set_index(["data", "size_a", "size_b"])
    assert list(at.index) == [  # the joint cells have one size each: no step
        ("10,000 sampled", 1000, 4000),
        ("20,000 sampled", 1000, 2000),
        ("20,000 sampled", 2000, 8000),
    ]
    assert set(at.mixture) == {"SUM"}
    up = at.loc[("20,000 sampled", 1000, 2000)]
    assert (up.passed_a, up.runs_a, up.passed_b, up.runs_b) == (0, 3, 3, 3)
    assert up.p == pytest.approx(fisher_exact([[0, 3], [3, 0]]).pvalue) == pytest.approx(0.1)
    down = at.loc[("20,000 sampled", 2000, 8000)]
    assert (down.passed_a, down.passed_b) == (3, 1) and down.p == pytest.approx(0.4)
    assert at.loc[("10,000 sampled", 1000, 4000)].p == 1  # 0 of 3 twice
    lines = step_test_lines(steps, named=("data",))
    assert len(lines) == 3  # thresholds in order; 10,000 at 0.9: all fail, no line
    assert lines[0] == "at 0.15: SUM alone, 10,000 sampled: 1,000 -> 4,000: 1 of 3 -> 2 of 3, p = 1"
    assert lines[2] == (
        "at 0.9: SUM alone, 20,000 sampled: 1,000 -> 2,000: 0 of 3 -> 3 of 3, p = 0.1; "
        "2,000 -> 8,000: 3 of 3 -> 1 of 3, p = 0.4"
    )


def test_runs_on_different_data_are_never_pooled_and_a_bound_is_given():
    out = transitions(_two_pools(), thresholds=(0.9,), n_boot=50)
    rows = out.set_index(["data", "mixture"])
    joint20, joint10 = (
        rows.loc[("20,000 sampled", "SUM+MAX+MED")],
        rows.loc[("10,000 sampled", "SUM+MAX+MED")],
    )
    assert joint20["ratio_smallest_0.9"] == pytest.approx(2.0)  # pooled, it would be undefined
    assert pd.isna(joint20["ratio_smallest_0.9_bound"])
    assert pd.isna(joint10["ratio_smallest_0.9"])
    assert joint10["ratio_smallest_0.9_bound"] == pytest.approx(4.0)
    assert pd.isna(rows.loc[("10,000 sampled", "SUM"), "ratio_smallest_0.9_bound"])
    assert "ratio_midpoint_bound" not in out  # no bound from a missing sigmoid fit


def test_an_interval_depends_on_its_own_runs_only():
    """A group's resamples are its own: the same interval beside other pools and thresholds."""
    first = _synthetic("SUM", "SUM", 4.0, seed=1).assign(data="10,000 sampled")
    mine = pd.concat(
        [_synthetic("SUM", "SUM", 4.5, seed=2), _synthetic("SUM", "SUM+MAX", 4.0, seed=3)]
    ).assign(data="20,000 sampled")
    columns = ["midpoint_ci", "smallest_0.9_ci", "ratio_midpoint_ci", "ratio_smallest_0.9_ci"]
    beside = transitions(pd.concat([first, mine]), thresholds=(0.5, 0.9), n_boot=100)
    own = transitions(mine, thresholds=(0.9,), n_boot=100)
    beside = beside[beside.data == "20,000 sampled"].reset_index(drop=True)
    assert beside[columns].to_dict("records") == own[columns].to_dict("records")
    assert own.midpoint_ci.notna().all()  # continuous: any other draw would move it


def test_ratio_table_lists_each_ratio_or_bound_with_its_pool(tmp_path):
    runs = _two_pools()
    table = ratio_table(transitions(runs, thresholds=(0.9,), n_boot=50), runs)
    assert set(table.mixture) == {"SUM+MAX+MED"}  # SUM alone has no ratio to itself
    at = table[table.statistic == "smallest"].set_index("train_size")
    assert at.loc[20_000, "ratio"] == pytest.approx(2.0) and pd.isna(at.loc[20_000, "bound"])
    assert pd.isna(at.loc[10_000, "ratio"]) and at.loc[10_000, "bound"] == pytest.approx(4.0)
    crossed = table[table.statistic == "crossing"].set_index("train_size")
    # SUM alone's median goes 0.1 -> 0.95 from 1,000 to 2,000: 0.9 at 1,000 * 2^(0.8 / 0.85)
    assert crossed.loc[20_000, "ratio"] == pytest.approx(2 ** (0.8 / 0.85))
    assert crossed.loc[10_000, "bound"] == pytest.approx(4.0)
    halves = table[table.statistic == "passrate"].set_index("train_size")
    # SUM alone: all fail at 1,000 and all pass at 2,000; the joint arm passes at 1,000
    assert halves.loc[20_000, "ratio"] == pytest.approx(2**0.5)
    assert 1.0 <= halves.loc[20_000, "ci_low"] < 1.1 and 1.9 < halves.loc[20_000, "ci_high"] <= 2
    assert halves.loc[10_000, "bound"] == pytest.approx(4.0)
    statistics = ["smallest", "crossing", "passrate", "midpoint"]
    assert list(table.statistic) == statistics * 2  # midpoint last
    assert list(table.threshold.fillna("none")) == ["0.9", "0.9", "0.9", "none"] * 2
    # the joint arm's N* sits on its smallest size run (1,000): each known ratio a lower bound
    assert set(table.side.dropna()) == {"at least"} and table.side[table.ratio.isna()].isna().all()
    figure = plot_ratio_vs_data(table, tmp_path / "r.png")  # ringed by an open triangle
    assert figure.read_bytes()[:4] == b"\x89PNG"
    one_pool = table[table.train_size == 20_000]  # nothing to draw against the data
    assert plot_ratio_vs_data(one_pool, tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()
    # a percentile interval that misses its estimate (one resample: --bootstrap 1) is drawn
    off = table.assign(ci_low=table.ratio * 1.5, ci_high=table.ratio * 2)
    assert plot_ratio_vs_data(off, tmp_path / "off.png").read_bytes()[:4] == b"\x89PNG"
    no_alone = runs[~((runs.mixture == "SUM") & (runs.train_size == 10_000))]
    table = ratio_table(transitions(no_alone, thresholds=(0.9,), n_boot=5), no_alone)
    assert set(table.train_size) == {20_000}  # no SUM alone on 10,000: no ratio there


def test_transition_cli_names_each_pool_and_prints_the_bound(monkeypatch, tmp_path, capsys):
    import mechlistops.transition as transition_mod
    from mechlistops.cli import main

    monkeypatch.setattr(transition_mod, "accuracies_at", lambda *a: _two_pools())
    argv = ["transition", str(tmp_path / "a"), str(tmp_path / "b"), "--bootstrap", "20"]
    assert main(argv) == 2  # several paths: where the results go must be said
    assert "--out" in capsys.readouterr().err
    assert main([*argv, "--threshold", "0.9", "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "SUM in SUM+MAX+MED, 10,000 sampled (3 runs):" in printed
    assert "smallest_0.9: at least 4.00x (SUM alone never reaches it)" in printed
    assert "SUM in SUM+MAX+MED, 20,000 sampled (3 runs):" in printed
    assert "smallest_0.9: at least 2.00x [" in printed  # the joint N* at its smallest size run
    assert "median crosses 0.9 at (interpolated in log parameters): 1,920" in printed
    assert "1,000 [1,000, 1,000] (passed at the smallest size run: at most this)" in printed
    assert f"crossing_0.9: at least {2 ** (0.8 / 0.85):.2f}x" in printed
    assert "half the runs pass 0.9 at (logistic fit over every run): 1,414" in printed
    assert "passrate_0.9: at least 1.41x" in printed
    assert "median accuracy by size (runs): 1,000: 0.100 (3), 4,000: 0.200 (3)" in printed
    by_size = "runs at 0.9 or more by size (the share's 95% Wilson interval): "
    assert by_size + "1,000: 0 of 3 (0.00-0.56), 4,000: 0 of 3 (0.00-0.56)" in printed  # 10,000
    assert by_size + "1,000: 0 of 3 (0.00-0.56), 2,000: 3 of 3 (0.44-1.00)" in printed  # 20,000
    cells = pd.read_csv(tmp_path / "out" / "transitions_sizes.csv")
    assert len(cells) == 6 and cells["runs"].sum() == len(_two_pools())
    assert str(tmp_path / "out" / "transitions_sizes.csv") in printed
    assert (
        "  at 0.9: SUM in SUM+MAX+MED against SUM alone, 20,000 sampled: "
        "1,000: 3 of 3 against 0 of 3, p = 0.1\n"
    ) in printed
    assert "SUM alone: 10,000 sampled against 20,000 sampled: 1,000: 0 of 3 against 0" in printed
    tests = pd.read_csv(tmp_path / "out" / "transitions_shares.csv")
    assert len(tests) == 4 and str(tmp_path / "out" / "transitions_shares.csv") in printed
    assert "  at 0.9: SUM alone, 20,000 sampled: 1,000 -> 2,000: 0 of 3 -> 3 of 3, p = 0.1\n" in (
        printed  # each size against the next; 10,000's SUM alone fails throughout: no line
    )
    steps = pd.read_csv(tmp_path / "out" / "transitions_steps.csv")
    assert len(steps) == 2 and str(tmp_path / "out" / "transitions_steps.csv") in printed
    assert (tmp_path / "out" / "transitions.png").read_bytes()[:4] == b"\x89PNG"
    assert len(pd.read_csv(tmp_path / "out" / "runs.csv")) == len(_two_pools())
    passing = tmp_path / "out" / "transitions_passrate.png"
    assert passing.read_bytes()[:4] == b"\x89PNG" and str(passing) in printed
    by_data = tmp_path / "out" / "transitions_ratio_vs_data.png"  # two pool sizes
    assert by_data.read_bytes()[:4] == b"\x89PNG" and str(by_data) in printed


def test_a_runs_table_fits_as_its_runs_do(tmp_path, capsys):
    """`transition` writes the accuracies it read as runs.csv; given that table instead of the
    runs, it fits the same transitions (to the JSON's last digit)."""
    import json

    from mechlistops.cli import main
    from mechlistops.transition import read_runs_table, write_runs_table

    runs = _two_pools().assign(accuracy_heldout=lambda d: d.accuracy, step=100)
    table = write_runs_table(runs, tmp_path / "in.csv")
    argv = ["transition", str(table), "--threshold", "0.9", "--bootstrap", "30", "--heldout"]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    fitted = json.loads((tmp_path / "a" / "transitions_heldout.json").read_text())
    expected = transitions(runs, thresholds=(0.9,), n_boot=30)
    assert fitted == json.loads(expected.to_json(orient="records"))
    again = read_runs_table(str(tmp_path / "a" / "runs.csv"))  # what it read, written back
    pd.testing.assert_frame_equal(again, read_runs_table(table))
    assert write_runs_table(again, str(tmp_path / "c.csv")) == tmp_path / "c.csv"  # str paths too
    out = str(tmp_path / "b")  # under tmp_path: a bare "b" was written into the checkout
    assert main([*argv[:1], str(tmp_path / "a" / "runs.csv"), *argv[2:], "--out", out]) == 0
    assert "SUM in SUM+MAX+MED, 10,000 sampled (3 runs):" in capsys.readouterr().out


def test_tables_of_two_studies_laid_out_alike_are_read_together(tmp_path):
    """Two studies whose runs share names (joint/joint_d8_s0 mod 10 and mod 11) are both
    counted; the same runs given twice are still refused."""
    from mechlistops.errors import ConfigError
    from mechlistops.transition import accuracies_at, write_runs_table

    runs = _two_pools()
    mod10 = write_runs_table(runs, tmp_path / "mod10.csv")
    mod11 = write_runs_table(runs.assign(data=runs.data + ", mod 11"), tmp_path / "mod11.csv")
    both = accuracies_at([mod10, mod11])
    assert len(both) == 2 * len(runs) and both.run.duplicated().sum() == len(runs)
    assert set(transitions(both, thresholds=(0.9,), n_boot=10).data) == {
        *runs.data,
        *(runs.data + ", mod 11"),
    }
    with pytest.raises(ConfigError, match="is given twice"):
        accuracies_at([mod10, mod10])
    other_seed = write_runs_table(runs.assign(seed=runs.seed + 3), tmp_path / "s.csv")
    with pytest.raises(ConfigError, match="is given twice"):  # same names and data: one study
        accuracies_at([mod10, write_runs_table(runs, tmp_path / "copy.csv")])
    assert len(accuracies_at([mod10, other_seed])) == 2 * len(runs)


def test_a_hand_made_table_needs_only_the_essentials(tmp_path):
    from mechlistops.transition import read_runs_table

    path = tmp_path / "t.csv"
    path.write_text("run,op,mixture,seed,n_params,accuracy\na,SUM,SUM,0,1718,0.5\n")
    df = read_runs_table(path)
    assert df.data.iloc[0] == "not stated" and df.accuracy_heldout.iloc[0] is None
    assert df.n_params.dtype == "int64" and df.accuracy.iloc[0] == 0.5


def test_report_table_reads_both_threshold_statistics_and_their_ratios():
    from mechlistops.report import TRANSITION_THRESHOLDS, _two_lines, transition_table

    runs = _two_pools()
    fits = transitions(runs, thresholds=TRANSITION_THRESHOLDS, n_boot=20)
    table = transition_table(fits, runs)
    joint20 = table.loc[("SUM", "SUM+MAX+MED", "20,000 sampled")]
    assert joint20["N* (0.9)"].startswith("1,000")
    assert joint20["crosses (0.9)"].endswith("(passed at the smallest size run: at most this)")
    # the joint arm's N* sits on its smallest size run: each ratio is a lower bound
    assert joint20["alone / here (0.9)"].startswith("at least 2.0x")
    assert joint20["alone / here (0.9)"].endswith("(this mixture's N* is at its smallest size run)")
    assert joint20["alone / here, crossing (0.9)"].startswith(f"at least {2 ** (0.8 / 0.85):.1f}x")
    alone20 = table.loc[("SUM", "SUM", "20,000 sampled")]
    assert (
        alone20["crosses (0.9)"].startswith("1,920") and "at most" not in alone20["crosses (0.9)"]
    )
    assert alone20["alone / here, crossing (0.9)"] == ""  # the op alone has no ratio
    joint10 = table.loc[("SUM", "SUM+MAX+MED", "10,000 sampled")]
    assert joint10["alone / here, crossing (0.9)"] == "at least 4.0x (SUM alone never reaches it)"
    assert alone20["half pass (0.9)"].startswith("1,414")
    assert joint20["half pass (0.9)"].endswith("(passed at the smallest size run: at most this)")
    assert joint20["alone / here, half pass (0.9)"].startswith("at least 1.4x")
    assert table.loc[("SUM", "SUM", "10,000 sampled"), "crosses (0.9)"] == "not reached"
    page = _two_lines(table)  # as the report shows it: each value above its interval or note
    assert "at least 2.0x<br><span class='nowrap'>[" in page
    assert "1,000<br><span class='nowrap'>[1,000, 1,000]</span> (passed at the" in page
    assert "at least 4.0x<br>(SUM alone never reaches it)" in page


def test_figure_takes_more_mixtures_than_a_palette_has_colours(tmp_path):
    from mechlistops.plots import plot_transitions

    rows = [
        {"op": "SUM", "mixture": f"SUM+M{i}", "n_params": n, "seed": 0, "accuracy": 0.1 + i / 20}
        for i in range(12)
        for n in (1_000, 3_000, 10_000, 30_000)
    ]
    df = pd.DataFrame(rows)
    out = plot_transitions(df, transitions(df, n_boot=5), tmp_path / "t.png")
    assert out.read_bytes()[:4] == b"\x89PNG"


def _analysis_script(name: str):
    """An analysis script of analyses/ as a module (scripts, not part of the package)."""
    path = Path(__file__).resolve().parents[1] / "analyses" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{name}_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bounds_ratios_keep_pools_apart_and_bound_what_sum_alone_never_reaches(tmp_path):
    bounds = _analysis_script("bounds")
    runs = _two_pools()  # as bounds.table reads runs
    df = runs.rename(columns={"accuracy": "sum_heldout"}).assign(
        sum_pool=runs.accuracy, train_size=runs.data.str.split().str[0].str.replace(",", "")
    )
    df = df.assign(train_size=df.train_size.astype(int))
    ratios = bounds.ratios(df)  # 1,000 seed resamples per arm: computed once
    rows = ratios.assign(threshold=ratios.threshold.fillna("-"))
    rows = rows.set_index(["data", "statistic", "threshold"])
    assert rows.loc[("20,000 sampled", "smallest", "0.9"), "ratio"] == pytest.approx(2.0)
    assert pd.isna(rows.loc[("20,000 sampled", "smallest", "0.9"), "bound"])
    assert pd.isna(rows.loc[("10,000 sampled", "smallest", "0.9"), "ratio"])
    assert rows.loc[("10,000 sampled", "smallest", "0.9"), "bound"] == pytest.approx(4.0)
    assert pd.isna(rows.loc[("10,000 sampled", "midpoint", "-"), "bound"])  # no fit, no bound
    text = bounds.summary(df, ratios)
    assert (
        "- SUM alone over SUM+MAX+MED, 10,000 sampled, 100 wsd, at 0.9: "
        "at least 4.0x (SUM alone never reaches it)"
    ) in text
    assert (
        "- SUM alone over SUM+MAX+MED, 20,000 sampled, 100 wsd, at 0.9 (the medians' "
        f"interpolated crossing): {2 ** (0.8 / 0.85):.1f}x"
    ) in "\n".join(text)
    assert (
        "- SUM alone over SUM+MAX+MED, 20,000 sampled, 100 wsd, at 0.9 (where half the runs "
        "pass, a logistic fit): 1.4x"
    ) in "\n".join(text)
    assert "- SUM, 20,000 sampled, 100 wsd: first size with median >= 0.9: 2,000" in text
    plot_ratio_vs_data(ratios, tmp_path / "ratio_vs_data.png")
    assert (tmp_path / "ratio_vs_data.png").stat().st_size > 0


def test_the_intervals_are_the_same_in_any_number_of_processes():
    # each statistic resamples on its own stream, the midpoint's drawn before its fits are
    # spread over processes: one process or two give the same table, bit for bit
    df = pd.concat(
        [_synthetic("SUM", "SUM", x0=4.8, seed=1), _synthetic("SUM", "SUM+MAX+MED", x0=4.3, seed=2)]
    )
    one = transitions(df, thresholds=(0.5, 0.9), n_boot=40, n_jobs=1)
    two = transitions(df, thresholds=(0.5, 0.9), n_boot=40, n_jobs=2)
    assert one["midpoint_ci"].notna().all()
    assert one.to_json(orient="records") == two.to_json(orient="records")


def test_realisations_pair_seeds_across_platforms_and_count_the_runs_that_change_side(
    tmp_path, capsys
):
    realisations = _analysis_script("realisations")

    def table(name, heldout):
        rows = [
            {
                "run": f"sum_s{seed}",
                "op": "SUM",
                "mixture": "SUM",
                "data": "10,000 sampled",
                "training": "28,000 wsd",
                "seed": seed,
                "n_params": 4950,
                "accuracy": acc,
                "accuracy_heldout": acc,
            }
            for seed, acc in heldout.items()
        ]
        path = tmp_path / f"{name}.csv"
        pd.DataFrame(rows).to_csv(path, index=False)
        return path

    a = table("a", {0: 0.95, 1: 0.20, 2: 0.97, 3: 0.10})
    b = table("b", {0: 0.60, 1: 0.25, 2: 0.91})  # seed 0 changes side; seed 3 not run
    out = tmp_path / "out"
    realisations.main([str(out), f"AVX512={a}", f"AVX2={b}"])
    text = (out / "realisations.md").read_text()
    assert "| AVX512 | 4 | 2 | 0.50 [0.15, 0.85] | 0.575 |" in text
    assert "| AVX2 | 3 | 1 | 0.33 [0.06, 0.79] | 0.600 |" in text
    assert "| AVX512 | AVX2 | 3 | 1 | 0.060 |" in text
    wide = pd.read_csv(out / "realisations.csv")
    assert len(wide) == 4 and wide.AVX2.isna().sum() == 1
    assert (out / "realisations.png").read_bytes()[:4] == b"\x89PNG"
    script_fails_in_one_line(
        capsys,
        lambda: realisations.main([str(out), f"A={a}", "--params", "3142"]),
        "realisations: error: ",
        "no finished run trains SUM at 3,142 parameters",
    )
    twice = table("twice", {0: 0.9})
    two = pd.concat([pd.read_csv(twice)] * 2).assign(run=["sum_s0", "again/sum_s0"])
    two.to_csv(twice, index=False)
    script_fails_in_one_line(
        capsys,
        lambda: realisations.main([str(out), f"A={a}", f"B={twice}"]),
        "realisations: error: ",
        "share a configuration and seed",
    )
    with pytest.raises(SystemExit):
        realisations.main([str(out), "no-label"])


def test_long_runs_reads_folders_of_runs_and_keeps_budgets_apart(tmp_path, capsys):
    from mechlistops.train import train

    long_runs = _analysis_script("long_runs")
    folder = tmp_path / "runs"
    for steps in (40, 80):  # one seed, two budgets
        cfg = tiny_config(
            data={"ops": ("SUM", "MAX")},
            train={"steps": steps, "eval_interval": 20, "save_interval": 40, "warmup_steps": 5},
        )
        train(cfg, folder / f"s{steps}", progress=False)
    out = tmp_path / "out"
    long_runs.main([str(out), str(folder), "--examples", "none", "--steps", "40", "--tail", "2"])
    curves = pd.read_csv(out / "long_runs.csv")
    assert sorted(curves.groupby("training").step.max()) == [40, 80]
    assert len(curves) == 2 + 4  # an evaluation every 20 steps
    rows = [line for line in (out / "long_runs.md").read_text().splitlines() if "SUM+MAX" in line]
    assert [r.split(" | ")[1] for r in rows] == [
        "40 cosine, batch 64, warmup 5",
        "80 cosine, batch 64, warmup 5",
    ]
    at_40 = curves[curves.step == 40].sort_values("training").heldout
    assert [r.split(" | ")[5] for r in rows] == [f"{v:.2f}" for v in at_40]
    assert (out / "long_runs.png").read_bytes()[:4] == b"\x89PNG"
    script_fails_in_one_line(
        capsys,
        lambda: long_runs.main([str(out), str(folder), "--op", "MED"]),
        "long_runs: error: no evaluations of MED",
    )
    with pytest.raises(SystemExit):
        long_runs.main([str(out), str(folder), "--steps", "forty"])


def test_training_label_names_the_decay_and_each_knob_that_is_not_the_default(tmp_path):
    def label(**train):
        return training_label(tmp_path, tiny_config(train=train))

    base = {"batch_size": 256, "warmup_steps": 100, "steps": 6000}  # tiny_config's are not
    wsd = base | {"steps": 28000, "schedule": "wsd", "decay_steps": 10000, "min_lr_frac": 0.0}
    assert label(**base) == "6,000 cosine"
    assert label(**base, min_lr_frac=0.0) == "6,000 cosine (to 0)"
    assert label(**base, schedule="constant", min_lr_frac=0.0) == "6,000 constant"
    assert label(**wsd) == "28,000 wsd (10,000 decay to 0)"
    assert label(**wsd | {"steps": 48000, "decay_steps": 30000}) == (
        "48,000 wsd (30,000 decay to 0)"
    )
    assert label(**wsd | {"decay_steps": 18000}) == "28,000 wsd (18,000 decay to 0)"
    assert label(**wsd | {"min_lr_frac": 0.05}) == "28,000 wsd (10,000 decay to 0.05x)"
    assert label(**wsd | {"lr": 1e-3, "weight_decay": 1.0, "batch_size": 128}) == (
        "28,000 wsd (10,000 decay to 0), lr 0.001, weight decay 1, batch 128"
    )
    assert label() == "300 cosine, batch 64, warmup 20"  # tiny_config's own
    assert label(**base, stop_accuracy=0.99, stop_patience=4) == (
        "6,000 cosine, stopping at accuracy 0.99, stopping after 4 evaluations without gain"
    )
    assert label(**base, stop_delta=0.01) == "6,000 cosine"  # no patience: the delta is unused
    assert label(**base, stop_patience=4, stop_delta=0.01) == (
        "6,000 cosine, stopping after 4 evaluations without gain, gain 0.01"
    )
    # A budget in SUM examples: one label for every mixture, whatever steps each needs.
    budget = base | {"budget_op": "SUM", "budget_examples": 25_600}
    alone, joint = (
        tiny_config(data={"ops": ops}, train=budget) for ops in (("SUM",), ("SUM", "MAX", "MED"))
    )
    assert (alone.train.steps, joint.train.steps) == (100, 300)
    assert {training_label(tmp_path, c) for c in (alone, joint)} == {"25,600 SUM examples, cosine"}
    # A continued run: its source's label + its own, naming the weights it copied.
    from mechlistops.train import train

    source = tmp_path / "source"
    train(tiny_config(train=wsd | {"steps": 20, "decay_steps": 10}), source, progress=False)
    go_on = {"init_from": str(source), "schedule": "linear", "steps": 4000}
    assert label(**base | go_on) == "20 wsd (10 decay to 0) + 4,000 linear"
    assert label(**base | go_on | {"transfer": "embed"}) == (
        "20 wsd (10 decay to 0) + 4,000 linear, embed weights copied"
    )
    assert TrainConfig().weight_decay == 0.1 and TrainConfig().min_lr_frac == 0.1  # as above


def test_runs_of_equal_steps_and_other_decays_are_never_pooled(tmp_path):
    from mechlistops.train import train

    for decay in (10, 30):
        cfg = tiny_config(
            data={"ops": ("SUM",)},
            model={"d_model": 16},
            train={"steps": 40, "schedule": "wsd", "decay_steps": decay, "warmup_steps": 5}
            | {"eval_interval": 40, "save_interval": 40},
        )
        train(cfg, tmp_path / f"decay{decay}", progress=False)
    df = final_accuracies(tmp_path)
    assert sorted(df.training) == [
        "40 wsd (10 decay to 0.1x), batch 64, warmup 5",
        "40 wsd (30 decay to 0.1x), batch 64, warmup 5",
    ]
    out = transitions(df, thresholds=(0.9,), n_boot=10)
    assert len(out) == 2 and out.training.nunique() == 2


def test_sizes_a_few_percent_apart_share_one_tick_label():
    """1,718 and 1,735 parameters (d_model 8 mod 10 and mod 11) printed over each other."""
    from mechlistops.plots import size_labels

    assert size_labels([1163, 1718, 1735, 3142, 3167, 9767]) == [
        "1,163",
        "1,718 / 1,735",
        "",
        "3,142 / 3,167",
        "",
        "9,767",
    ]
    assert size_labels([1000, 1099, 1100, 1300]) == ["1,000 / 1,099", "", "1,100", "1,300"]
    assert size_labels([]) == []
