"""Transition fits on synthetic sweeps with known midpoints."""

import numpy as np
import pandas as pd
import pytest

from mechlistops.transition import fit_transition, smallest_passing, transitions


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
