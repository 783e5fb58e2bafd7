# %% [markdown]
# # Arms side by side: the hard operation's held-out accuracy at equal examples of it
# Reads any number of sweep directories and, for every arm (mixture, with " after OPS" for a
# curriculum) and size, the held-out accuracy of the arm's *first* operator (SUM in SUM+NADD,
# SSUM in SSUM+MAX+MED) at two reads: after --examples training examples of that operator
# (`transition.accuracies_at(examples=...)`, exact to one evaluation), and at the end of the
# run. Also the partners' held-out accuracy at the end and, where the first operator has a
# pool, its pool accuracy (memorisation). Used for the claim-3 controls and the claim-6
# pretraining arms of docs/findings.md.
# Run: `python analyses/arms.py OUT SWEEP_DIR [SWEEP_DIR ...] [--examples 1536000]`;
# writes OUT/arms_runs.csv, OUT/arms.md and OUT/arms.png.

# %%
import argparse
from functools import partial
from pathlib import Path

import pandas as pd

from mechlistops.analysis.common import save_outputs, script_errors
from mechlistops.errors import ConfigError
from mechlistops.transition import accuracies_at


def arm_runs(sweep: Path, examples: int) -> pd.DataFrame:
    """One row per run of the sweep: the reads above."""
    end = accuracies_at(sweep)
    rows = []
    for (mixture, seed, d_model), g in end.groupby(["mixture", "seed", "d_model"]):
        first = mixture.split(" after ")[0].split("+")[0]
        row = {"arm": mixture, "op": first, "seed": seed, "d_model": d_model}
        row["n_params"] = int(g.n_params.iloc[0])
        own = g[g.op == first].iloc[0]
        row["heldout_end"] = own.accuracy_heldout
        row["pool_end"] = own.accuracy_pool
        row["chance"] = own.baseline  # majority-class accuracy of its test set
        partners = g[g.op != first]
        row["partners_end"] = ", ".join(
            f"{r.op} {r.accuracy_heldout:.2f}" for r in partners.itertuples()
        )
        rows.append(row)
    df = pd.DataFrame(rows)
    for op in df.op.unique():
        at = accuracies_at(sweep, examples=(op, examples))
        at = at[at.op == op].set_index(["mixture", "seed", "d_model"])
        for i, r in df[df.op == op].iterrows():
            key = (r.arm, r.seed, r.d_model)
            if key in at.index:
                df.loc[i, "heldout_at"] = at.loc[key, "accuracy_heldout"]
                df.loc[i, "step_at"] = at.loc[key, "step"]
    df.insert(0, "sweep", sweep.name)
    return df


def summary(runs: pd.DataFrame, examples: int) -> str:
    cols = ["arm", "n_params"]
    lines = [
        f"| arm | parameters | seeds | held-out after {examples:,} examples of the op "
        "(per seed; median) | held-out at the end (median) | pool at the end (median) | "
        "partners at the end (seed 0) |",
        "|---|---|---|---|---|---|---|",
    ]
    for (arm, n), g in runs.sort_values(["op", "n_params"]).groupby(cols, sort=False):
        g = g.sort_values("seed")
        per_seed = " / ".join(f"{v:.2f}" for v in g.heldout_at)
        pool = "-" if g.pool_end.isna().all() else f"{g.pool_end.median():.2f}"
        lines.append(
            f"| {arm} | {n:,} | {len(g)} | {per_seed}; **{g.heldout_at.median():.2f}** | "
            f"{g.heldout_end.median():.2f} | {pool} | {g.partners_end.iloc[0] or '-'} |"
        )
    return "\n".join(lines)


def plot(runs: pd.DataFrame, out: Path, examples: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid")
    data = runs.assign(label=lambda d: d.arm + "\n" + d.n_params.map("{:,}".format))
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * data.label.nunique()), 4))
    sns.stripplot(data, x="label", y="heldout_at", hue="op", size=8, ax=ax, jitter=0.15)
    sns.pointplot(
        data,
        x="label",
        y="heldout_at",
        estimator="median",
        errorbar=None,
        color="k",
        markers="_",
        linestyles="none",
        ax=ax,
    )
    chances = data.groupby("op")["chance"].median().round(2)
    for chance, ops in chances.groupby(chances):  # one line per level, naming its operators
        ax.axhline(chance, color="grey", ls=":", lw=1)
        ax.annotate(
            f"chance ({', '.join(ops.index)})",
            (0, chance),
            fontsize=7,
            color="grey",
            xytext=(2, 2),
            textcoords="offset points",
            xycoords=("axes fraction", "data"),
        )
    ax.set(
        ylim=(0, 1),
        xlabel="",
        ylabel="held-out accuracy of the arm's first operator",
        title=f"after {examples:,} training examples of it (dots: seeds; bar: median)",
    )
    ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110, format="png")
    plt.close(fig)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description="arms side by side at equal examples")
    p.add_argument("out", type=Path)
    p.add_argument("sweeps", type=Path, nargs="+")
    p.add_argument("--examples", type=int, default=1_536_000)
    args = p.parse_args()
    with script_errors("arms"):
        runs = pd.concat([arm_runs(s, args.examples) for s in args.sweeps], ignore_index=True)
        if runs.empty:
            raise ConfigError(f"no runs in {', '.join(map(str, args.sweeps))}")
        text = summary(runs, args.examples)
        draw = partial(plot, runs, examples=args.examples)
        save_outputs(args.out, "arms", runs, text + "\n", draw, csv_name="arms_runs")


if __name__ == "__main__":
    main()
