"""Figures drawn from saved numbers (never computed here): training curves of a run.

`plot_training(run_dir)` reads `metrics.jsonl` and writes `training.png` beside it: held-out
accuracy per test set against step (solid: whole set, dashed: the part guaranteed absent from
training), each set's majority-class baseline dotted, the training batches' accuracy (thin
black), and the training loss (every point of `train_curve`, about 250 per run, where the
metrics have it; else one per evaluation).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mechlistops.atomic import atomic_write
from mechlistops.checkpoint import read_metrics
from mechlistops.errors import CheckpointError


def parameter_axis(ax, sizes) -> None:
    """A log x-axis of parameter counts, labelled at the sizes run ("1,718") instead of at
    powers of ten, whose minor labels collide between sizes a few thousand apart."""
    from matplotlib.ticker import NullLocator

    sizes = sorted({int(n) for n in sizes})
    ax.set_xscale("log")
    ax.xaxis.set_minor_locator(NullLocator())
    labels = size_labels(sizes)
    ax.set_xticks(sizes, labels, rotation=30 if sum(map(bool, labels)) > 4 else 0)
    ax.set_xlabel("parameters")


def size_labels(sizes: list[int], apart: float = 1.1) -> list[str]:
    """Tick labels for sorted sizes: sizes less than `apart` times the first of their group
    (1,718 and 1,735: the same d_model on two vocabularies) share one label, "1,718 / 1,735",
    at the first, where their own labels would print over each other."""
    labels, first = [], None
    for n in sizes:
        if first is not None and n < sizes[first] * apart:
            labels[first] += f" / {n:,}"
            labels.append("")
        else:
            first = len(labels)
            labels.append(f"{n:,}")
    return labels


def metrics_frame(run_dir: Path) -> pd.DataFrame:
    """One row per (evaluation step, test set)."""
    rows = []
    for rec in read_metrics(run_dir):
        for name, r in rec["eval"].items():
            rows.append(
                {
                    "step": rec["step"],
                    "phase": rec.get("phase"),
                    "train_loss": rec.get("train_loss", np.nan),
                    "set": name,
                    **r,
                }
            )
    return pd.DataFrame(rows)


def training_curve(run_dir: Path) -> pd.DataFrame:
    """Training loss and batch accuracy, step by step as finely as the metrics record them:
    `train_curve`'s points, or one point per evaluation (`train_loss`; no accuracy) for lines
    that lack it."""
    rows = []
    for rec in read_metrics(run_dir):
        curve = rec.get("train_curve")
        if isinstance(curve, list) and curve:
            rows += [
                {"step": p[0], "train_loss": p[1], "train_accuracy": (p + [np.nan])[2]}
                for p in curve  # a hand-edited point that is not [step, loss, acc] is skipped
                if isinstance(p, list)
                and len(p) in (2, 3)
                and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in p)
            ]
        else:
            rows.append({"step": rec["step"], "train_loss": rec.get("train_loss", np.nan)})
    return pd.DataFrame(rows, columns=["step", "train_loss", "train_accuracy"])


def plot_training(run_dir: Path, out: Path | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    df = metrics_frame(run_dir)
    if df.empty:
        raise CheckpointError(f"{run_dir}: no evaluations in metrics.jsonl to plot")
    out = Path(out or Path(run_dir) / "training.png")
    sns.set_theme(style="whitegrid", context="notebook")
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(13, 4.2))
    palette = dict(zip(df["set"].unique(), sns.color_palette("tab10")))
    sns.lineplot(df, x="step", y="accuracy", hue="set", palette=palette, marker="o", ax=ax_acc)
    sns.lineplot(
        df,
        x="step",
        y="accuracy_heldout",
        hue="set",
        palette=palette,
        ax=ax_acc,
        linestyle="--",
        legend=False,
    )
    for name, group in df.groupby("set"):
        ax_acc.axhline(group["baseline"].iloc[0], color=palette[name], linestyle=":", lw=1)
    losses = training_curve(run_dir)  # read once: loss (right) and batch accuracy (left)
    curve = losses.dropna(subset=["train_accuracy"])
    if len(curve):
        ax_acc.plot(
            curve.step, curve.train_accuracy, color="k", lw=0.8, alpha=0.6, label="training batches"
        )
    ax_acc.legend(title="test set", fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax_acc.set(
        ylim=(0, 1.02),
        ylabel="accuracy",
        title="accuracy (solid), held-out part (dashed), majority baseline (dotted)",
    )
    ax_acc.title.set_fontsize(9)
    ax_loss.plot(losses.step, losses.train_loss, color="k", lw=1, label="training batches")
    sns.lineplot(df, x="step", y="loss", hue="set", palette=palette, marker="o", ax=ax_loss)
    ax_loss.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    shown = pd.concat([losses["train_loss"], df["loss"]])
    positive = shown[np.isfinite(shown) & (shown > 0)]  # a diverged run has none
    ax_loss.set(yscale="log" if len(positive) else "linear", ylabel="cross-entropy", title="loss")
    fig.suptitle(Path(run_dir).name, fontsize=10)
    fig.tight_layout()
    atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return out


def _series(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with a `series` label: the mixture, followed by the training data and training
    when the rows differ in them (transition.GROUPS)."""
    from mechlistops.transition import varying_groups

    label = frame.mixture
    for c in varying_groups(frame):
        label = label + ", " + frame[c].astype(str)
    return frame.assign(series=label)


