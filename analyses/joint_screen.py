# %% [markdown]
# # The joint-training factor screen: SUM alone vs SUM+MAX+MED, cell by cell
# Reads a screen directory of cells (docs/findings.md, "The plan"): each cell is a sweep of
# SUM and SUM+MAX+MED at one size and a few seeds, trained with a constant learning rate so
# that one run can be read at two budgets. For each run: SUM's held-out, whole-set and pool
# accuracy at step S1 and S2 (from metrics.jsonl), MAX's and MED's held-out accuracy at S2,
# and the value embeddings' ordering (|Spearman| of W_E's PC1 against the value, claim 4).
# Per cell: the medians over seeds at equal steps (joint@S vs alone@S) and at equal SUM
# examples (joint@S2 vs alone@S1, with S2 = 3 x S1), and the verdict by the plan's rule.
# Run: `python analyses/joint_screen.py SCREEN_DIR [OUT] [--s1 6000] [--s2 18000]`; writes
# OUT/screen_runs.csv, OUT/screen.md and OUT/screen.png (OUT defaults to SCREEN_DIR).

# %%
import argparse
from pathlib import Path

import pandas as pd

from mechlistops.analysis.common import script_errors
from mechlistops.analysis.geometry import ordering, pca
from mechlistops.checkpoint import is_finished, load_run
from mechlistops.errors import ConfigError
from mechlistops.sweep import load_sweep
from mechlistops.transition import accuracies_at

JOINT, ALONE = "SUM+MAX+MED", "SUM"


def cell_runs(cell: Path, s1: int, s2: int) -> pd.DataFrame:
    """One row per run of a cell: the read-outs above."""
    rows = {}
    for step in (s1, s2):
        df = accuracies_at(cell, step=step)
        for r in df.itertuples():
            row = rows.setdefault((r.mixture, r.seed), {"mixture": r.mixture, "seed": r.seed})
            row["n_params"] = r.n_params
            if r.op == "SUM":
                row[f"sum_heldout@{step}"] = r.accuracy_heldout
                row[f"sum_all@{step}"] = r.accuracy
                row[f"sum_pool@{step}"] = (
                    float("nan") if r.accuracy_pool is None else r.accuracy_pool
                )
            elif step == s2:
                row[f"{r.op.lower()}_heldout@{step}"] = r.accuracy_heldout
    sweep = load_sweep(cell)
    for m in sweep.members():
        key = ("+".join(m.config.data.ops), m.config.train.seed)
        if key in rows and (cell / m.name / "model.safetensors").is_file():
            run = load_run(cell / m.name)
            w_e = run.model.W_E[: run.config.data.n_values].detach().numpy()
            rows[key]["W_E_ordering"] = ordering(pca(w_e))
    out = pd.DataFrame(rows.values())
    out.insert(0, "cell", cell.name)
    finished = sum(is_finished(cell / m.name) for m in sweep.members())
    out["cell_finished"] = f"{finished}/{len(sweep.members())}"
    return out


def verdict(runs: pd.DataFrame, s1: int, s2: int) -> dict:
    """Medians over seeds and the plan's rule: flips / toward the paper / no."""
    if runs.empty:
        return {"verdict": "incomplete (no run has reached the first read yet)"}
    finished = runs["cell_finished"].iloc[0]
    done, total = map(int, finished.split("/"))
    if done < total:
        return {"verdict": f"incomplete ({finished} runs finished)"}
    med = runs.groupby("mixture").median(numeric_only=True)
    a, j = med.loc[ALONE], med.loc[JOINT]
    equal_examples = j[f"sum_heldout@{s2}"] >= a[f"sum_heldout@{s1}"]
    equal_steps = j[f"sum_heldout@{s1}"] >= a[f"sum_heldout@{s1}"]
    seeds = runs.pivot(
        index="seed", columns="mixture", values=[f"sum_heldout@{s1}", f"sum_heldout@{s2}"]
    )
    wins = int((seeds[(f"sum_heldout@{s2}", JOINT)] >= seeds[(f"sum_heldout@{s1}", ALONE)]).sum())
    return {
        "n_params": int(a["n_params"]),
        "seeds": len(seeds),
        f"alone@{s1}": a[f"sum_heldout@{s1}"],
        f"alone@{s2}": a[f"sum_heldout@{s2}"],
        f"joint@{s1}": j[f"sum_heldout@{s1}"],
        f"joint@{s2}": j[f"sum_heldout@{s2}"],
        "joint wins, equal examples (seeds)": wins,
        "MAX / MED in joint": f"{j.get(f'max_heldout@{s2}', float('nan')):.2f} / "
        f"{j.get(f'med_heldout@{s2}', float('nan')):.2f}",
        "pool alone / joint": (
            f"{a[f'sum_pool@{s2}']:.2f} / {j[f'sum_pool@{s2}']:.2f}"
            if pd.notna(a.get(f"sum_pool@{s2}"))
            else "-"
        ),
        "W_E ordering alone / joint": f"{a.get('W_E_ordering', float('nan')):.2f} / "
        f"{j.get('W_E_ordering', float('nan')):.2f}",
        "verdict": "flips"
        if equal_examples and equal_steps
        else ("toward the paper" if equal_examples else "no"),
    }


