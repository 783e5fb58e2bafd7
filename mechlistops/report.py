"""One self-contained HTML page comparing runs side by side, and sweeps as populations.

Runs every analysis on each run (saving its numbers and figures under `RUN/analysis/` as the
single commands do) and lays the results out in columns, one per run: per-operator accuracy,
ablation, usage ratios, direct logit attribution, probes, geometry, and circuitsvis attention
views on a few examples. A sweep directory, or a folder of runs trained one by one (at any
depth, e.g. scan/alone/..., scan/joint/...), given in place of a run becomes a population
section: its learning transitions on held-out accuracy (N* and the ratios of `mechlistops
transition --heldout`), then `mechlistops analyse` over its finished runs (cached per run, so
what `analyse` already computed is reused), its table of medians and 95% intervals over
seeds, and its figure per metric, optionally with each mixture split by whether SUM was
learned. Figures are embedded as data URIs and the circuitsvis bundle is inlined once, so the
page loads nothing from anywhere: it can be mailed, archived, or opened offline.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from mechlistops.analysis.ablation import ablate, sites_for
from mechlistops.analysis.attribution import (
    attribution_patching,
    direct_logit_attribution,
    usage_ratios,
)
from mechlistops.analysis.common import analysis_path, prepare, random_init
from mechlistops.analysis.geometry import geometry
from mechlistops.analysis.probes import parity_probes
from mechlistops.analysis.views import attention_view, views_page_fragment
from mechlistops.analysis.viz import plot_ablation, plot_attribution, plot_geometry, plot_probes
from mechlistops.atomic import check_writable_dir, check_writable_file, write_text
from mechlistops.checkpoint import holds_run, parse_run_spec, read_config, read_metrics
from mechlistops.errors import ConfigError
from mechlistops.evaluate import evaluate_sets
from mechlistops.plots import plot_ratio_vs_data, plot_training, plot_transitions
from mechlistops.transition import (
    accuracies_at,
    crossing_text,
    ratio_table,
    ratio_text,
    size_table,
    size_text,
    transitions,
    varying_groups,
)


@dataclass
class PopulationSummary:
    spec: str
    table: pd.DataFrame  # population.aggregate's: mixture, n_params, metric, median, ci_...
    figures: dict[str, Path]  # metric -> figure
    notes: list[str] = field(default_factory=list)  # members skipped or failed
    transitions: pd.DataFrame | None = None  # transition_table's, over held-out accuracy
    sizes: pd.DataFrame | None = None  # size_cells', the same accuracies by size


def summarise_population(
    spec: str, device="cpu", workers: int = 0, split: float | None = None
) -> PopulationSummary:
    """`mechlistops analyse` on a sweep or a folder of runs, every analysis at its default
    settings (so the per-run caches of `analyse` serve both), each mixture split at SUM
    held-out `split` if given; writes its analysis.json/.csv and figures into the folder."""
    from mechlistops.population import aggregate, analyse_runs, split_at, write_outputs

    df = analyse_runs([Path(spec)], workers=workers, device=str(device), progress=False)
    notes = [f"{name}: not finished, skipped" for name in df.attrs["skipped"]]
    notes += [f"{name}: failed ({why})" for name, why in df.attrs["failed"].items()]
    if df.empty:
        raise ConfigError(f"{spec}: no member could be analysed")
    if split is not None:
        df = split_at(df, split)
    table = aggregate(df)
    files = write_outputs(df, table, Path(spec))
    figures = {k: v for k, v in files.items() if k not in ("json", "csv")}
    accuracy = accuracies_at(Path(spec))
    accuracy = accuracy.assign(accuracy=accuracy.accuracy_heldout)
    fits = transitions(accuracy, thresholds=TRANSITION_THRESHOLDS, n_boot=200)
    figure = Path(spec) / "analysis" / "transitions_heldout.png"
    by_data = plot_ratio_vs_data(  # None unless the runs hold pools of several sizes
        ratio_table(fits, accuracy), figure.with_name("transitions_heldout_ratio_vs_data.png")
    )
    drawn = {"transitions": plot_transitions(accuracy, fits, figure), "by data": by_data}
    figures = {**{k: v for k, v in drawn.items() if v}, **figures}
    steps = transition_table(fits, accuracy)
    return PopulationSummary(spec, table, figures, notes, steps, size_cells(accuracy))


TRANSITION_THRESHOLDS = (0.5, 0.9)


def size_cells(accuracy: pd.DataFrame) -> pd.DataFrame:
    """The cells the transitions are read from, one row per operator and mixture (and data
    and training, where the runs differ in them), one column per size: the median accuracy
    and how many runs reach each threshold, '0.93 (6 of 6 at 0.5, 3 of 6 at 0.9)'."""
    keys = ["op", "mixture", *varying_groups(accuracy)]
    cells = size_table(accuracy, TRANSITION_THRESHOLDS)
    passing = [
        ", ".join(f"{r[f'passed_{t}']} of {r['runs']} at {t}" for t in TRANSITION_THRESHOLDS)
        for r in cells.to_dict(orient="records")
    ]
    cells = cells.assign(
        cell=[f"{m:.2f} ({p})" for m, p in zip(cells["median"], passing)],
        size=[f"{n:,.0f}" for n in cells.n_params],
    )
    order = list(dict.fromkeys(cells.sort_values("n_params")["size"]))
    table = cells.pivot(index=keys, columns="size", values="cell")[order].fillna("-")
    table.columns.name = "parameters"
    return table


def transition_table(fits: pd.DataFrame, accuracy: pd.DataFrame) -> pd.DataFrame:
    """`mechlistops transition`'s numbers as a table: per operator and mixture (and training
    data and training, where the runs differ in them), at each threshold N* as the smallest
    size whose median passes, as the medians' interpolated crossing and as the size where half
    the runs pass (a logistic fit over every run) [95% intervals], each
    with the operator alone's N* over it (or "at least" that, where the operator alone never
    reaches it), and the sigmoid midpoint."""

    keys = ["op", "mixture", *varying_groups(accuracy)]
    rows = []
    for r in fits.to_dict(orient="records"):
        row = {k: r[k] for k in keys}
        for t in TRANSITION_THRESHOLDS:
            row[f"N* ({t})"] = size_text(r[f"smallest_{t}"], r[f"smallest_{t}_ci"])
            row[f"crosses ({t})"] = crossing_text(r, t)
            row[f"half pass ({t})"] = crossing_text(r, t, kind="passrate")
            for name, key in (
                (f"alone / here ({t})", f"smallest_{t}"),
                (f"alone / here, crossing ({t})", f"crossing_{t}"),
                (f"alone / here, half pass ({t})", f"passrate_{t}"),
            ):
                alone = ratio_text(r, key, digits=1)
                row[name] = alone or ("" if r["mixture"] == r["op"] else "-")
        mid = r["midpoint"]
        row["sigmoid midpoint"] = (
            size_text(mid, r["midpoint_ci"])
            if mid is not None and pd.notna(mid)
            else r["midpoint_note"]
        )
        rows.append(row)
    return pd.DataFrame(rows).set_index(keys)


@dataclass
class RunSummary:
    spec: str
    accuracy: pd.DataFrame  # set x (accuracy, held-out accuracy, baseline)
    ablation: pd.DataFrame
    usage: pd.DataFrame
    dla: pd.DataFrame
    patching: pd.DataFrame
    probes: pd.DataFrame
    geometry: pd.DataFrame
    figures: dict[str, Path] = field(default_factory=dict)
    views: list = field(default_factory=list)  # (caption, OfflineView)


def summarise_run(
    spec: str, limit: int | None = None, examples: int = 2, device="cpu"
) -> RunSummary:
    """Run every analysis on one run; figures are written under RUN/analysis/."""
    inputs = prepare(spec, limit=limit, device=device)
    run, sets = inputs.run, inputs.sets
    model, vocab, modulus = run.model, run.vocab, run.config.data.n_values
    run_dir = run.run_dir
    results = evaluate_sets(model, sets, run.config.data, pools=inputs.pools)
    accuracy = pd.DataFrame(
        {
            k: {
                "accuracy": r.accuracy,
                "held-out accuracy": r.accuracy_heldout,
                "baseline": r.baseline,
                **(
                    {"pool accuracy": r.accuracy_pool, "memorisation gap": r.memorisation_gap}
                    if inputs.pools
                    else {}
                ),
            }
            for k, r in results.items()
        }
    ).T
    abl = pd.concat(
        [
            ablate(model, sets, sites_for(model, c), mode="mean", reference=inputs.reference)
            for c in ("mlp", "attn")
        ]
    )
    usage = usage_ratios(model, sets)
    dla = direct_logit_attribution(model, sets, modulus)
    patching = attribution_patching(model, sets, modulus)
    baseline = random_init(run, device)
    probes = parity_probes(model, baseline, sets, vocab, folds=5)
    geo = geometry(model, baseline, sets, vocab)
    figures = {
        "ablation (mean)": plot_ablation(abl, analysis_path(spec, "report_ablation", "png"), spec),
        "usage and attribution": plot_attribution(
            usage, dla, analysis_path(spec, "report_attribution", "png"), spec, patching=patching
        ),
        "parity probes": plot_probes(probes, analysis_path(spec, "report_probes", "png"), spec),
        "value geometry": plot_geometry(geo, analysis_path(spec, "report_geometry", "png"), spec),
    }
    if read_metrics(run_dir):  # none when missing, empty or unreadable: no training figure
        figures = {
            "training": plot_training(
                run_dir, analysis_path(str(run_dir), "report_training", "png")
            ),
            **figures,
        }
    last = run.config.model.n_layers - 1
    views = [
        (
            f"{name}, example {i}: "
            + " ".join(vocab.tokens[t] for t in ex.tokens[i, : ex.lengths[i]]),
            attention_view(model, ex, i, vocab, layer=last),
        )
        for name, ex in sets.items()
        for i in range(min(examples, len(ex)))
    ]
    return RunSummary(
        spec, accuracy, abl, usage, dla, patching, probes, geo.metrics, figures, views
    )


def _img(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(Path(path).name)}">'


def _side_by_side(frames: dict[str, pd.DataFrame]) -> str:
    """One table with the runs as column groups."""
    joined = pd.concat(frames, axis=1)
    return joined.to_html(float_format=lambda x: f"{x:.3f}", na_rep="-", border=0)


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; font-size: 0.85em; margin: 8px 0; }
th, td { padding: 3px 8px; text-align: right; border-bottom: 1px solid #eee; }
.runs { display: grid; grid-template-columns: repeat(var(--n), minmax(0, 1fr)); gap: 16px; }
.runs img { max-width: 100%; } .note { color: #555; font-size: 0.9em; max-width: 60em; }
.caption { font-family: monospace; font-size: 0.8em; }
.wide { overflow-x: auto; } .nowrap { white-space: nowrap; }
"""


