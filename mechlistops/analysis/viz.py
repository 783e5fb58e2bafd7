"""Figures for analysis results. Draws only: every function takes the data an analysis
returned and writes a PNG (atomically), never computes a metric."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mechlistops.atomic import atomic_write


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="white", context="notebook")
    return plt, sns


def _save(fig, out: Path) -> Path:
    """Write the figure as a PNG (atomically) and close it."""
    import matplotlib.pyplot as plt

    out = Path(out)
    fig.tight_layout()
    atomic_write(out, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return out


def plot_ablation(df: pd.DataFrame, out: Path, title: str = "") -> Path:
    """Heatmaps: ablated accuracy (left) and its change from clean (right), site x test set."""
    plt, sns = _pyplot()
    acc = df.pivot(index="site", columns="set", values="ablated_acc").loc[df.site.unique()]
    delta = df.pivot(index="site", columns="set", values="delta_acc").loc[df.site.unique()]
    clean = df.drop_duplicates("set").set_index("set")["clean_acc"]
    acc.columns = [f"{c}\n(clean {clean[c]:.2f})" for c in acc.columns]
    # room for the title and the two-line column labels even with one or two sites (a
    # one-layer model), where a height in proportion to the rows squashed the cells
    height = max(3.4, 1.9 + 0.45 * len(acc))
    fig, axes = plt.subplots(1, 2, figsize=(max(7.0, 3 + 2.2 * acc.shape[1]), height))
    sns.heatmap(acc, annot=True, fmt=".2f", vmin=0, vmax=1, cmap="viridis", ax=axes[0])
    axes[0].set(title="accuracy when ablated", xlabel="", ylabel="")
    axes[0].tick_params(axis="x", labelrotation=0)  # the two-line labels read level
    sns.heatmap(delta, annot=True, fmt="+.2f", vmin=-1, vmax=1, cmap="RdBu", center=0, ax=axes[1])
    axes[1].set(title="change from clean", xlabel="", ylabel="")
    fig.suptitle(title, fontsize=10)
    out = _save(fig, out)
    plt.close(fig)
    return out


def plot_attribution(
    usage: pd.DataFrame,
    dla: pd.DataFrame,
    out: Path,
    title: str = "",
    patching: pd.DataFrame | None = None,
) -> Path:
    """Usage ratios per layer and sublayer (bars, answer position and all positions), the
    direct logit attribution of every component (heatmap, component x test set) and, when
    given, attribution patching scores (heatmap, site x test set)."""
    plt, sns = _pyplot()
    usage = usage.assign(site=[f"L{r.layer} {r.sublayer}" for r in usage.itertuples()])
    pivot = dla.pivot(index="component", columns="set", values="logit")
    pivot = pivot.loc[dla.component.unique(), dla.set.unique()]
    panels = 3 if patching is None else 4
    fig, axes = plt.subplots(
        1,
        panels,
        figsize=(5 * panels, 1.5 + 0.32 * max(len(pivot), 8)),
        gridspec_kw={"width_ratios": [1, 1, 1.2, 1.2][:panels]},
    )
    for ax, where in zip(axes[:2], ("answer", "all")):
        sns.barplot(usage[usage["where"] == where], x="site", y="ratio", hue="set", ax=ax)
        ax.set(
            title=f"||sublayer out|| / ||resid in||, {where} position(s)", xlabel="", ylabel="ratio"
        )
        ax.title.set_fontsize(9)
        ax.tick_params(axis="x", rotation=45)
    sns.heatmap(pivot, annot=True, fmt=".1f", cmap="RdBu", center=0, ax=axes[2])
    axes[2].set(title="direct logit attribution to the answer", xlabel="", ylabel="")
    axes[2].title.set_fontsize(9)
    if patching is not None:
        scores = patching.pivot(index="site", columns="set", values="score")
        scores = scores.loc[patching.site.unique(), patching.set.unique()]
        sns.heatmap(scores, annot=True, fmt=".2f", cmap="RdBu", center=0, ax=axes[3])
        axes[3].set(title="attribution patching (change of logit difference)", xlabel="", ylabel="")
        axes[3].title.set_fontsize(9)
    fig.suptitle(title, fontsize=10)
    out = _save(fig, out)
    plt.close(fig)
    return out


def plot_geometry(geo, out: Path, title: str = "") -> Path:
    """PC1-PC2 and PC2-PC3 of the value embeddings (labelled by value, coloured by parity, or
    by sign for the elements of S_k),
    their cosine-similarity matrix, the metrics beside a random initialisation, and (residues)
    the Fourier spectra of W_E, the last layer's stream at `=` per answer and W_U."""
    plt, sns = _pyplot()
    n = len(geo.coords)
    fig, axes = plt.subplots(1, 5, figsize=(23, 4.3))
    colours = ["tab:blue" if p == 0 else "tab:orange" for p in geo.parity]
    for ax, (i, j) in zip(axes[:2], ((0, 1), (1, 2))):
        if geo.coords.shape[1] <= j:
            ax.set_axis_off()
            continue
        ax.scatter(geo.coords[:, i], geo.coords[:, j], c=colours, s=60)
        for v in range(n):
            ax.annotate(
                geo.names[v],
                (geo.coords[v, i], geo.coords[v, j]),
                fontsize=11,
                xytext=(4, 4),
                textcoords="offset points",
            )
        ax.set(
            xlabel=f"PC{i + 1}", ylabel=f"PC{j + 1}", title="W_E value rows (even blue, odd orange)"
        )
        ax.title.set_fontsize(9)
    sns.heatmap(
        geo.cosine,
        vmin=-1,
        vmax=1,
        cmap="RdBu",
        center=0,
        square=True,
        ax=axes[2],
        cbar_kws={"shrink": 0.8},
    )
    axes[2].set(title="cosine similarity of W_E value rows", xlabel="value", ylabel="value")
    axes[2].title.set_fontsize(9)
    m = geo.metrics.melt(id_vars=["representation", "metric"], var_name="model")
    scores = m[(m.representation == "W_E") & (m.metric != "key frequency")]  # 0-1 scores only
    sns.barplot(scores, x="metric", y="value", hue="model", ax=axes[3])
    axes[3].tick_params(axis="x", labelrotation=20)
    axes[3].set(ylim=(0, 1.05), title="W_E metrics: trained vs random init", xlabel="", ylabel="")
    axes[3].title.set_fontsize(9)
    if geo.spectra:  # the matrices a sum flows through: in, computed (last layer), out
        last = [r for r in geo.spectra if r.endswith(" @ =")][-1]
        spectra = pd.DataFrame(
            [
                {"matrix": name, "k": k + 1, "share": share}
                for name, rep in (("W_E", "W_E"), ("last layer @ =", last), ("W_U", "W_U"))
                for k, share in enumerate(geo.spectra[rep])
            ]
        )
        sns.barplot(spectra, x="k", y="share", hue="matrix", ax=axes[4])
        axes[4].set(
            ylim=(0, 1.05),
            title="Fourier spectrum over the value index (trained)",
            xlabel="frequency k",
            ylabel="share of variance",
        )
        axes[4].title.set_fontsize(9)
    else:
        axes[4].set_axis_off()
    fig.suptitle(title, fontsize=10)
    out = _save(fig, out)
    plt.close(fig)
    return out


