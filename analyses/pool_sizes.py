# %% [markdown]
# # How much data: the hard operator's held-out accuracy against its training data
# Reads sweeps that differ in their training data (pool sizes, pools drawn distinct or sampled
# with repeats, or a fresh stream; `--train-size`, `--pool-draw`) and, per arm (mixture) and
# data, the operator's (--op, default SUM) held-out accuracy of every seed at the end of the
# run and, for a `--schedule wsd` run, where its decay began (the constant-lr end), its pool
# accuracy at the end (memorisation), the share of flat (depth-1) expressions in its pool and
# the geometry of its value embeddings (claim 4: W_E's ordering along its first principal
# component, how close its first two lie to a circle in value order, and the Fourier frequency
# over values that holds most of its variance; mechlistops.analysis.geometry), and the share of
# its wrong held-out answers that are off by exactly n/2 (5 mod 10: the sum mod 5 right, its
# parity wrong).
# Writes OUT/pool_sizes.csv (one row per run), OUT/pool_sizes.md and OUT/pool_sizes.png
# (held-out at the end against pool size, the fresh stream at the right). Used for stage 8 of
# docs/findings.md.
# Run: `python analyses/pool_sizes.py OUT SWEEP_DIR [SWEEP_DIR ...] [--op SUM]`.

# %%
import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from mechlistops import load_run
from mechlistops.analysis.common import save_outputs, script_errors
from mechlistops.analysis.geometry import geometry_metrics
from mechlistops.checkpoint import is_finished
from mechlistops.data import heldout_mask, make_test_sets
from mechlistops.errors import ConfigError
from mechlistops.evaluate import predict
from mechlistops.pools import evaluation_data
from mechlistops.sweep import load_sweep
from mechlistops.transition import accuracies_at


def flat_share(data, op: str) -> float:
    """The share of depth-1 expressions in the op's pool (nan with a fresh stream)."""
    if not data.train_size:
        return float("nan")
    return float(np.mean(evaluation_data(data)[1][op].depths == 1))