def _series_palette(series: pd.Series) -> dict:
    """One colour per series label, in order of appearance (`_series`)."""
    import seaborn as sns

    labels = list(dict.fromkeys(series))
    colours = sns.color_palette("tab10" if len(labels) <= 10 else "husl", len(labels))
    return dict(zip(labels, colours))


def _legend_below(fig, palette: dict, ncol: int, marker=None, **kw) -> None:
    """One legend of `palette`'s series for every panel, below them, where it covers no run;
    the figure is saved with bbox_inches="tight" so that it shows."""
    import matplotlib.pyplot as plt

    handles = [plt.Line2D([], [], color=c, marker=marker, label=m) for m, c in palette.items()]
    fig.tight_layout()
    ncol = min(len(handles), ncol)
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0), ncol=ncol, **kw)


def plot_transitions(df: pd.DataFrame, fits: pd.DataFrame, out: Path) -> Path:
    """Final accuracy against parameters, one panel per operator, one colour per mixture (and
    per training data and training, when the runs differ in them; seeds as points, median as a
    line), with the sigmoid `fits` holds where the fit succeeded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    ops = list(dict.fromkeys(df.op))
    cols = min(len(ops), 4)
    rows = -(-len(ops) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 4 * rows), squeeze=False, sharey=True)
    for ax in axes.flat[len(ops) :]:
        ax.set_visible(False)
    from mechlistops.transition import sigmoid, varying_groups

    title = (
        ", ".join(["mixture", *varying_groups(df)]) + " (dashed: sigmoid fit, dotted: its midpoint)"
    )
    df, fits = _series(df), _series(fits)
    palette = _series_palette(df.series)
    for ax, op in zip(axes.flat, ops):
        part = df[df.op == op]
        sns.scatterplot(
            part,
            x="n_params",
            y="accuracy",
            hue="series",
            palette=palette,
            ax=ax,
            alpha=0.5,
            legend=False,
        )
        for mixture, g in part.groupby("series"):
            med = g.groupby("n_params")["accuracy"].median()
            ax.plot(med.index, med.values, color=palette[mixture], label=mixture)
            fit = fits[(fits.op == op) & (fits.series == mixture)]
            if len(fit) and fit.sigmoid.iloc[0] is not None:
                x = np.linspace(np.log10(g.n_params.min()), np.log10(g.n_params.max()), 100)
                y = sigmoid(x, *fit.sigmoid.iloc[0])
                ax.plot(10**x, y, color=palette[mixture], linestyle="--", lw=1)
                ax.axvline(fit.midpoint.iloc[0], color=palette[mixture], linestyle=":", lw=1)
        ax.set(ylim=(0, 1.02), title=op)
        parameter_axis(ax, part.n_params)
    _legend_below(fig, palette, 4, fontsize=8, title=title, title_fontsize=8)
    atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=110, format="png", bbox_inches="tight"))
    plt.close(fig)
    return out


def plot_pass_rates(df: pd.DataFrame, fits: pd.DataFrame, thresholds, out: Path) -> Path:
    """The share of runs whose accuracy reaches each threshold against parameters, one row of
    panels per threshold and one panel per operator, one colour per mixture (as
    `plot_transitions`, one legend below the panels), with its 95% Wilson interval at each
    size and the size where half the runs pass (`fits`' passrate_T, dotted, its value in the
    panel's own small legend): the population behind the pass-rate N*, and where a median
    of a bimodal population would jump. The mixtures sit a little apart on x so that their
    intervals stay legible."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    from mechlistops.transition import size_table

    sns.set_theme(style="whitegrid", context="notebook")
    ops = list(dict.fromkeys(df.op))
    fig, axes = plt.subplots(
        len(thresholds),
        len(ops),
        figsize=(5 * len(ops), 3.6 * len(thresholds)),
        squeeze=False,
        sharey=True,
    )
    df, fits = _series(df), _series(fits)
    palette = _series_palette(df.series)
    apart = {m: 10 ** (0.012 * (i - (len(palette) - 1) / 2)) for i, m in enumerate(palette)}
    for row, t in zip(axes, thresholds):
        for ax, op in zip(row, ops):
            part = df[df.op == op]
            for mixture, g in part.groupby("series", sort=False):
                cells = size_table(g, [t]).set_index("n_params")
                share = cells[f"share_{t}"]
                err = [share - cells[f"share_{t}_low"], cells[f"share_{t}_high"] - share]
                colour = palette[mixture]
                x = share.index.to_numpy(float) * apart[mixture]
                ax.errorbar(x, share, yerr=err, fmt="o-", capsize=3, color=colour, ms=5)
                fit = fits[(fits.op == op) & (fits.series == mixture)]
                half = fit[f"passrate_{t}"].iloc[0] if len(fit) else None
                if half is not None and pd.notna(half):
                    ax.axvline(half, color=colour, linestyle=":", lw=1.2, label=f"{half:,.0f}")
            ax.axhline(0.5, color="grey", lw=0.8)
            ax.set(ylim=(-0.03, 1.03), title=f"{op}: accuracy >= {t}")
            ax.title.set_fontsize(10)
            parameter_axis(ax, part.n_params)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(title="half pass at", fontsize=7, title_fontsize=7, framealpha=0.8)
        row[0].set_ylabel("share of runs (95% Wilson)")
    _legend_below(fig, palette, 3, marker="o", fontsize=8)
    atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=110, format="png", bbox_inches="tight"))
    plt.close(fig)
    return out


