# %% [markdown]
# # SUM's held-out accuracy against parameters, over any finished runs
# Reads finished runs (given directly, or every finished run inside the folders given, at any
# depth: sweeps, scans trained one by one such as scan/alone/..., or folders of continued runs
# such as `analyses/anneal.py` writes; or runs tables, the runs.csv `mechlistops transition`
# writes, such as docs/data/stage9o_runs.csv) and plots SUM's final held-out accuracy against the
# parameter count (runs as points, medians as lines), one colour per mixture and one marker
# per way of training (steps, schedule and a weight decay other than the default; a continued
# run as its source's steps + its own) and training data (pool size and draw, or a fresh
# stream):
# runs on different pools are never pooled. Writes bounds.csv (one row per run), bounds.md
# (median and per-seed accuracy per mixture, data, training and size, with the first size
# whose median reaches each threshold and, per data and training, SUM alone's such size, the
# medians' interpolated crossing of each threshold and the sigmoid midpoint over each
# mixture's, with a 95% interval from resampling seeds, or a lower
# bound where SUM alone never reaches the threshold), ratios.csv (those ratios, one per row)
# and bounds.png into OUT; given runs on two or more pool sizes, also ratio_vs_data.png: each
# ratio against the pool size.
# Used for stages 5-9 of docs/findings.md: where each arm's transition lies, whatever budget
# each size was run at, and how the ratio moves with SUM's data.
# Run: `python analyses/bounds.py OUT RUN_OR_FOLDER [...]`.

# %%
import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from mechlistops.analysis.common import script_errors
from mechlistops.errors import ConfigError
from mechlistops.plots import parameter_axis, plot_ratio_vs_data
from mechlistops.transition import accuracies_at, ratio_table, transitions

THRESHOLDS = (0.5, 0.9)


def table(paths: list[Path]) -> pd.DataFrame:
    """One row per finished run that trains SUM: its SUM accuracies at the end of training."""
    df = accuracies_at(paths)
    if df.empty:
        return df
    df = df[df.op == "SUM"].rename(
        columns={"accuracy_heldout": "sum_heldout", "accuracy_pool": "sum_pool"}
    )
    columns = ["run", "mixture", "data", "train_size", "training", "n_params", "seed"]
    return df[[*columns, "sum_heldout", "sum_pool"]].reset_index(drop=True)


def summary(df: pd.DataFrame, ratio_rows: pd.DataFrame) -> list[str]:
    lines = [
        "| mixture | data | training | parameters | SUM held-out, median (per seed) "
        "| SUM pool, median |",
        "|---|---|---|---|---|---|",
    ]
    firsts = []
    for (mixture, data, how), g in df.groupby(["mixture", "data", "training"]):
        medians = {}
        for n, h in g.groupby("n_params"):
            h = h.sort_values("seed")
            medians[n] = h.sum_heldout.median()
            per_seed = " / ".join(f"{x:.2f}" for x in h.sum_heldout)
            lines.append(
                f"| {mixture} | {data} | {how} | {n:,} | {medians[n]:.2f} ({per_seed}) | "
                f"{h.sum_pool.median():.2f} |"
            )
        for t in THRESHOLDS:
            hit = [n for n, m in sorted(medians.items()) if m >= t]
            where = f"{hit[0]:,}" if hit else f"not reached up to {max(medians):,}"
            firsts.append(f"- {mixture}, {data}, {how}: first size with median >= {t}: {where}")
    return lines + [""] + firsts + ([""] + ratio_lines(ratio_rows) if len(ratio_rows) else [])


def ratios(df: pd.DataFrame) -> pd.DataFrame:
    """Per training data and way of training, and per mixture beside SUM alone: SUM alone's
    first size whose median reaches each threshold over the mixture's, the same for the
    medians' interpolated crossings and for the sizes where half the runs pass, and its
    sigmoid midpoint's (where both arms have one), with a 95% interval from resampling seeds
    within each size, or the lower bound that leaves where SUM alone never reaches the
    threshold
    (mechlistops.transition: transitions computes them, ratio_table lists them)."""
    runs = df.rename(columns={"sum_heldout": "accuracy"}).assign(op="SUM")
    return ratio_table(transitions(runs, thresholds=THRESHOLDS), runs)


def ratio_lines(rows: pd.DataFrame) -> list[str]:
    lines = []
    for _, r in rows.iterrows():
        where = {
            "smallest": f"{r.threshold}",
            "crossing": f"{r.threshold} (the medians' interpolated crossing)",
            "passrate": f"{r.threshold} (where half the runs pass, a logistic fit)",
            "midpoint": "the sigmoid midpoint",
        }[r.statistic]
        if pd.notna(r.ratio):
            ci = "undefined (too few resamples pass)"
            if pd.notna(r.ci_low):
                ci = f"{r.ci_low:.1f}-{r.ci_high:.1f}x"
            text = f"{r.ratio:.1f}x, 95% interval {ci}"
        elif pd.notna(r.bound):
            text = f"at least {r.bound:.1f}x (SUM alone never reaches it)"
        else:
            text = "undefined (not reached, or no sigmoid fit, in an arm)"
        lines.append(f"- SUM alone over {r.mixture}, {r.data}, {r.training}, at {where}: {text}")
    return lines


def plot(df: pd.DataFrame, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    df = df.assign(way=df.training + "; " + df.data)  # how and on what each run trained
    palette = dict(zip(sorted(df.mixture.unique()), sns.color_palette("tab10")))
    sns.scatterplot(
        data=df.rename(columns={"way": "training; data"}),
        x="n_params",
        y="sum_heldout",
        hue="mixture",
        style="training; data",
        palette=palette,
        s=60,
        alpha=0.7,
        ax=ax,
    )
    for (mixture, _), g in df.groupby(["mixture", "way"]):  # the medians the thresholds read
        med = g.groupby("n_params").sum_heldout.median()
        ax.plot(med.index, med.values, color=palette[mixture], lw=1.2)
    for t in THRESHOLDS:
        ax.axhline(t, color="grey", lw=0.8, ls="--")
    ax.set(ylabel="SUM held-out accuracy", ylim=(0, 1))
    parameter_axis(ax, df.n_params)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# %%
if __name__ == "__main__":
    p = argparse.ArgumentParser(description="SUM held-out accuracy against parameters")
    p.add_argument("out", type=Path)
    p.add_argument(
        "runs", type=Path, nargs="+", help="runs, folders holding runs, or runs tables (.csv)"
    )
    args = p.parse_args()
    with script_errors("bounds"):
        df = table(args.runs)
        if df.empty:
            raise ConfigError("no finished run with SUM among those given")
        args.out.mkdir(parents=True, exist_ok=True)
        rows = ratios(df)
        df.to_csv(args.out / "bounds.csv", index=False)
        rows.to_csv(args.out / "ratios.csv", index=False)
        (args.out / "bounds.md").write_text("\n".join(summary(df, rows)) + "\n")
        plot(df, args.out / "bounds.png")
        if len(rows) and rows[rows.train_size > 0].train_size.nunique() >= 2:
            plot_ratio_vs_data(rows, args.out / "ratio_vs_data.png")
    print((args.out / "bounds.md").read_text())