def _wide(table: str) -> str:
    """A table that scrolls sideways in its own box where the window is narrower than it."""
    return f"<div class='wide'>{table}</div>"


def _two_lines(table: pd.DataFrame) -> str:
    """A table of '3,142 [1,718, 4,950]'-like cells as HTML, each value above its interval or
    note, so that many columns of them fit a window."""

    def cell(text: str) -> str:
        value, sep, rest = html.escape(text).partition(" [" if " [" in text else " (")
        if not sep:
            return value
        if sep == " [":  # the interval on one line; a note after it may wrap
            interval, _, note = rest.partition("]")
            return f"{value}<br><span class='nowrap'>[{interval}]</span>{note}"
        return f"{value}<br>({rest}"

    escaped = table.map(cell)
    escaped.index = escaped.index.map(lambda k: tuple(html.escape(str(v)) for v in k))
    escaped.columns = [html.escape(c) for c in escaped.columns]
    return escaped.to_html(border=0, escape=False)


def _population(pop: PopulationSummary) -> str:
    """A population's section: medians [95% interval] per metric x mixture (rows) and size
    (columns), and a figure per metric."""
    t = pop.table
    cells = t.assign(
        cell=[
            f"{m:.2f}" + ("" if np.isnan(lo) else f" [{lo:.2f}, {hi:.2f}]")
            for m, lo, hi in zip(t["median"], t.ci_low, t.ci_high)
        ],
        size=[f"{n:,} parameters (d_model {d})" for n, d in zip(t.n_params, t.d_model)],
    )
    order = list(dict.fromkeys(cells.sort_values("n_params")["size"]))
    rows = ["metric", "mixture"] + (["data"] if t.data.nunique() > 1 else [])
    table = cells.pivot(index=rows, columns="size", values="cell")[order]
    seeds = (
        f"{t.seeds.min()}" if t.seeds.min() == t.seeds.max() else f"{t.seeds.min()}-{t.seeds.max()}"
    )
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in pop.notes)
    figures = "".join(f"<div>{_img(path)}</div>" for path in pop.figures.values())
    transitions = ""
    if pop.transitions is not None:
        transitions = (
            "<p class='note'>Learning transitions (<code>mechlistops transition --heldout"
            "</code>), on held-out accuracy: the smallest size whose median over seeds reaches "
            "each threshold, where the medians cross it (interpolated in log parameters) and "
            "where half the runs pass it (a logistic fit over every run) [95% intervals over "
            "seeds], the operator alone's over each, and the "
            "sigmoid midpoint; the first figure draws them (over pools of several sizes, the "
            "second draws the ratio against the pool size).</p>"
            + _wide(_two_lines(pop.transitions))
        )
    if pop.sizes is not None:
        transitions += (
            "<p class='note'>The held-out accuracy they are read from, per size: the median "
            "over seeds and how many runs reach each threshold (near a transition the runs "
            "often split into learners and runs at chance, and a median that moves by "
            "hundredths moves N* by a whole size; <code>mechlistops transition</code> compares "
            "these counts between cells with Fisher's exact test).</p>"
            + _wide(_two_lines(pop.sizes))
        )
    return (
        f"<h2>Population: {html.escape(pop.spec)}</h2>{transitions}"
        "<p class='note'>Every finished member "
        "analysed (<code>mechlistops analyse</code>); per mixture and size, the median over "
        f"seeds ({seeds} per cell) and its 95% bootstrap interval. Figures: medians (lines, "
        "interval bands) and each seed (points) against parameters.</p>"
        + (f"<ul class='note'>{notes}</ul>" if notes else "")
        + _wide(table.to_html(na_rep="-", border=0))
        + f"<div class='runs' style='--n: 2'>{figures}</div>"
    )


