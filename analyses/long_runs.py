# %% [markdown]
# # Long runs: the hard operation over the whole of training
# For every member of the sweeps given (finished or still training) and every finished run of
# the folders of runs given (trained one by one), the held-out and pool
# accuracy of one operator (--op, default SUM) at every evaluation, against steps and against
# training examples of that operator (equal examples: a member of a 3-operator mixture sees a
# third as many per step). Writes OUT/long_runs.csv (every evaluation), OUT/long_runs.md (per
# arm and size: each seed's held-out accuracy at equal examples of the op, the median of its
# last --tail evaluations (a single read can be noisy: with a constant learning rate the curve
# can swing by 0.3 between evaluations), the best, and where the curve first reaches 0.5 and
# 0.9; with --steps, also at those steps) and OUT/long_runs.png (the curves). An arm is a
# mixture; runs trained otherwise (steps, schedule and decay, learning rate, weight decay, ...:
# `transition.training_label`) are kept apart by a training column.
# Run: `python analyses/long_runs.py OUT PATH [PATH ...] [--op SUM]
#       [--examples 1536000,4608000,15360000|none] [--steps 60000,70000] [--tail 10]`.
# Used for stages 4, 7 and 9s of docs/findings.md.

# %%
import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from mechlistops import checkpoint as ckpt
from mechlistops.analysis.common import script_errors
from mechlistops.errors import ConfigError
from mechlistops.transition import runs_of, training_label


def curves(path: Path, op: str) -> pd.DataFrame:
    """One row per (run, evaluation) of the runs under `path` (a sweep's members, or the
    finished runs of a run or folder) whose mixture trains `op`."""
    rows = []
    for _, run, cfg in runs_of([path]):
        if op not in cfg.data.ops:
            continue
        if not (run / ckpt.CONFIG).is_file():
            continue  # not started
        n_params = ckpt.read_n_params(run)
        for rec in ckpt.read_metrics(run):
            r = rec["eval"].get(op)
            if r is None:
                continue
            rows.append(
                {
                    "arm": "+".join(cfg.data.ops),
                    "training": training_label(run, cfg),
                    "d_model": cfg.model.d_model,
                    "n_params": n_params,
                    "seed": cfg.train.seed,
                    "step": rec["step"],
                    "examples": rec.get("examples", {}).get(op, 0),
                    "heldout": r["accuracy_heldout"],
                    "pool": r.get("accuracy_pool"),
                }
            )
    return pd.DataFrame(rows)


def first_at(g: pd.DataFrame, bar: float) -> str:
    hit = g[g.heldout >= bar]
    return f"{int(hit.step.iloc[0]):,}" if len(hit) else "-"


def at_examples(g: pd.DataFrame, n: int) -> str:
    """Held-out accuracy at the first evaluation by which the run had seen n examples."""
    hit = g[g.examples >= n]
    return f"{hit.heldout.iloc[0]:.2f}" if len(hit) else "."


def at_step(g: pd.DataFrame, step: int) -> str:
    """Held-out accuracy at the evaluation of that step."""
    hit = g[g.step == step]
    return f"{hit.heldout.iloc[0]:.2f}" if len(hit) else "."


def table(df: pd.DataFrame, reads: list[int], steps: list[int], op: str, tail: int) -> str:
    head = [f"{op} held-out @{n / 1e6:g}M {op} examples" for n in reads]
    head += [f"{op} held-out @{n:,} steps" for n in steps]
    lines = [
        "| arm | training | parameters | seed | last step | "
        + " | ".join(head)
        + f" | median of the last {tail} evaluations (min-max) | best (step) | first >= 0.5 |"
        " first >= 0.9 | pool at the last step |",
        "|---|---|---|---|---|" + "---|" * len(head) + "---|---|---|---|---|",
    ]
    for (arm, training, n, seed), g in df.groupby(["arm", "training", "n_params", "seed"]):
        g = g.sort_values("step")
        best = g.loc[g.heldout.idxmax()]
        pool = g.pool.iloc[-1]
        lines.append(
            f"| {arm} | {training} | {n:,} | {seed} | {int(g.step.iloc[-1]):,} | "
            + " | ".join([at_examples(g, r) for r in reads] + [at_step(g, n) for n in steps])
            + f" | {g.heldout.tail(tail).median():.2f} ({g.heldout.tail(tail).min():.2f}-"
            f"{g.heldout.tail(tail).max():.2f})"
            + f" | {best.heldout:.2f} ({int(best.step):,}) | {first_at(g, 0.5)} | "
            f"{first_at(g, 0.9)} | {'-' if pd.isna(pool) else f'{pool:.2f}'} |"
        )
    return "\n".join(lines) + "\n"


def plot(df: pd.DataFrame, out: Path, op: str) -> None:
    df = df.assign(label=[f"{a}, {t}, {n:,}" for a, t, n in zip(df.arm, df.training, df.n_params)])
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.8), sharey=True)
    for ax, x in zip(axes, ("step", "examples")):
        sns.lineplot(df, x=x, y="heldout", hue="label", units="seed", estimator=None, lw=1, ax=ax)
        ax.axhline(0.9, color="k", ls=":", lw=1)
        ax.axhline(0.5, color="gray", ls=":", lw=1)
        ax.set(
            ylim=(0, 1.02),
            ylabel=f"{op} held-out accuracy",
            xlabel="step" if x == "step" else f"training examples of {op}",
        )
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes:  # one legend below both panels, off the curves
        ax.get_legend().remove()
    columns = min(len(labels), 3)
    rows = -(-len(labels) // columns)
    fig.legend(
        handles,
        labels,
        loc="lower center",
        ncol=columns,
        fontsize=8,
        title="arm, training, parameters (a line per seed)",
        title_fontsize=9,
        frameon=False,
    )
    fig.tight_layout(rect=(0, 0.06 + 0.045 * rows, 1, 1))
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="the hard operation over the whole of training")
    p.add_argument("out", type=Path)
    p.add_argument("paths", type=Path, nargs="+", help="sweeps, runs or folders of runs")
    p.add_argument("--op", default="SUM")
    p.add_argument("--examples", default="1536000,4608000,15360000", help="or none")
    p.add_argument("--steps", default="", help="steps to read at too, e.g. 60000,70000")
    p.add_argument("--tail", type=int, default=10, help="evaluations the end is read over")
    args = p.parse_args(argv)
    try:
        reads = [] if args.examples == "none" else [int(x) for x in args.examples.split(",")]
        steps = [int(x) for x in args.steps.split(",") if x]
    except ValueError:
        p.error("--examples and --steps take comma-separated whole numbers")
    if args.tail < 1:
        p.error(f"--tail {args.tail}: must be at least 1")
    with script_errors("long_runs"):
        df = pd.concat([curves(s, args.op) for s in args.paths], ignore_index=True)
        if df.empty:
            raise ConfigError(f"no evaluations of {args.op} in {', '.join(map(str, args.paths))}")
        args.out.mkdir(parents=True, exist_ok=True)
        df.to_csv(args.out / "long_runs.csv", index=False)
        (args.out / "long_runs.md").write_text(table(df, reads, steps, args.op, args.tail))
        plot(df, args.out / "long_runs.png", args.op)
    print((args.out / "long_runs.md").read_text())
    print(f"wrote {args.out}/long_runs.csv, .md and .png")


# %%
if __name__ == "__main__":
    main()
