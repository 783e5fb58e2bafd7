# %% [markdown]
# # Arms side by side: the hard operation's held-out accuracy per arm, and the share that learn it
# Reads any number of sweep directories, runs or runs tables and, for every arm (mixture, with
# " after OPS" for a curriculum) and size, the held-out accuracy of the arm's *first* operator
# (SUM in SUM+NADD, SSUM in SSUM+MAX+MED, SUM in SUM+PROD) at two reads: after --examples
# training examples of that operator (`transition.accuracies_at(examples=...)`, exact to one
# evaluation; `--examples 0`: at the end, the only read a runs table holds), and at the end of
# the run. Per arm: the runs reaching --threshold (default 0.9) at the first read, with the
# share's 95% Wilson interval, and with --reference ARM Fisher's exact test (two-sided) of
# that share against the reference arm's at the same size. Also the partners' held-out
# accuracy at the end (median over seeds) and, where the first operator has a pool, its pool
# accuracy (memorisation). Runs on other data (pool, modulus, operands) are kept apart, their
# data named. Used for the claim-3 controls, the claim-6 pretraining arms and stage 11 (one
# partner at a time) of docs/findings.md.
# Run: `python analyses/arms.py OUT RUNS_OR_TABLE [...] [--examples 1536000]
# [--threshold 0.9] [--reference SUM+MAX+MED]`; writes OUT/arms_runs.csv, OUT/arms.md and
# OUT/arms.png.

# %%
import argparse
import re
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import fisher_exact

from mechlistops.analysis.common import save_outputs, script_errors
from mechlistops.cli.options import bounded
from mechlistops.errors import ConfigError
from mechlistops.transition import accuracies_at, pass_share

CELL = ["arm", "data", "n_params"]  # one column of the figure, one row of the summary


def arm_and_data(mixture: str, data) -> tuple[str, str]:
    """The mixture's weights belong to the arm, not to the first operator's data:
    ('SUM+MAX', '10,000 sampled, weights 1:2, 3 operands') ->
    ('SUM+MAX (weights 1:2)', '10,000 sampled, 3 operands')."""
    data = "" if pd.isna(data) else str(data)
    weights = re.search(r", (weights [\d.:]+)", data)
    if weights is None:
        return mixture, data
    return f"{mixture} ({weights.group(1)})", data.replace(weights.group(0), "")


def arm_runs(path: Path, examples: int) -> pd.DataFrame:
    """One row per run under `path`: the reads above, the partners' as partner_OP columns."""
    end = accuracies_at(path)
    if end.empty:  # nothing finished under it yet
        return end
    if "data" not in end.columns:  # a runs table may leave it out
        end["data"] = ""
    rows = []
    for (mixture, data, seed, d_model), g in end.groupby(
        ["mixture", "data", "seed", "d_model"], dropna=False
    ):
        first = mixture.split(" after ")[0].split("+")[0]
        own = g[g.op == first].iloc[0]
        arm, task = arm_and_data(mixture, data)
        row = {"arm": arm, "op": first, "data": task, "seed": seed, "d_model": d_model}
        row |= {"mixture": mixture, "data_label": data}  # as the runs name them
        row["n_params"] = int(own.n_params)
        row["heldout_end"] = own.accuracy_heldout
        row["pool_end"] = own.accuracy_pool
        row["chance"] = own.baseline  # majority-class accuracy of its test set
        row["heldout_at"], row["step_at"] = own.accuracy_heldout, own.step
        row |= {f"partner_{r.op}": r.accuracy_heldout for r in g[g.op != first].itertuples()}
        rows.append(row)
    df = pd.DataFrame(rows)
    if examples:
        for op in df.op.unique():
            at = accuracies_at(path, examples=(op, examples))
            at = at[at.op == op].set_index(["mixture", "data", "seed", "d_model"])
            for i, r in df[df.op == op].iterrows():
                key = (r.mixture, r.data_label, r.seed, r.d_model)
                found = key in at.index
                df.loc[i, "heldout_at"] = at.loc[key, "accuracy_heldout"] if found else np.nan
                df.loc[i, "step_at"] = at.loc[key, "step"] if found else np.nan
    df.insert(0, "source", path.name)
    return df


def cells(runs: pd.DataFrame, threshold: float, reference: str | None) -> pd.DataFrame:
    """One row per arm, data and size: the runs read, those reaching `threshold` with the
    share's Wilson interval, and Fisher's p against `reference` at the same data and size."""
    rows = []
    for key, g in runs.groupby(CELL, sort=False, dropna=False):
        acc = g.heldout_at.dropna().to_numpy(float)
        passed, n, low, high = pass_share(acc, threshold) if len(acc) else (0, 0, np.nan, np.nan)
        rows.append(
            dict(zip(CELL, key)) | {"runs": n, "passed": int(passed), "low": low, "high": high}
        )
    table = pd.DataFrame(rows)
    table["p_reference"] = np.nan
    for i, r in table.iterrows():
        if reference is None or r.arm == reference:
            continue
        ref = table[(table.arm == reference) & (table.data == r.data)]
        ref = ref[ref.n_params == r.n_params]
        if ref.empty:
            continue
        a, b = r, ref.iloc[0]
        counts = [[a.passed, a.runs - a.passed], [b.passed, b.runs - b.passed]]
        table.loc[i, "p_reference"] = fisher_exact(counts).pvalue
    return table