def markdown(table: pd.DataFrame) -> str:
    """A markdown table (index as the first column), numbers to 2 decimals."""

    def cell(v) -> str:
        if isinstance(v, float):
            return "" if v != v else f"{v:.2f}"
        return str(v)

    head = ["cell", *map(str, table.columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, row in table.iterrows():
        lines.append("| " + " | ".join([str(name), *map(cell, row)]) + " |")
    return "\n".join(lines) + "\n"


def per_seed(runs: pd.DataFrame, s1: int, s2: int) -> pd.DataFrame:
    """SUM held-out accuracy per seed (s0 / s1 / ...) for each cell and arm, at both steps."""
    rows = {}
    for (cell, mixture), g in runs.sort_values("seed").groupby(["cell", "mixture"]):
        rows[f"{cell}: {mixture}"] = {
            f"SUM held-out @{s1}": " / ".join(f"{v:.2f}" for v in g[f"sum_heldout@{s1}"]),
            f"SUM held-out @{s2}": " / ".join(f"{v:.2f}" for v in g[f"sum_heldout@{s2}"]),
            "W_E ordering": " / ".join(f"{v:.2f}" for v in g.get("W_E_ordering", [])),
        }
    return pd.DataFrame(rows).T


def plot(runs: pd.DataFrame, s1: int, s2: int, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    reads = [
        (ALONE, s1, f"alone @{s1}"),
        (ALONE, s2, f"alone @{s2}"),
        (JOINT, s1, f"joint @{s1}"),
        (JOINT, s2, f"joint @{s2}"),
    ]
    long = pd.concat(
        [
            runs[runs.mixture == mix].assign(
                read=label, acc=lambda d, s=step: d[f"sum_heldout@{s}"]
            )
            for mix, step, label in reads
        ],
        ignore_index=True,
    )
    sns.set_theme(style="whitegrid")
    fig, ax = plt.subplots(figsize=(max(7, 1.4 * runs.cell.nunique() + 3), 4.6))
    order = [label for *_, label in reads]
    palette = dict(zip(order, ["#9ecae1", "#3182bd", "#fdae6b", "#e6550d"]))
    common = {"x": "cell", "y": "acc", "hue": "read", "hue_order": order, "palette": palette}
    sns.stripplot(long, **common, dodge=True, ax=ax, size=6, jitter=0.1)
    sns.pointplot(
        long,
        **common,
        dodge=0.6,
        estimator="median",
        errorbar=None,
        markers="_",
        markersize=18,
        linestyles="none",
        ax=ax,
        legend=False,
    )
    ax.set(
        ylim=(0, 1),
        ylabel="SUM held-out accuracy",
        title=f"SUM alone vs in SUM+MAX+MED: equal SUM examples = joint @{s2} vs alone @{s1}",
    )
    ax.title.set_fontsize(10)
    ax.legend(
        title="arm @ step (dots: seeds, bars: median)",
        fontsize=8,
        title_fontsize=8,
        loc="upper left",
        bbox_to_anchor=(1, 1),
    )
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


# %%
if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("screen")
    p.add_argument("out", nargs="?")
    p.add_argument("--s1", type=int, default=6000)
    p.add_argument("--s2", type=int, default=18000)
    args = p.parse_args()
    with script_errors("joint_screen"):
        screen, out = Path(args.screen), Path(args.out or args.screen)
        if not screen.is_dir():
            raise ConfigError(f"{screen}: no such folder")
        cells = [d for d in sorted(screen.iterdir()) if (d / "sweep.json").is_file()]
        if not cells:
            raise ConfigError(f"{screen}: no sweep in it (a cell is a folder with sweep.json)")
        out.mkdir(parents=True, exist_ok=True)
        runs = pd.concat([cell_runs(c, args.s1, args.s2) for c in cells], ignore_index=True)
        runs.to_csv(out / "screen_runs.csv", index=False)
        table = pd.DataFrame(
            {c.name: verdict(runs[runs.cell == c.name], args.s1, args.s2) for c in cells}
        ).T
        done = runs[runs.cell_finished.map(lambda f: f.split("/")[0] == f.split("/")[1])]
        seeds = per_seed(done, args.s1, args.s2)
        (out / "screen.md").write_text(markdown(table) + "\n" + markdown(seeds))
        print(markdown(table) + "\n" + markdown(seeds))
        print(
            "saved",
            out / "screen_runs.csv",
            out / "screen.md",
            plot(done, args.s1, args.s2, out / "screen.png"),
        )
