# %% [markdown]
# # How much data an operator needs: the share of runs that learn it against the pool size
# For the runs given (runs tables, runs, sweeps or folders of runs) trained on finite pools,
# per operator (--op, default SUM), arm (mixture), model size, way of training and task apart
# from the pool size (its draw, modulus, operands): on each pool, the runs whose held-out
# accuracy (test-set accuracy where a runs table lacks it) reaches --threshold (default 0.9),
# of how many, with the share's 95% Wilson
# interval; the pool at which half the runs pass, by `mechlistops.transition.pass_rate` (the
# logistic fit of passing in log pool size that `transition` reads along model size), with a
# 95% interval from resampling the runs of each pool; and the likelihood-ratio test of a
# share that changes with the pool (the fit against one share for every pool; chi-square,
# 1 df; none where the runs separate, all failing on the smaller pools and all passing on
# the larger), with the fit's coefficients. A group needs two pools or more.
# Writes OUT/data_need.csv (one row per group and pool), OUT/data_need.md and
# OUT/data_need.png (the shares against the pool, with the fitted curve). Used for stages
# 10h and 10i of docs/findings.md.
# Run: `python analyses/data_need.py OUT RUNS_OR_TABLE [...] [--op SUM] [--threshold 0.9]
# [--bootstrap 1000]`.

# %%
import argparse
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from scipy.stats import chi2
from tqdm.auto import tqdm

from mechlistops.analysis.common import save_outputs, script_errors
from mechlistops.cli.options import bounded
from mechlistops.errors import ConfigError
from mechlistops.transition import (
    accuracies_at,
    logistic_fit,
    pass_rate,
    pass_share,
    resampled_ci,
    separation,
)

KEYS = ["op", "mixture", "task", "training", "n_params"]  # one group: one curve over pools


def task_of(data: str) -> str:
    """A `training_data` label without its pool size: '13,125 sampled, mod 11, 3 operands'
    -> 'sampled, mod 11, 3 operands'."""
    return re.sub(r"^[\d,]+ ", "", data)


def trend_fit(
    pool: np.ndarray, passed: np.ndarray
) -> tuple[tuple[float, float, float], float] | None:
    """The logistic fit of passing in log10 pool size, as (centre, intercept, slope) with
    P(pass) = 1 / (1 + exp(-(intercept + slope * (log10(pool) - centre)))), and the
    likelihood-ratio test of it against one share for all pools (chi-square, 1 df): its p.
    None where the runs separate (no finite fit) or all agree."""
    fails, wins = pool[~passed], pool[passed]
    if not len(fails) or not len(wins):
        return None
    if fails.max() <= wins.min() or wins.max() <= fails.min():  # separated either way
        return None
    centre = float(np.log10(pool).mean())
    x = np.log10(pool) - centre
    b0, b1 = logistic_fit(x, passed.astype(float))
    z = b0 + b1 * x
    fitted = float(np.sum(passed * z - np.logaddexp(0, z)))
    share = passed.mean()
    flat = float(passed.sum() * np.log(share) + (~passed).sum() * np.log(1 - share))
    return (centre, b0, b1), float(chi2.sf(2 * (fitted - flat), 1))


def half_pool(frame: pd.DataFrame, threshold: float, n_boot: int, seed: int = 0):
    """`pass_rate` along the pool (`frame`'s n_params holds each run's pool): the pool where
    half the runs pass, and its 95% interval from resampling the runs within each pool (None
    where fewer than half the resamples have one)."""
    rng = np.random.default_rng(seed)  # a resample that separates draws its N* in the gap
    ci = resampled_ci(frame, lambda d: pass_rate(d, threshold, rng), n_boot, rng)
    return pass_rate(frame, threshold), ci


def need_table(df: pd.DataFrame, threshold: float, n_boot: int) -> pd.DataFrame:
    rows = []
    groups = list(df.groupby(KEYS, sort=True))
    for key, g in tqdm(groups, desc="groups", disable=len(groups) < 2):
        if g.train_size.nunique() < 2:
            continue
        frame = pd.DataFrame({"n_params": g.train_size, "accuracy": g.accuracy})
        half, ci = half_pool(frame, threshold, n_boot)
        gap = separation(frame, threshold) or (np.nan, np.nan)  # pass_rate reads the gap
        fit = trend_fit(g.train_size.to_numpy(float), g.accuracy.to_numpy(float) >= threshold)
        (centre, b0, b1), p = fit or ((np.nan, np.nan, np.nan), None)
        for pool, runs in g.groupby("train_size"):
            passed, n, low, high = pass_share(runs.accuracy, threshold)
            rows.append(
                {**dict(zip(KEYS, key)), "train_size": int(pool), "runs": n, "passed": passed}
                | {"share": passed / n, "share_low": low, "share_high": high}
                | {"median": float(runs.accuracy.median()), "half_pool": half}
                | {"half_pool_low": ci and ci[0], "half_pool_high": ci and ci[1]}
                | {"gap_below": gap[0], "gap_above": gap[1], "trend_p": p}
                | {"fit_centre": centre, "fit_intercept": b0, "fit_slope": b1}
            )
    return pd.DataFrame(rows)