def plot_ratio_vs_data(rows: pd.DataFrame, out: Path) -> Path | None:
    """Each ratio N*(op alone) / N*(op in the mixture) of `transition.ratio_table`'s rows
    against the training pool per operator, with its 95% interval; a lower bound (the op
    alone never reaches the threshold) as a triangle pointing up; a ratio that is a bound
    because one arm's N* sits on its smallest size run (`side`) ringed by an open triangle,
    down for "at most", up for "at least". Three panels: N* as the
    smallest size whose median passes each threshold (held to the sizes run, so its ratio
    moves in the grid's steps); N* as the median's interpolated crossing of each threshold,
    with the sigmoid midpoints' ratio (dashed) where both arms have one; N* as the size where
    half the runs pass each threshold (a logistic fit over every run). The
    lines of one panel sit a little apart on x so that their intervals stay legible. None
    (no figure) unless the rows hold pools of two sizes or more."""
    midpoint = rows.statistic == "midpoint"
    rows = rows[(rows.train_size > 0) & ~(midpoint & rows.ratio.isna())]
    keys = ["line", "op", "mixture", *(c for c in ("training",) if c in rows.columns)]
    rows = rows.assign(line=rows.threshold.fillna("midpoint"))  # one colour in both panels
    if rows.train_size.nunique() < 2:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker as ticker
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    panels = {
        "N* = smallest size whose median passes": rows[rows.statistic == "smallest"],
        "N* = interpolated crossing; sigmoid midpoint": rows[
            rows.statistic.isin(["crossing", "midpoint"])
        ],
        "N* = where half the runs pass (logistic fit)": rows[rows.statistic == "passrate"],
    }
    panels = {title: p for title, p in panels.items() if len(p)}
    fig, axes = plt.subplots(
        1, len(panels), figsize=(5.5 * len(panels), 4.4), sharey=True, squeeze=False
    )
    lines = sorted(set(rows[keys].itertuples(index=False, name=None)))
    colours = dict(zip(lines, sns.color_palette(n_colors=len(lines))))
    training_varies = "training" in rows.columns and rows.training.nunique() > 1
    dodge = (rows.train_size.max() / rows.train_size.min()) ** 0.03  # 3% of the axis
    for ax, (title, panel) in zip(axes[0], panels.items()):
        groups = list(panel.groupby(["statistic", *keys], sort=True))
        for i, ((statistic, *key), g) in enumerate(groups):
            colour = colours[tuple(key)]
            g = g.sort_values("train_size")
            x = g.train_size * dodge ** (i - (len(groups) - 1) / 2)  # apart, on the log axis
            label = "sigmoid midpoint" if statistic == "midpoint" else f"at {key[0]}"
            label += f", {key[1]} in {key[2]}" + (f", {key[3]}" if training_varies else "")
            fmt = "s--" if statistic == "midpoint" else "o-"
            known = g.ratio.notna()
            ax.plot(x[known], g.ratio[known].astype(float), fmt, color=colour, label=label)
            # each interval as it is: a percentile interval need not hold the estimate
            # (with few resamples it often does not), so it is drawn apart from it
            band = known & g.ci_low.notna() & g.ci_high.notna()
            low, high = g.ci_low[band].astype(float), g.ci_high[band].astype(float)
            ax.errorbar(
                x[band],
                (low + high) / 2,
                yerr=(high - low) / 2,
                fmt="none",
                capsize=3,
                color=colour,
            )
            bound = g.bound.notna()
            ax.scatter(x[bound], g.bound[bound].astype(float), marker="^", s=70, color=colour)
            for side, marker in (("at most", "v"), ("at least", "^")):  # one N* at its smallest
                on = known & (g.side == side)
                y = g.ratio[on].astype(float)
                ax.scatter(x[on], y, marker=marker, s=110, lw=1.2, fc="none", ec=colour)
        ax.axhspan(2, 7, color="grey", alpha=0.15, label="the paper's 2-7x (SUM)")
        ax.axhline(1, color="grey", lw=0.8)
        ax.set(xscale="log", yscale="log", title=title, xlabel="training pool per operator")
        sizes = sorted(set(rows.train_size))
        crowded = len(sizes) > 5 or min(b / a for a, b in zip(sizes, sizes[1:])) < 1.15
        ax.set_xticks(sizes, [f"{s:,}" for s in sizes], rotation=40 if crowded else 0)
        ax.xaxis.set_minor_locator(ticker.NullLocator())
        ax.title.set_fontsize(10)
        ax.legend(fontsize=7)
    ax = axes[0][0]
    ax.set_ylabel("N*(alone) / N*(in the mixture)")
    low, high = ax.get_ylim()
    ax.set_yticks([t for t in (0.5, 1, 2, 4, 7, 10, 20, 50, 100) if low <= t <= high])
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}x"))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())
    notes = []  # the markers to explain
    if rows.bound.notna().any():
        notes.append("^ = lower bound: the operator alone never reaches it")
    if rows.side.isin(["at most", "at least"]).any():
        notes.append("open v / ^ = upper / lower bound: one arm's N* is at its smallest size run")
    if notes:
        fig.text(0.5, 0.005, ";  ".join(notes), ha="center", fontsize=8)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    plt.close(fig)
    return out