def render(summaries: list[RunSummary], populations: list[PopulationSummary] = ()) -> str:
    """The HTML page for population and run summaries (populations first)."""
    names = [s.spec for s in [*populations, *summaries]]
    parts = [f"<h1>mechlistops report: {html.escape(', '.join(names))}</h1>"]
    parts += [_population(pop) for pop in populations]
    if not summaries:
        return _page(parts, "")

    def table(title: str, note: str, frames: dict[str, pd.DataFrame]) -> None:
        parts.append(f"<h2>{title}</h2><p class='note'>{note}</p>{_side_by_side(frames)}")

    table(
        "Accuracy",
        "Per test set: accuracy on the whole set, on the part guaranteed absent from "
        "training, and the majority-class baseline.",
        {s.spec: s.accuracy for s in summaries},
    )
    table(
        "Ablation (mean)",
        "Accuracy when each site's output is replaced by its mean.",
        {
            s.spec: s.ablation.pivot(index="site", columns="set", values="ablated_acc")
            for s in summaries
        },
    )
    table(
        "Usage ratio at the answer",
        "||sublayer output|| / ||residual input||, mean per example.",
        {
            s.spec: s.usage[s.usage["where"] == "answer"].pivot(
                index=["layer", "sublayer"], columns="set", values="ratio"
            )
            for s in summaries
        },
    )
    table(
        "Direct logit attribution",
        "Mean direct effect of each component on the answer's "
        "logit (final LayerNorm scale frozen).",
        {s.spec: s.dla.pivot(index="component", columns="set", values="logit") for s in summaries},
    )
    table(
        "Attribution patching",
        "Estimated change of the answer-vs-runner-up logit difference when a site takes another "
        "example's activation (first-order; confirm with resample ablation).",
        {s.spec: s.patching.pivot(index="site", columns="set", values="score") for s in summaries},
    )
    table(
        "Parity probes",
        "Held-out accuracy of logistic-regression probes (random-init control and chance beside).",
        {
            s.spec: s.probes.set_index(["position", "site"])[["accuracy", "random_init", "chance"]]
            for s in summaries
        },
    )
    table(
        "Value geometry",
        "W_E's value rows, the residual stream at value tokens (per value) and at the answer's "
        "`=` (per answer: @ =), and W_U's value columns: trained vs random init.",
        {s.spec: s.geometry.set_index(["representation", "metric"]) for s in summaries},
    )

    grid = f"<div class='runs' style='--n: {len(summaries)}'>"
    for title in dict.fromkeys(t for s in summaries for t in s.figures):
        cells = "".join(
            f"<div>{_img(s.figures[title]) if title in s.figures else ''}</div>" for s in summaries
        )
        parts.append(f"<h2>{html.escape(title)}</h2>{grid}{cells}</div>")

    bundle, rendered = views_page_fragment([v for s in summaries for _, v in s.views])
    it = iter(rendered)
    cells = []
    for s in summaries:
        items = "".join(f"<p class='caption'>{html.escape(c)}</p>{next(it)}" for c, _ in s.views)
        cells.append(f"<div><h3>{html.escape(s.spec)}</h3>{items}</div>")
    parts.append("<h2>Attention patterns (last layer)</h2>" + grid + "".join(cells) + "</div>")
    # Inline the bundle once, as a classic script so that CircuitsVis is a global for every view.
    return _page(parts, f"<script>{bundle}</script>" if bundle else "")


