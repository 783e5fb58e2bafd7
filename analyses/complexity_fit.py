# %% [markdown]
# # Learning transition against the task-complexity proxy, over every task measured
# For each sweep given, each (operator, mixture) gets its N* (`mechlistops.transition`: the
# smallest size whose median accuracy over seeds reaches --threshold, on held-out test
# expressions with --heldout) and the proxy of the task it trained on
# (`mechlistops.complexity`: gzip bytes of a minimal solver). The fit is log N* against log
# proxy (`complexity.fit_power_law`), with the 95% t interval of the exponent; tasks that
# never reach the threshold are listed and plotted at the top edge, outside the fit.
# Run: `python analyses/complexity_fit.py SWEEP [SWEEP ...] --out DIR [--threshold 0.5]
# [--heldout] [--at-step S]`; writes complexity_fit.md, .csv and .png into DIR.

# %%
import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from mechlistops.analysis.viz import _pyplot
from mechlistops.atomic import write_text
from mechlistops.complexity import fit_power_law, transition_points
from mechlistops.transition import accuracies_at, transitions


def points(sweeps: list[Path], threshold: float, heldout: bool, step: int | None) -> pd.DataFrame:
    parts = []
    for sweep in sweeps:
        df = accuracies_at(sweep, step=step)
        if heldout:
            df = df.assign(accuracy=df["accuracy_heldout"])
        fits = transitions(df, thresholds=(threshold,), n_boot=200)
        p = transition_points(sweep, fits, f"smallest_{threshold}")
        parts.append(p.assign(sweep=str(sweep)))
    return pd.concat(parts, ignore_index=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("sweeps", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--heldout", action="store_true", help="score held-out expressions only")
    ap.add_argument("--at-step", type=int, default=None, help="read every run at this step")
    args = ap.parse_args()
    pts = points(args.sweeps, args.threshold, args.heldout, args.at_step)
    usable = pts.dropna(subset=["n_star"])
    law = fit_power_law(usable["proxy"], usable["n_star"]) if len(usable) >= 2 else None

    args.out.mkdir(parents=True, exist_ok=True)
    pts.to_csv(args.out / "complexity_fit.csv", index=False)
    plt, sns = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    top = usable["n_star"].max() * 2 if len(usable) else 1e5
    shown = pts.assign(reached=pts.n_star.notna(), y=pts.n_star.fillna(top))
    sns.scatterplot(shown, x="proxy", y="y", hue="family", style="reached", s=70, ax=ax)
    for r in shown.itertuples():
        ax.annotate(
            f"{r.op} in {r.task}",
            (r.proxy, r.y),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    if law is not None:
        x = np.linspace(usable["proxy"].min(), usable["proxy"].max(), 50)
        ax.plot(x, law.a * x**law.b, "k--", lw=1, label=law.describe())
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="complexity proxy (gzip bytes of a minimal solver)",
        ylabel=f"N* (parameters; median accuracy >= {args.threshold})",
    )
    ax.axhline(top, color="grey", lw=0.5)
    ax.legend(fontsize=7)
    ax.set_title("tasks that never reach the threshold sit on the grey line", fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / "complexity_fit.png", dpi=130)

    lines = [
        f"# N* against the complexity proxy ({'held-out' if args.heldout else 'all'} test "
        f"expressions, threshold {args.threshold})",
        "",
        "| sweep | op | task | proxy (bytes) | N* |",
        "|---|---|---|---|---|",
    ]
    for r in pts.itertuples():
        n_star = "not reached" if r.n_star != r.n_star else f"{r.n_star:,.0f}"
        lines.append(f"| {Path(r.sweep).name} | {r.op} | {r.task} | {r.proxy} | {n_star} |")
    lines += ["", f"fit: {law.describe()}" if law else "fit: fewer than 2 tasks reached N*"]
    write_text(args.out / "complexity_fit.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