def summary(runs: pd.DataFrame, examples: int, threshold: float, reference: str | None) -> str:
    read = f"after {examples:,} examples of the op" if examples else "at the end"
    shares = cells(runs, threshold, reference).set_index(CELL)
    several = runs.data.nunique() > 1
    header = [
        "arm",
        *(["data"] if several else []),
        "parameters",
        "seeds",
        f"held-out {read} (per seed; median)",
        f"at {threshold:g} or more [95% interval]",
    ]
    header += [f"against {reference} (Fisher p)"] * bool(reference)
    header += ["held-out at the end (median)"] * bool(examples)
    header += ["pool at the end (median)", "partners at the end (median)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    order = runs.sort_values(["op", "data", "n_params"], kind="stable")
    for key, g in order.groupby(CELL, sort=False, dropna=False):
        g = g.sort_values("seed")
        c = shares.loc[key]
        per_seed = " / ".join(f"{v:.2f}" for v in g.heldout_at)
        pool = "-" if g.pool_end.isna().all() else f"{g.pool_end.median():.2f}"
        partners = [k for k in g.columns if k.startswith("partner_") and g[k].notna().any()]
        partners = ", ".join(f"{k[8:]} {g[k].median():.2f}" for k in partners) or "-"
        cols = [key[0], *([key[1]] if several else []), f"{key[2]:,}", str(len(g))]
        cols += [f"{per_seed}; **{g.heldout_at.median():.2f}**"]
        cols += [f"{int(c.passed)} of {int(c.runs)} [{c.low:.2f}, {c.high:.2f}]"]
        if reference:
            cols += ["-" if np.isnan(c.p_reference) else f"{c.p_reference:.2g}"]
        cols += [f"{g.heldout_end.median():.2f}"] * bool(examples)
        lines.append("| " + " | ".join([*cols, pool, partners]) + " |")
    return "\n".join(lines)


def plot(runs: pd.DataFrame, out: Path, examples: int, threshold: float) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid")
    several = runs.data.nunique() > 1
    data = runs.assign(
        label=lambda d: (
            d.arm.str.replace(" (", "\n(")  # the weights on a line of their own
            + ("\n" + d.data.astype(str) if several else "")
            + "\n"
            + d.n_params.map("{:,}".format)
        )
    )
    fig, ax = plt.subplots(figsize=(max(6, 1.5 * data.label.nunique()), 4.5))
    sns.stripplot(data, x="label", y="heldout_at", hue="op", size=7, ax=ax, jitter=0.15)
    sns.pointplot(
        data,
        x="label",
        y="heldout_at",
        estimator="median",
        errorbar=None,
        color="k",
        markers="_",
        markersize=28,
        markeredgewidth=2,
        linestyles="none",
        ax=ax,
    )
    if data.op.nunique() == 1:  # one operator: the axis label names it
        ax.get_legend().remove()
    ax.axhline(threshold, color="k", ls="--", lw=0.8)
    labels = [t.get_text() for t in ax.get_xticklabels()]
    for x, label in enumerate(labels):  # how many runs of each column reach the threshold
        acc = data.loc[data.label == label, "heldout_at"].dropna()
        ax.annotate(
            f"{int((acc >= threshold).sum())} of {len(acc)}",
            (x, 1.0),
            ha="center",
            va="bottom",
            fontsize=8,
            xytext=(0, 2),
            textcoords="offset points",
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
    read = f"after {examples:,} training examples of it" if examples else "at the end of training"
    ax.set(
        ylim=(0, 1.08),
        xlabel="",
        ylabel="held-out accuracy of the arm's first operator",
        title=f"{read} (dots: seeds; bar: median; dashed: {threshold:g}, runs at it above)",
    )
    ax.title.set_fontsize(9)
    ax.tick_params(axis="x", labelsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110, format="png")
    plt.close(fig)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description="arms side by side")
    p.add_argument("out", type=Path)
    p.add_argument("runs", type=Path, nargs="+", help="sweeps, runs, folders of runs, runs tables")
    p.add_argument("--examples", type=bounded(int, 0, 10**12), default=1_536_000)
    p.add_argument("--threshold", type=bounded(float, 0.0, 1.0), default=0.9)
    p.add_argument("--reference", default=None, help="the arm every other is tested against")
    args = p.parse_args()
    with script_errors("arms"):
        runs = pd.concat([arm_runs(s, args.examples) for s in args.runs], ignore_index=True)
        if runs.empty:
            raise ConfigError(f"no runs in {', '.join(map(str, args.runs))}")
        if args.reference is not None and args.reference not in set(runs.arm):
            raise ConfigError(
                f"--reference {args.reference}: no such arm "
                f"(arms: {', '.join(sorted(set(runs.arm)))})"
            )
        text = summary(runs, args.examples, args.threshold, args.reference)
        draw = partial(plot, runs, examples=args.examples, threshold=args.threshold)
        save_outputs(args.out, "arms", runs, text + "\n", draw, csv_name="arms_runs")


if __name__ == "__main__":
    main()
