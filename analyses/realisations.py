# %% [markdown]
# # The same seeds trained on several platforms: does a seed decide its run?
# A seed fixes a run's pool, initial weights and batch order, but not the rounding of torch's
# sums: that is set by the platform (the CPU kernels torch dispatches to, the thread count,
# the device; `results.json` records them under `platform`). Near a learning transition the
# rounding alone can decide whether a run learns. This script lines up, seed by seed, one
# operator's final held-out accuracy from several sets of realisations of the same runs
# (same config and seed, another platform), each given as LABEL=PATH: a folder of finished
# runs, a run, or a runs table (`mechlistops transition`'s runs.csv). Runs are matched on
# mixture, data, training, size and seed. Writes into OUT:
# - realisations.csv: one row per (mixture, data, training, size, seed), one column per label;
# - realisations.md: per label, the share passing the threshold (95% Wilson interval); per pair
#   of labels, over the runs both have, how many changed side of the threshold and the median
#   absolute change;
# - realisations.png: per seed, each label's accuracy, the threshold drawn.
# Used for stage 9r of docs/findings.md.
# Run: `python analyses/realisations.py OUT LABEL=PATH LABEL=PATH [...] [--op SUM]
#       [--threshold 0.9] [--params N]` (`--params`: only the runs of N parameters).

# %%
import argparse
import itertools
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from mechlistops.analysis.common import script_errors
from mechlistops.errors import MechlistopsError
from mechlistops.transition import accuracies_at, pass_share

KEYS = ["mixture", "data", "training", "n_params", "seed"]


def labelled(spec: str) -> tuple[str, Path]:
    label, sep, path = spec.partition("=")
    if not sep or not label or not path:
        raise argparse.ArgumentTypeError(f"{spec!r}: expected LABEL=PATH")
    return label, Path(path)


def table(sets: list[tuple[str, Path]], op: str, params: int | None = None) -> pd.DataFrame:
    """One row per run key, one column of held-out accuracy per label (runs of `params`
    parameters only, where given)."""
    columns = []
    for label, path in sets:
        df = accuracies_at([path])
        if not df.empty:
            df = df[(df.op == op) & ((df.n_params == params) if params else True)]
        if df.empty:
            size = f" at {params:,} parameters" if params else ""
            raise MechlistopsError(f"{path}: no finished run trains {op}{size}")
        if "accuracy_heldout" not in df or df.accuracy_heldout.isna().any():
            raise MechlistopsError(f"{path}: a run without a held-out accuracy for {op}")
        dup = df[df.duplicated(KEYS, keep=False)]
        if not dup.empty:
            raise MechlistopsError(
                f"{path}: {len(dup)} runs share a configuration and seed "
                f"({', '.join(dup.run.head(2))}); give each realisation set its own LABEL=PATH"
            )
        columns.append(df.set_index(KEYS)["accuracy_heldout"].rename(label))
    return pd.concat(columns, axis=1).sort_index()


def summary(wide: pd.DataFrame, threshold: float) -> list[str]:
    lines = [
        f"| realisations | runs | pass {threshold} | share [95% Wilson] | median |",
        "|---|---|---|---|---|",
    ]
    for label in wide.columns:
        acc = wide[label].dropna()
        k, n, low, high = pass_share(acc, threshold)
        share = f"{k / n:.2f} [{low:.2f}, {high:.2f}]"
        lines.append(f"| {label} | {n} | {k} | {share} | {acc.median():.3f} |")
    lines += [
        "",
        f"| realisations | against | runs in both | changed side of {threshold} "
        "| median absolute change |",
        "|---|---|---|---|---|",
    ]
    for a, b in itertools.combinations(wide.columns, 2):
        both = wide[[a, b]].dropna()
        if both.empty:
            continue
        flips = int(((both[a] >= threshold) != (both[b] >= threshold)).sum())
        change = (both[a] - both[b]).abs().median()
        lines.append(f"| {a} | {b} | {len(both)} | {flips} | {change:.3f} |")
    return lines


def plot(wide: pd.DataFrame, threshold: float, op: str, path: Path) -> None:
    long = (
        wide.reset_index()
        .melt(id_vars=KEYS, var_name="realisations", value_name="accuracy")
        .dropna(subset=["accuracy"])
    )
    groups = long.groupby(KEYS[:-1]).ngroups
    long = long.sort_values(KEYS)  # seeds in numeric order, then labelled as text
    long["seed"] = long["seed"].astype(str)
    if groups > 1:
        long["seed"] = long["n_params"].map("{:,}".format) + " / " + long["seed"]
    order = list(dict.fromkeys(long["seed"]))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.3 * len(order) + 2), 4))
    sns.stripplot(
        data=long,
        x="seed",
        y="accuracy",
        hue="realisations",
        order=order,
        hue_order=list(wide.columns),
        ax=ax,
        jitter=False,
        size=6,
        alpha=0.8,
    )
    ax.axhline(threshold, color="grey", lw=0.8, ls="--")
    ax.set(
        xlabel="seed" if groups == 1 else "parameters / seed",
        ylabel=f"{op} held-out accuracy (final)",
        ylim=(0, 1.02),
    )
    ax.tick_params(axis="x", labelrotation=90)
    ax.legend(title=None, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("out", type=Path)
    p.add_argument("sets", nargs="+", type=labelled, metavar="LABEL=PATH")
    p.add_argument("--op", default="SUM")
    p.add_argument("--threshold", type=float, default=0.9)
    p.add_argument("--params", type=int, help="only the runs of this many parameters")
    args = p.parse_args(argv)
    if not 0 < args.threshold <= 1:
        p.error(f"--threshold {args.threshold}: must be in (0, 1]")
    if args.params is not None and args.params < 1:
        p.error(f"--params {args.params}: must be a parameter count >= 1")
    if len({label for label, _ in args.sets}) < len(args.sets):
        p.error("each LABEL must be given once")
    with script_errors("realisations"):
        wide = table(args.sets, args.op, args.params)
        args.out.mkdir(parents=True, exist_ok=True)
        wide.to_csv(args.out / "realisations.csv")
        text = "\n".join(summary(wide, args.threshold)) + "\n"
        (args.out / "realisations.md").write_text(text)
        plot(wide, args.threshold, args.op, args.out / "realisations.png")
    print(text, end="")


if __name__ == "__main__":
    main()
