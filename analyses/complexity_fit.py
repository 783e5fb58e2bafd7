# %% [markdown]
# # Learning transition against the task-complexity proxy, over every task measured
# The sweeps given are read together as one population (sweeps of one regime over different
# sizes, e.g. a scan and its extension). Each (operator, mixture) gets its N*
# (`mechlistops.transition`: the smallest size whose median accuracy over seeds reaches
# --threshold; held-out test expressions with --heldout; with --above-chance, accuracy is
# first rescaled to (acc - chance) / (1 - chance), chance = the test set's majority-class
# accuracy, so that tasks with 2 and with 10 answers are held to the same bar) and the proxy
# of the task it trained on (`mechlistops.complexity`: gzip bytes of a minimal solver). The fit
# is log N* against log proxy (`complexity.fit_power_law`), with the 95% t interval of the
# exponent; tasks that never reach the threshold are listed and drawn on the top line,
# outside the fit.
# Run: `python analyses/complexity_fit.py SWEEP [SWEEP ...] --out DIR [--threshold 0.5]
# [--heldout] [--above-chance]`; writes complexity_fit.md, .csv and .png into DIR.

# %%
import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from mechlistops.analysis.common import script_errors
from mechlistops.analysis.viz import _pyplot
from mechlistops.atomic import write_text
from mechlistops.complexity import fit_power_law, transition_points
from mechlistops.transition import accuracies_at, transitions


def points(sweeps: list[Path], threshold: float, heldout: bool, above: bool) -> pd.DataFrame:
    df = pd.concat([accuracies_at(s) for s in sweeps], ignore_index=True)
    if heldout:
        df = df.assign(accuracy=df["accuracy_heldout"])
    if above:
        df = df.assign(accuracy=(df.accuracy - df.baseline) / (1 - df.baseline))
    fits = transitions(df, thresholds=(threshold,), n_boot=200)
    return transition_points(sweeps, fits, f"smallest_{threshold}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("sweeps", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--heldout", action="store_true", help="score held-out expressions only")
    ap.add_argument("--above-chance", action="store_true", help="rescale accuracy above chance")
    args = ap.parse_args()
    pts = points(args.sweeps, args.threshold, args.heldout, args.above_chance)
    usable = pts.dropna(subset=["n_star"])
    law = fit_power_law(usable["proxy"], usable["n_star"]) if usable.proxy.nunique() >= 2 else None

    args.out.mkdir(parents=True, exist_ok=True)
    pts.to_csv(args.out / "complexity_fit.csv", index=False)
    plt, sns = _pyplot()
    fig, ax = plt.subplots(figsize=(9.5, 5.2))
    top = usable["n_star"].max() * 2.5 if len(usable) else 1e5
    shown = pts.assign(
        reached=np.where(pts.n_star.notna(), "reached", "not reached"), y=pts.n_star.fillna(top)
    )
    sns.scatterplot(shown, x="proxy", y="y", hue="family", style="reached", s=70, ax=ax)
    # one label per point position: tasks that land on the same spot share it
    for (proxy, y), g in shown.groupby(["proxy", "y"]):
        text = "\n".join(f"{r.op} in {r.task}" for r in g.itertuples())
        ax.annotate(
            text,
            (proxy, y),
            fontsize=6,
            xytext=(4, 2),
            textcoords="offset points",
            rotation=35 if y == top else 0,  # the line of tasks never reached is crowded
        )
    if law is not None:
        x = np.linspace(usable["proxy"].min(), usable["proxy"].max(), 50)
        ax.plot(x, law.a * x**law.b, "k--", lw=1, label=law.describe())
    bar = f"{args.threshold} above chance" if args.above_chance else str(args.threshold)
    ax.set(
        xscale="log",
        yscale="log",
        ylim=(shown.y.min() / 1.6, top * 2.2),
        xlabel="complexity proxy (gzip bytes of a minimal solver of the task trained on)",
        ylabel=f"N* (parameters; median accuracy >= {bar})",
    )
    ax.axhline(top, color="grey", lw=0.5)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(
        "N* against the complexity proxy; grey line: never reached at the sizes run; "
        "points at the smallest size run are at most that size",
        fontsize=8,
    )
    fig.tight_layout()
    fig.savefig(args.out / "complexity_fit.png", dpi=130)

    scored = "held-out" if args.heldout else "all"
    lines = [
        f"# N* against the complexity proxy ({scored} test expressions, threshold {bar})",
        "",
        "| op | trained as | family | proxy (bytes) | N* |",
        "|---|---|---|---|---|",
    ]
    for r in pts.itertuples():
        n_star = "not reached" if r.n_star != r.n_star else f"{r.n_star:,.0f}"
        lines.append(f"| {r.op} | {r.task} | {r.family} | {r.proxy} | {n_star} |")
    lines += [
        "",
        f"fit: {law.describe()}" if law else "fit: fewer than 2 distinct proxies reached N*",
    ]
    write_text(args.out / "complexity_fit.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    with script_errors("complexity_fit"):
        main()
