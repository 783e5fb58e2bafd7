# %% [markdown]
# # Which Fourier frequencies carry the values, from the embedding to the readout
# For every finished run trained on the operator (--op, default SUM) among those given (runs,
# sweeps, or folders of runs trained one by one, at any depth):
# its held-out accuracy at the end, and how the variance of three (n values, d) matrices splits
# over the Fourier frequencies k = 1..n/2 of the value index
# (mechlistops.analysis.geometry.fourier_spectrum): W_E's value rows, the last layer's residual
# stream at the `=` that predicts the answer, averaged per answer on the operator's test set
# (what the model has computed, by its result), and W_U's value columns (the readout). Per
# matrix: the two frequencies holding the most variance and their joint share; for W_U also
# its share at even k, the part of the readout that gives v and v + n/2 the same logits (1 = it
# cannot tell the sum mod n from the sum mod n/2; "-" for an odd n, which has no n/2).
# Writes OUT/fourier.csv (one row per run and matrix, a column per k), OUT/fourier.md and
# OUT/fourier.png (the spectra as heatmaps, one row per run). Used for stage 9 of
# docs/findings.md.
# Run: `python analyses/fourier.py OUT RUN_OR_FOLDER [...] [--op SUM]`.

# %%
import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from tqdm.auto import tqdm

from mechlistops import load_run
from mechlistops.analysis.common import save_outputs, script_errors
from mechlistops.analysis.geometry import fourier_spectrum, representations
from mechlistops.checkpoint import load_run_config, read_n_params, read_results
from mechlistops.data import make_test_sets
from mechlistops.errors import ConfigError
from mechlistops.sweep import finished_runs

MATRICES = ("W_E", "@ =", "W_U")  # "@ =": the last layer's stream at the answer's `=`
TITLES = {
    "W_E": "W_E value rows",
    "@ =": "last layer's stream at `=`, per answer",
    "W_U": "W_U value columns",
}


def run_spectra(run_dir: Path, op: str) -> pd.DataFrame:
    if op not in load_run_config(run_dir).data.ops:  # before loading the weights
        return pd.DataFrame()
    run = load_run(run_dir)
    c = run.config
    n = c.data.n_values
    reps = representations(run.model, {op: make_test_sets(c.data)[op]}, n)
    last = f"blocks.{run.model.cfg.n_layers - 1}.hook_resid_post @ ="
    common = {
        "folder": str(run_dir.parent),
        "run": run_dir.name,
        "arm": "+".join(c.data.ops),
        "data": c.data.training_data,
        "n_params": read_n_params(run_dir),
        "seed": c.train.seed,
        "n_values": n,
        "heldout": float(read_results(run_dir)["results"][op]["accuracy_heldout"]),
    }
    rows = []
    for matrix, key in zip(MATRICES, ("W_E", last, "W_U")):
        spectrum = fourier_spectrum(reps[key])
        rows.append(
            {**common, "matrix": matrix, **{f"k{k + 1}": v for k, v in enumerate(spectrum)}}
        )
    return pd.DataFrame(rows)


def top_two(row: pd.Series, ks: list[str]) -> str:
    shares = row[ks].astype(float)
    first, second = shares.sort_values(ascending=False).index[:2]
    return f"{first[1:]}, {second[1:]} ({shares[first] + shares[second]:.2f})"


def summary(df: pd.DataFrame, op: str) -> str:
    ks = [c for c in df.columns if c.startswith("k") and c[1:].isdigit()]
    even = [k for k in ks if int(k[1:]) % 2 == 0]
    lines = [
        f"| trained as | {op}'s training data | parameters | seed | {op} held-out "
        "| W_E: top two k (share) | stream at `=`: top two k (share) "
        "| W_U: top two k (share) | W_U share at even k |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    df = df.sort_values(["arm", "n_params"], kind="stable")  # then in the order given
    for (arm, data, n, seed, _, _), g in df.groupby(
        ["arm", "data", "n_params", "seed", "folder", "run"], sort=False
    ):
        by = g.set_index("matrix")
        cells = " | ".join(top_two(by.loc[m], ks) for m in MATRICES)
        # an odd n has no v -> v + n/2: the even share names nothing there
        halves = f"{by.loc['W_U', even].sum():.2f}" if by.n_values.iloc[0] % 2 == 0 else "-"
        lines.append(
            f"| {arm} | {data} | {n:,} | {seed} | {by.heldout.iloc[0]:.2f} | {cells} | {halves} |"
        )
    return "\n".join(lines) + "\n"


def plot(df: pd.DataFrame, op: str, path: Path) -> None:
    ks = [c for c in df.columns if c.startswith("k") and c[1:].isdigit()]
    df = df.sort_values(["arm", "heldout"])
    df = df.assign(
        label=[
            f"{r.arm}, {r.data}, {r.n_params:,} s{r.seed}: {r.heldout:.2f}" for r in df.itertuples()
        ]
    )
    twice = df.duplicated(["label", "matrix"], keep=False)  # alike runs in two folders
    df.loc[twice, "label"] += " (" + df.loc[twice, "folder"] + ")"
    order = list(dict.fromkeys(df.label))
    fig, axes = plt.subplots(
        1, len(MATRICES), figsize=(4.2 * len(MATRICES) + 2.5, 0.28 * len(order) + 1.6), sharey=True
    )
    for ax, matrix in zip(axes, MATRICES):
        grid = df[df.matrix == matrix].set_index("label").loc[order, ks]
        grid.columns = [c[1:] for c in ks]
        sns.heatmap(grid, vmin=0, vmax=1, cmap="viridis", ax=ax, cbar=matrix == MATRICES[-1])
        ax.set(xlabel="Fourier frequency k over the value index", ylabel="", title=TITLES[matrix])
    axes[0].set_ylabel(f"run ({op} held-out accuracy)")
    fig.suptitle(f"share of each matrix's variance at each frequency ({op})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("out", type=Path)
    p.add_argument("runs", type=Path, nargs="+", help="runs, sweeps or folders of runs")
    p.add_argument("--op", default="SUM")
    a = p.parse_args()
    with script_errors("fourier"):
        frames = [run_spectra(run, a.op) for run in tqdm(finished_runs(a.runs), desc="runs")]
        df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        if df.empty:
            raise ConfigError(f"no finished run trained on {a.op} in {', '.join(map(str, a.runs))}")
        table = summary(df, a.op)
        save_outputs(a.out, "fourier", df, table, lambda path: plot(df, a.op, path))


if __name__ == "__main__":
    main()