def _page(parts: list[str], head: str) -> str:
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>mechlistops report</title>"
        f"<style>{_STYLE}</style>{head}</head><body>{''.join(parts)}</body></html>"
    )


def build_report(
    specs: list[str],
    out: Path,
    limit: int | None = 1000,
    device="cpu",
    workers: int = 0,
    split: float | None = None,
) -> Path:
    """The page for runs and populations: a directory that holds no run itself (a sweep, or
    a folder of runs) is a population, split at SUM held-out `split` if given."""
    from mechlistops.sweep import finished_runs

    check_writable_file(out, "report")
    is_population = [Path(s).is_dir() and not holds_run(Path(s)) for s in specs]
    populations = [s for s, yes in zip(specs, is_population) if yes]
    runs = [s for s, yes in zip(specs, is_population) if not yes]
    # a missing or foreign run, or a folder without one, fails here, before any work
    for spec in runs:
        read_config(parse_run_spec(spec)[0])
    for spec in populations:  # its table and figures go into the folder, as `analyse`'s do
        check_writable_dir(Path(spec), "population folder")
        if not finished_runs([Path(spec)]):
            raise ConfigError(f"{spec}: no finished run (give runs, sweeps or folders of runs)")
    pops = [summarise_population(s, device, workers, split) for s in populations]
    summaries = [
        summarise_run(s, limit=limit, device=device)
        for s in tqdm(runs, desc="runs", disable=not runs)
    ]
    write_text(Path(out), render(summaries, pops))
    return Path(out)