def plot_probes(df: pd.DataFrame, out: Path, title: str = "") -> Path:
    """Probe accuracy across the residual stream, one panel per position kind, one colour per
    target: trained (solid, with fold spread), random init (dashed), chance (dotted)."""
    plt, sns = _pyplot()
    stream = df[df.site != "W_E"]
    kinds = list(dict.fromkeys(stream.position))
    fig, axes = plt.subplots(
        1, len(kinds), figsize=(5.5 * len(kinds), 4.2), squeeze=False, sharey=True
    )
    palette = dict(zip(dict.fromkeys(df.target), sns.color_palette("tab10")))
    for ax, kind in zip(axes[0], kinds):
        part = stream[stream.position == kind]
        for target, g in part.groupby("target", sort=False):
            x = np.arange(len(g))
            c = palette[target]
            ax.errorbar(x, g.accuracy, yerr=g["std"], color=c, marker="o", label=target)
            ax.plot(x, g.random_init, color=c, linestyle="--", lw=1)
            ax.plot(x, g.chance, color=c, linestyle=":", lw=1)
            ax.set_xticks(
                x,
                [s.replace("blocks.", "").replace("hook_", "") for s in g.site],
                rotation=35,
                fontsize=8,
            )
        ax.set(ylim=(0, 1.02), title=f"at {kind} positions", ylabel="held-out probe accuracy")
    axes[0][0].legend(
        title="target (dashed: random init, dotted: chance)", fontsize=8, title_fontsize=8
    )
    fig.suptitle(title, fontsize=10)
    out = _save(fig, out)
    plt.close(fig)
    return out
