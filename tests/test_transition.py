"""Transition fits on synthetic sweeps with known midpoints, and the ratios analyses/bounds.py
prints from them."""

import importlib.util
from pathlib import Path

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


def _bounds_script():
    """analyses/bounds.py as a module (an analysis script, not part of the package)."""
    path = Path(__file__).resolve().parents[1] / "analyses" / "bounds.py"
    spec = importlib.util.spec_from_file_location("bounds_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _runs(data, train_size, mixture, accuracies):
    """bounds.table's rows for {n_params: [accuracy per seed]}."""
    return [
        {
            "run": f"{data}/{mixture}_{n}_s{seed}",
            "mixture": mixture,
            "data": data,
            "train_size": train_size,
            "training": "100 wsd",
            "n_params": n,
            "seed": seed,
            "sum_heldout": acc,
            "sum_pool": acc,
        }
        for n, accs in accuracies.items()
        for seed, acc in enumerate(accs)
    ]


def test_bounds_ratios_keep_pools_apart_and_bound_what_sum_alone_never_reaches(tmp_path):
    bounds = _bounds_script()
    df = pd.DataFrame(
        # 20,000: SUM alone passes 0.9 at 2,000, jointly at 1,000 (2x)
        _runs("20,000 sampled", 20_000, "SUM", {1000: [0.1, 0.2, 0.1], 2000: [0.95, 0.92, 0.96]})
        + _runs("20,000 sampled", 20_000, "SUM+MAX+MED", {1000: [0.95, 0.93, 0.96]})
        # 10,000: SUM alone never passes up to 4,000, jointly at 1,000 (at least 4x)
        + _runs("10,000 sampled", 10_000, "SUM", {1000: [0.1, 0.1, 0.2], 4000: [0.3, 0.2, 0.1]})
        + _runs("10,000 sampled", 10_000, "SUM+MAX+MED", {1000: [0.91, 0.95, 0.9]})
    )
    ratios = bounds.ratios(df)  # 1,000 seed resamples per arm: computed once
    rows = ratios.set_index(["data", "threshold"])
    assert rows.loc[("20,000 sampled", "0.9"), "ratio"] == pytest.approx(2.0)
    assert pd.isna(rows.loc[("20,000 sampled", "0.9"), "bound"])
    assert pd.isna(rows.loc[("10,000 sampled", "0.9"), "ratio"])
    assert rows.loc[("10,000 sampled", "0.9"), "bound"] == pytest.approx(4.0)
    assert pd.isna(rows.loc[("10,000 sampled", "midpoint"), "bound"])  # no bound from no fit
    text = bounds.summary(df, ratios)
    assert (
        "- SUM alone over SUM+MAX+MED, 10,000 sampled, 100 wsd, at 0.9: "
        "at least 4.0x (SUM alone never reaches it)"
    ) in text
    assert "- SUM, 20,000 sampled, 100 wsd: first size with median >= 0.9: 2,000" in text
    bounds.plot_ratios(ratios, tmp_path / "ratio_vs_data.png")
    assert (tmp_path / "ratio_vs_data.png").stat().st_size > 0
