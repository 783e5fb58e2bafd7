# %% [markdown]
# # SUM's held-out accuracy against parameters, over any finished runs
# Reads finished runs (given directly, or every finished run inside the folders given: sweeps,
# or folders of continued runs such as `analyses/anneal.py` writes) and plots SUM's final
# held-out accuracy against the parameter count, one colour per mixture and one marker per way
# of training (steps, schedule and a weight decay other than the default; a continued run as
# its source's steps + its own). Writes bounds.csv (one row per run), bounds.md (median and
# per-seed accuracy per mixture, training and size, with the first size whose median reaches
# each threshold and, per way of training, SUM alone's such size and sigmoid midpoint over
# each mixture's, with a 95% interval from resampling seeds) and bounds.png into OUT.
# Used for stage 5 of docs/findings.md: where each arm's transition lies, whatever budget
# each size was run at.
# Run: `python analyses/bounds.py OUT RUN_OR_FOLDER [...]`.

# %%
import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from mechlistops import checkpoint as ckpt
from mechlistops.config import TrainConfig
from mechlistops.errors import MechlistopsError, first_line
from mechlistops.sweep import finished_runs
from mechlistops.transition import transitions

THRESHOLDS = (0.5, 0.9)


def training(run: Path) -> str:
    """How the run was trained: '18,000 constant + 10,000 linear' for a continued run."""
    t = ckpt.load_run_config(run).train
    own = f"{t.steps:,} {t.schedule}"
    if t.weight_decay != TrainConfig().weight_decay:
        own += f", weight decay {t.weight_decay:g}"
    if t.init_from and ckpt.holds_run(Path(t.init_from)):
        return f"{training(Path(t.init_from))} + {own}"
    return own


def table(paths: list[Path]) -> pd.DataFrame:
    rows = []
    for run in finished_runs(paths):
        cfg = ckpt.load_run_config(run)
        if "SUM" not in cfg.data.ops:
            continue
        sum_ = ckpt.read_results(run)["results"]["SUM"]
        rows.append(
            {
                "run": str(run),
                "mixture": "+".join(cfg.data.ops),
                "training": training(run),
                "n_params": ckpt.read_n_params(run),
                "seed": cfg.train.seed,
                "sum_heldout": sum_["accuracy_heldout"],
                "sum_pool": sum_["accuracy_pool"],
            }
        )
    return pd.DataFrame(rows)


def summary(df: pd.DataFrame) -> list[str]:
    lines = [
        "| mixture | training | parameters | SUM held-out, median (per seed) | SUM pool, median |",
        "|---|---|---|---|---|",
    ]
    firsts = []
    for (mixture, how), g in df.groupby(["mixture", "training"]):
        medians = {}
        for n, h in g.groupby("n_params"):
            h = h.sort_values("seed")
            medians[n] = h.sum_heldout.median()
            per_seed = " / ".join(f"{x:.2f}" for x in h.sum_heldout)
            lines.append(
                f"| {mixture} | {how} | {n:,} | {medians[n]:.2f} ({per_seed}) | "
                f"{h.sum_pool.median():.2f} |"
            )
        for t in THRESHOLDS:
            hit = [n for n, m in sorted(medians.items()) if m >= t]
            where = f"{hit[0]:,}" if hit else f"not reached up to {max(medians):,}"
            firsts.append(f"- {mixture}, {how}: first size with median >= {t}: {where}")
    return lines + [""] + firsts + ratios(df)


def ratios(df: pd.DataFrame) -> list[str]:
    """Per way of training: SUM alone's first passing size over each mixture's, and its sigmoid
    midpoint's (where both arms have one), with a 95% interval from resampling seeds within
    each size (mechlistops.transition.transitions, which computes both)."""
    lines = []
    for how, g in df.groupby("training"):
        if "SUM" not in set(g.mixture) or g.mixture.nunique() < 2:
            continue
        runs = g.rename(columns={"sum_heldout": "accuracy"}).assign(op="SUM")
        for _, r in transitions(runs, thresholds=THRESHOLDS).iterrows():
            if r.mixture == "SUM":
                continue
            keys = {f"smallest_{t}": f"at {t}" for t in THRESHOLDS}
            for key, where in {**keys, "midpoint": "at the sigmoid midpoint"}.items():
                ratio, ci = r[f"ratio_{key}"], r[f"ratio_{key}_ci"]
                if ratio is None or pd.isna(ratio):
                    text = "undefined (not reached, or no sigmoid fit, in an arm)"
                else:
                    text = f"{ratio:.1f}x, 95% interval " + (
                        f"{ci[0]:.1f}-{ci[1]:.1f}x" if ci else "undefined (too few resamples pass)"
                    )
                lines.append(f"- SUM alone over {r.mixture}, {how}, {where}: {text}")
    return [""] + lines if lines else []


def plot(df: pd.DataFrame, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    sns.scatterplot(
        data=df, x="n_params", y="sum_heldout", hue="mixture", style="training", s=60, ax=ax
    )
    for t in THRESHOLDS:
        ax.axhline(t, color="grey", lw=0.8, ls="--")
    ax.set(xscale="log", xlabel="parameters", ylabel="SUM held-out accuracy", ylim=(0, 1))
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# %%
if __name__ == "__main__":
    p = argparse.ArgumentParser(description="SUM held-out accuracy against parameters")
    p.add_argument("out", type=Path)
    p.add_argument("runs", type=Path, nargs="+", help="runs, or folders holding runs")
    args = p.parse_args()
    try:
        df = table(args.runs)
    except MechlistopsError as exc:  # a missing path, an unfinished run, a corrupted run file
        raise SystemExit(f"bounds: {first_line(exc)}") from None
    if df.empty:
        raise SystemExit("no finished run with SUM among those given")
    args.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out / "bounds.csv", index=False)
    (args.out / "bounds.md").write_text("\n".join(summary(df)) + "\n")
    plot(df, args.out / "bounds.png")
    print((args.out / "bounds.md").read_text())