def summary(table: pd.DataFrame, op: str, threshold: float, which: str) -> str:
    lines = [
        f"# How much data {op} needs: runs at {threshold} or more of {which} accuracy by pool",
        "",
        "| arm | parameters | task | training | runs passing by pool (95% Wilson) | half pass "
        "at [95%] | trend p |",
        "|---|---|---|---|---|---|---|",
    ]
    for _, g in table.groupby(KEYS, sort=False):
        r = g.iloc[0]
        shares = "; ".join(
            f"{x.train_size:,}: {x.passed} of {x.runs} ({x.share_low:.2f}-{x.share_high:.2f})"
            for x in g.itertuples()
        )
        if r.half_pool is None or np.isnan(r.half_pool):
            half = "not reached"
        else:
            half = f"{r.half_pool:,.0f}"
            if r.gap_below == r.gap_above:
                half += f" (the runs separate at {r.gap_below:,.0f}, the one pool with both)"
            elif not np.isnan(r.gap_below):
                half += f" (the runs separate: all fail to {r.gap_below:,.0f}, all pass from "
                half += f"{r.gap_above:,.0f}; the middle of the gap)"
            elif r.half_pool == g.train_size.min():
                half += " (at most: the smallest pool run)"
            if r.half_pool_low is not None and not np.isnan(r.half_pool_low):
                half += f" [{r.half_pool_low:,.0f}, {r.half_pool_high:,.0f}]"
        p = "-" if r.trend_p is None or np.isnan(r.trend_p) else f"{r.trend_p:.2g}"
        arm = r.op + " alone" if r.mixture == r.op else f"{r.op} in {r.mixture}"
        lines.append(
            f"| {arm} | {r.n_params:,} | {r.task} | {r.training} | {shares} | {half} | {p} |"
        )
    return "\n".join(lines) + "\n"


def plot(table: pd.DataFrame, op: str, threshold: float, path) -> None:
    panels = list(table.groupby(["task", "training", "n_params"], sort=True))
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 4 * rows), squeeze=False)
    mixtures = sorted(table.mixture.unique(), key=lambda m: (m != op, m))  # the op alone first
    palette = dict(zip(mixtures, sns.color_palette("colorblind")))
    for ax, ((task, training, n), g) in zip(axes.flat, panels):
        for i, (mixture, m) in enumerate(g.groupby("mixture")):
            color = palette[mixture]
            x = m.train_size * 1.006 ** (i - 0.5)  # the arms a little apart
            err = [m.share - m.share_low, m.share_high - m.share]
            label = f"{op} alone" if mixture == op else mixture
            ax.errorbar(x, m.share, yerr=err, fmt="o", color=color, capsize=3, label=label)
            half = m.half_pool.iloc[0]
            if half is not None and not np.isnan(half):
                ax.axvline(half, color=color, ls="--", lw=1)
            centre, b0, b1 = m[["fit_centre", "fit_intercept", "fit_slope"]].iloc[0]
            if not np.isnan(b1):  # the fitted share, where the runs overlap
                grid = np.geomspace(m.train_size.min(), m.train_size.max(), 100)
                fitted = 1 / (1 + np.exp(-(b0 + b1 * (np.log10(grid) - centre))))
                ax.plot(grid, fitted, color=color, lw=1, alpha=0.6)
        ax.axhline(0.5, color="grey", lw=0.6)
        pools = sorted(g.train_size.unique())
        ax.set_xscale("log")
        ax.set_xticks(pools, [f"{p / 1000:g}k" for p in pools], fontsize=8, rotation=40)
        ax.minorticks_off()
        ax.set(ylim=(-0.03, 1.03), xlabel="training pool per operator")
        ax.set_title(f"{n:,} parameters\n{task}; {training}", fontsize=8)
        ax.legend(fontsize=8)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for row in axes:
        row[0].set_ylabel(f"runs with {op} held-out >= {threshold} (95% Wilson)")
    title = "the share of runs that learn, against the pool (line: the logistic fit; dashed: half)"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("out", type=Path)
    p.add_argument("runs", type=Path, nargs="+", help="runs tables, runs, sweeps or folders")
    p.add_argument("--op", default="SUM")
    p.add_argument("--threshold", type=bounded(float, 0.001, 1.0), default=0.9)
    p.add_argument("--bootstrap", type=bounded(int, 1, 100_000), default=1000)
    a = p.parse_args()
    with script_errors("data_need"):
        df = accuracies_at(a.runs)
        df = df[(df.op == a.op) & df.train_size.notna()].copy()
        heldout = len(df) > 0 and df.accuracy_heldout.notna().all()
        if heldout:  # the test set without the pool's expressions: what a run learned
            df["accuracy"] = df.accuracy_heldout.astype(float)
        df["task"] = df.data.map(task_of)
        df["train_size"] = df.train_size.astype(int)
        table = need_table(df, a.threshold, a.bootstrap) if len(df) else pd.DataFrame()
        if table.empty:
            raise ConfigError(
                f"no {a.op} runs on two pools or more of one arm, size and task in "
                f"{', '.join(map(str, a.runs))}"
            )
        text = summary(table, a.op, a.threshold, "held-out" if heldout else "test-set")
        save_outputs(a.out, "data_need", table, text, lambda p: plot(table, a.op, a.threshold, p))


if __name__ == "__main__":
    main()