def half_turn_errors(run, op: str) -> float:
    """The share of the op's wrong held-out answers that are off by exactly n/2 (mod n, n even):
    a model that has the sum mod n/2 but not its parity makes no other error (nan: none wrong)."""
    data, n = run.config.data, run.config.data.n_values
    ex = make_test_sets(data)[op]
    pred, _ = predict(run.model, ex)
    held = heldout_mask(data, ex)
    wrong = held & (pred != ex.answers)
    if not wrong.any() or n % 2:
        return float("nan")
    off = (pred[wrong].astype(int) - ex.answers[wrong].astype(int)) % n
    return float(np.mean((off == n // 2) & (pred[wrong] < n)))


def sweep_runs(sweep_dir: Path, op: str) -> pd.DataFrame:
    members = [m for m in load_sweep(sweep_dir).members() if op in m.config.data.ops]
    if not members:
        return pd.DataFrame()
    cfg = members[0].config
    reads = {"end": accuracies_at(sweep_dir)}
    if cfg.train.schedule == "wsd":
        reads["constant_end"] = accuracies_at(
            sweep_dir, step=cfg.train.steps - cfg.train.decay_steps
        )
    rows = []
    for m in members:
        c = m.config
        row = {
            "sweep": str(sweep_dir),
            "arm": "+".join(c.data.ops),
            "train_size": c.data.train_size,
            "pool_draw": c.data.pool_draw if c.data.train_size else "fresh",
            "data": c.data.training_data,
            "d_model": c.model.d_model,
            "seed": c.train.seed,
        }
        for name, df in reads.items():
            hit = df[(df.mixture == row["arm"]) & (df.seed == row["seed"]) & (df.op == op)]
            hit = hit[hit.d_model == row["d_model"]]
            if len(hit):
                row["n_params"] = int(hit.n_params.iloc[0])
                row[f"heldout_{name}"] = hit.accuracy_heldout.iloc[0]
                if name == "end":
                    row["pool_end"] = hit.accuracy_pool.iloc[0]
        if is_finished(sweep_dir / m.name):  # claim 4: the value embeddings' geometry
            run = load_run(sweep_dir / m.name)
            w_e = run.model.W_E[: c.data.n_values].detach().numpy()
            row.update({f"W_E_{k}": v for k, v in geometry_metrics(w_e).items()})
            row["half_turn_errors"] = half_turn_errors(run, op)
        rows.append(row)
    return pd.DataFrame(rows).assign(flat_share=flat_share(cfg.data, op))


def _per(g: pd.DataFrame, col: str) -> str:
    return " / ".join(f"{x:.2f}" for x in g[col].dropna()) or "-"


def summary(runs: pd.DataFrame, op: str) -> str:
    lines = [
        f"| trained as | {op}'s training data | flat share of the pool | parameters | "
        f"{op} held-out at the constant-lr end (per seed) | after the decay (per seed; median) "
        f"| {op} pool after the decay (median) | W_E ordering / circularity (median) "
        "| W_E key frequency (share), per seed | held-out errors off by n/2, per seed |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    runs = runs.assign(order=runs.train_size.replace(0, np.inf))
    for (arm, data, n), g in runs.sort_values(["arm", "pool_draw", "order", "n_params"]).groupby(
        ["arm", "data", "n_params"], sort=False
    ):
        g = g.sort_values("seed")
        done = g.dropna(subset=["heldout_end"])
        median = f"{done.heldout_end.median():.2f}" if len(done) else "-"
        pool = f"{done.pool_end.median():.2f}" if done.pool_end.notna().any() else "-"
        share = g.flat_share.iloc[0]
        constant = _per(g, "heldout_constant_end") if "heldout_constant_end" in g else "-"
        lines.append(
            f"| {arm} | {data} | {'-' if np.isnan(share) else f'{share:.3f}'} | {int(n):,} | "
            f"{constant} | {_per(g, 'heldout_end')}; **{median}** | {pool} | "
            f"{done.W_E_ordering.median():.2f} / {done.W_E_circularity.median():.2f} | "
            + ", ".join(
                f"{k:.0f} ({share:.2f})"
                for k, share in zip(done["W_E_key frequency"], done["W_E_key frequency share"])
            )
            + f" | {_per(done, 'half_turn_errors')} |"
        )
    return "\n".join(lines) + "\n"


def plot(runs: pd.DataFrame, op: str, path: Path) -> None:
    done = runs.dropna(subset=["heldout_end"]).copy()
    sizes = sorted(n for n in done.train_size.unique() if n)
    fresh_x = (max(sizes) if sizes else 1000) * 4
    done["x"] = done.train_size.where(done.train_size > 0, fresh_x)
    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    sns.lineplot(
        data=done,
        x="x",
        y="heldout_end",
        hue="arm",
        style="pool_draw",
        markers=True,
        estimator="median",
        errorbar=None,
        ax=ax,
    )
    sns.scatterplot(
        data=done, x="x", y="heldout_end", hue="arm", legend=False, alpha=0.4, s=18, ax=ax
    )
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    ax.set_xscale("log")
    ticks = [*sizes, fresh_x]
    ax.set_xticks(ticks, [f"{n:,}" for n in sizes] + ["fresh"])
    ax.minorticks_off()
    ax.axhline(0.1, color="grey", lw=0.8, ls=":")
    ax.set_xlabel(f"{op}'s training data (pool size; per seed dots, median lines)")
    ax.set_ylabel(f"{op} held-out accuracy at the end")
    ax.set_ylim(0, 1)
    ax.set_title(f"{op}: held-out accuracy against training data")
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("out", type=Path)
    p.add_argument("sweeps", type=Path, nargs="+")
    p.add_argument("--op", default="SUM")
    a = p.parse_args()
    with script_errors("pool_sizes"):
        runs = pd.concat([sweep_runs(s, a.op) for s in a.sweeps], ignore_index=True)
        if runs.empty:
            raise ConfigError(
                f"no finished run trained on {a.op} in {', '.join(map(str, a.sweeps))}"
            )
        table = summary(runs, a.op)
        save_outputs(a.out, "pool_sizes", runs, table, lambda path: plot(runs, a.op, path))


if __name__ == "__main__":
    main()
