"""Analyses of a whole population: claims 4 and 5 as properties of populations, not of one run.

For every finished run of a sweep, or of folders of runs trained one by one (or those a filter
keeps), `member_metrics` runs the chosen
analyses on its final weights and reduces each to a few numbers (table below); the numbers are
cached in RUN/analysis/population.json with the settings that produced them, so a rerun skips
what is done. `aggregate` gives, per mixture x training data x size and metric, the median over
seeds and a 95% bootstrap interval (seeds resampled).

- geometry (claim 4): W_E ordering, circularity and parity separability, trained, at random
  init, and their difference;
- probe (claim 4): the best parity-probe accuracy over sites and positions, minus its
  random-init control;
- attribute (claim 5): the attention / MLP usage ratio at the answer (output/input norm ratios,
  mean over layers), and attention's share of the direct logit attribution to the answer
  (|heads + b_O| over |heads + b_O| + |MLPs|, mean absolute contributions);
- ablate (claim 5): the target operator's accuracy drop with every MLP mean-ablated, and with
  every attention layer mean-ablated; on its test set, or (`ablate_on="pool"`) on its training
  pool, where a model that memorised has accuracy to lose.

The target operator (for the ablation drops) is the study operator, SUM by default;
members whose mixture lacks it get no ablation numbers (a stated skip, not an error).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mechlistops import checkpoint as ckpt
from mechlistops.atomic import write_json
from mechlistops.errors import ConfigError

ANALYSES = ("geometry", "probe", "attribute", "ablate")
CACHE = "population.json"
CACHE_VERSION = 2  # 2: mean ablation averages over a reference batch apart from the test set
ABLATE_ON = ("test", "pool")
COLUMNS = ["member", "mixture", "data", "d_model", "seed", "n_params", "heldout", "metric", "value"]


@dataclass(frozen=True)
class Settings:
    """What the numbers depend on besides the weights (part of the cache key)."""

    limit: int = 500  # test examples per set
    target: str = "SUM"
    folds: int = 5
    ablate_on: str = "test"  # "pool": the target's training pool (what a memoriser gets right)

    def __post_init__(self) -> None:
        if self.ablate_on not in ABLATE_ON:
            raise ConfigError(f"ablate_on must be one of {ABLATE_ON}, got {self.ablate_on!r}")

    def key(self, analysis: str) -> str:
        settings = f"limit={self.limit}|target={self.target}|folds={self.folds}"
        if analysis == "ablate":
            settings += f"|on={self.ablate_on}"
        return f"{analysis}|v{CACHE_VERSION}|{settings}"


def _geometry(model, baseline, sets, vocab) -> dict[str, float]:
    from mechlistops.analysis.geometry import geometry

    geo = geometry(model, baseline, sets, vocab).metrics
    out = {}
    for r in geo[geo.representation == "W_E"].itertuples():
        name = f"W_E {r.metric}"
        out[name] = float(r.trained)
        out[f"{name} (random init)"] = float(r.random_init)
        out[f"{name} minus random init"] = float(r.trained - r.random_init)
    return out


def _probe(model, baseline, sets, vocab, folds) -> dict[str, float]:
    from mechlistops.analysis.probes import parity_probes

    # one thread of probes per worker: the population's workers are processes already
    df = parity_probes(model, baseline, sets, vocab, folds=folds, n_jobs=1)
    best = df.loc[df.accuracy.idxmax()]
    return {
        "parity probe (best)": float(best.accuracy),
        "parity probe minus control": float(best.accuracy - best.random_init),
    }


def _attribute(model, sets, modulus) -> dict[str, float]:
    from mechlistops.analysis.attribution import direct_logit_attribution, usage_ratios

    usage = usage_ratios(model, sets)
    at = usage[usage["where"] == "answer"].groupby("sublayer")["ratio"].mean()
    dla = direct_logit_attribution(model, sets, modulus)
    size = dla.assign(size=dla.logit.abs()).groupby("component")["size"].mean()
    attn = size[[c for c in size.index if " H" in c or "attn" in c]].sum()
    mlp = size[[c for c in size.index if c.endswith(" mlp")]].sum()
    return {
        "attention / MLP usage at the answer": float(at["attn"] / at["mlp"]),
        "attention share of the direct logit attribution": float(attn / (attn + mlp)),
    }


def _ablate(model, sets, pools, reference, target, on, limit) -> dict[str, float]:
    from mechlistops.analysis.ablation import Site, ablate

    if target not in sets:
        return {}  # the mixture has no such operator: nothing to ablate for it
    if on == "pool":
        if target not in pools:
            raise ConfigError(f"ablation on the pool: the run has no {target} pool (--train-size)")
        sets = {target: pools[target].subset(slice(0, limit))}
    layers = tuple(range(model.cfg.n_layers))
    sites = [Site("mlp", layers), Site("attn", layers)]
    df = ablate(model, {target: sets[target]}, sites, mode="mean", reference=reference)
    drop = df.set_index("site")["delta_acc"]
    where = " on its pool" if on == "pool" else ""
    return {
        f"{target} accuracy drop{where}, {name} mean-ablated": float(-drop[site.label])
        for name, site in (("MLPs", sites[0]), ("attention", sites[1]))
    }


def member_metrics(
    run: Path | str, analyses=ANALYSES, settings: Settings = Settings(), device: str = "cpu"
) -> dict[str, float]:
    """The numbers of every analysis in `analyses` for one finished run, or for one saved step
    of a run (`RUN@STEP`), cached in RUN/analysis/population[_stepN].json."""
    from mechlistops.analysis.common import analysis_path, prepare, random_init

    run_dir, step = ckpt.parse_run_spec(str(run))
    if step is None and not ckpt.is_finished(run_dir):
        raise ConfigError(f"{run_dir}: not finished (no results.json); nothing to analyse")
    cache_path = analysis_path(str(run), CACHE.removesuffix(".json"), "json")
    cache = _read_cache(cache_path)
    todo = [a for a in analyses if settings.key(a) not in cache]
    if todo:
        inputs = prepare(str(run), limit=settings.limit, device=device)
        model, cfg, vocab = inputs.run
        modulus = cfg.data.n_values
        baseline = random_init(inputs.run, device) if {"geometry", "probe"} & set(todo) else None
        compute = {
            "geometry": lambda: _geometry(model, baseline, inputs.sets, vocab),
            "probe": lambda: _probe(model, baseline, inputs.sets, vocab, settings.folds),
            "attribute": lambda: _attribute(model, inputs.sets, modulus),
            "ablate": lambda: _ablate(
                model,
                inputs.sets,
                inputs.pools,
                inputs.reference,
                settings.target,
                settings.ablate_on,
                settings.limit,
            ),
        }
        for a in todo:
            cache[settings.key(a)] = compute[a]()
        write_json(cache_path, cache)
    return {k: v for a in analyses for k, v in cache[settings.key(a)].items()}


def _read_cache(path: Path) -> dict:
    try:
        cache = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # none yet, or damaged: recompute
    ok = isinstance(cache, dict) and all(
        isinstance(v, dict) and all(isinstance(x, (int, float)) for x in v.values())
        for v in cache.values()
    )
    return cache if ok else {}


def _member_task(run: str, analyses, settings: Settings, device: str) -> dict[str, float]:
    return member_metrics(run, analyses, settings, device)


def analyse_steps(
    run_dir: Path,
    steps: list[int] | None = None,
    analyses=ANALYSES,
    settings: Settings = Settings(),
    workers: int = 0,
    device: str = "cpu",
    progress: bool = True,
) -> pd.DataFrame:
    """The same numbers at every saved step of one run (or at `steps`): when does structure
    appear, relative to the accuracy jump? One row per (step, metric): step, metric, value.
    Steps are analysed in parallel single-thread workers and cached per step; failed steps are
    in `df.attrs["failed"]` (step -> reason)."""
    from tqdm.auto import tqdm

    from mechlistops.sweep import run_local

    run_dir = Path(run_dir)
    ckpt.read_config(run_dir)  # a run directory, or a one-line error
    saved = ckpt.saved_steps(run_dir)
    if not saved:
        raise ConfigError(f"{run_dir}: no saved steps to analyse (steps/ is empty)")
    steps = saved if steps is None else sorted(set(steps))
    missing = [s for s in steps if s not in saved]
    if missing:
        shown = ", ".join(map(str, missing[:5]))
        raise ConfigError(f"{run_dir}: no snapshot at step {shown} (saved: {len(saved)} steps)")
    calls = [(f"{run_dir}@{s}", tuple(analyses), settings, device) for s in steps]
    rows, failed = [], {}
    bar = tqdm(total=len(calls), desc="steps", disable=not progress)

    def on_done(i: int, metrics: dict) -> None:
        rows.extend({"step": steps[i], "metric": k, "value": v} for k, v in metrics.items())
        bar.update()

    def on_failed(i: int, reason: str) -> None:
        failed[steps[i]] = reason
        bar.update()

    run_local(_member_task, calls, workers or os.cpu_count() or 1, on_done, on_failed)
    bar.close()
    df = pd.DataFrame(rows, columns=["step", "metric", "value"]).sort_values(["metric", "step"])
    df.attrs["failed"] = failed
    return df.reset_index(drop=True)


def plot_steps(df: pd.DataFrame, run_dir: Path, out: Path) -> Path:
    """Test accuracy (solid) and held-out accuracy (dashed) per test set over training, then
    every metric over the same steps (black), with its random-init value where it has one
    (grey, dashed); a symmetric-log step axis shows the early steps."""
    from mechlistops.analysis.viz import _pyplot, _save
    from mechlistops.plots import metrics_frame

    plt, sns = _pyplot()
    names = list(dict.fromkeys(df.metric))
    bases = [m for m in names if not m.endswith(("(random init)", "minus random init"))]
    cols = 3
    rows = (1 + len(bases) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.2 * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]
    acc = metrics_frame(run_dir)
    palette = dict(zip(acc["set"].unique(), sns.color_palette("tab10")))
    top = flat[0]
    for name, g in acc.groupby("set", sort=False):
        top.plot(g.step, g.accuracy, color=palette[name], marker=".", label=name)
        top.plot(g.step, g.accuracy_heldout, color=palette[name], linestyle="--")
    top.set(ylim=(0, 1.02), title="test accuracy (solid), held-out part (dashed)")
    top.legend(fontsize=7)
    for ax, metric in zip(flat[1:], bases):
        g = df[df.metric == metric]
        ax.plot(g.step, g.value, marker=".", color="k", label="trained")
        control = df[df.metric == f"{metric} (random init)"]
        if len(control):
            ax.plot(control.step, control.value, color="grey", ls="--", label="random init")
            ax.legend(fontsize=7)
        ax.set_title(metric)
    last = max(int(df.step.max()), int(acc.step.max()) if len(acc) else 0)
    for ax in flat[: 1 + len(bases)]:
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(0, last * 1.1)
        ax.set_xlabel("step")
        ax.title.set_fontsize(8)
    for ax in flat[1 + len(bases) :]:
        ax.set_axis_off()
    fig.suptitle(f"{Path(run_dir).name}: analyses across training", fontsize=10)
    fig.tight_layout()
    return _save(fig, out)


def _members(paths: list[Path]) -> tuple[list[tuple[str, Path, object]], list[str]]:
    """(name, run directory, RunConfig) of every finished run the paths give (as
    sweep.finished_runs reads them: runs, sweeps, folders of runs at any depth), named by the
    path below the one given (prefixed by its folder's name when several are given); and the
    names of the sweeps' unfinished members."""
    from mechlistops.sweep import SWEEP_FILE, finished_runs, load_sweep

    members, skipped = [], []
    for p in map(Path, paths):
        prefix = f"{p.name}/" if len(paths) > 1 else ""
        if (p / SWEEP_FILE).is_file():
            skipped += [
                prefix + m.name for m in load_sweep(p).members() if not ckpt.is_finished(p / m.name)
            ]
        for run in finished_runs([p]):
            name = prefix + (run.relative_to(p).as_posix() if run != p else p.name)
            members.append((name, run, ckpt.load_run_config(run)))
    return members, skipped


def analyse_runs(
    paths: list[Path],
    analyses=ANALYSES,
    settings: Settings = Settings(),
    mixtures: tuple[str, ...] | None = None,
    d_models: tuple[int, ...] | None = None,
    workers: int = 0,
    device: str = "cpu",
    progress: bool = True,
) -> pd.DataFrame:
    """One row per (member, metric): mixture, data (the training pool in words, so that runs
    on different pools are never pooled), d_model, seed, n_params, heldout (the target
    operator's final held-out accuracy; NaN where the run does not train it), metric, value,
    over every
    finished run the paths give: sweeps, or runs trained one by one into folders. Members
    are analysed in parallel single-thread workers; a sweep's unfinished members are listed in
    `df.attrs["skipped"]`, failed ones in `df.attrs["failed"]` (member -> reason)."""
    from tqdm.auto import tqdm

    from mechlistops.sweep import run_local

    unknown = set(analyses) - set(ANALYSES)
    if unknown or not analyses:
        raise ConfigError(f"analyses must be some of {', '.join(ANALYSES)}")
    found, skipped = _members(paths)
    where = ", ".join(map(str, paths))
    if not found:
        raise ConfigError(f"{where}: no finished run (give runs, sweeps or folders of runs)")
    keep = [
        (mixtures is None or "+".join(cfg.data.ops) in mixtures)
        and (d_models is None or cfg.model.d_model in d_models)
        for _, _, cfg in found
    ]
    done = [m for m, k in zip(found, keep) if k]
    if not done:
        raise ConfigError(f"{where}: no finished member matches the filter")
    calls = [(str(run), tuple(analyses), settings, device) for _, run, _ in done]
    rows, failed = [], {}
    bar = tqdm(total=len(calls), desc="members", disable=not progress)

    def on_done(i: int, metrics: dict) -> None:
        name, run, cfg = done[i]
        label = "+".join(cfg.data.ops)
        if cfg.train.pretrain_steps:
            label += " after " + "+".join(cfg.train.pretrain_ops)
        n_params = ckpt.read_n_params(run)
        final = ckpt.read_results(run)["results"].get(settings.target)
        heldout = final["accuracy_heldout"] if final else float("nan")
        for metric, value in metrics.items():
            rows.append(
                {
                    "member": name,
                    "mixture": label,
                    "data": cfg.data.training_data,
                    "d_model": cfg.model.d_model,
                    "seed": cfg.train.seed,
                    "n_params": n_params,
                    "heldout": heldout,
                    "metric": metric,
                    "value": value,
                }
            )
        bar.update()

    def on_failed(i: int, reason: str) -> None:
        failed[done[i][0]] = reason
        bar.update()

    run_local(_member_task, calls, workers or os.cpu_count() or 1, on_done, on_failed)
    bar.close()
    df = pd.DataFrame(rows, columns=COLUMNS)
    df.attrs.update(skipped=skipped, failed=failed)
    return df


def split_at(df: pd.DataFrame, threshold: float, target: str = "SUM") -> pd.DataFrame:
    """The rows with each mixture split by whether the run learned the target: "SUM, SUM
    held-out >= 0.9" and "SUM, SUM held-out < 0.9" (runs that do not train it keep their
    label), so that models that compute the target can be compared with each other and not
    only with those that memorise."""
    learned = df.heldout >= threshold
    tag = np.where(
        learned, f", {target} held-out >= {threshold:g}", f", {target} held-out < {threshold:g}"
    )
    return df.assign(mixture=df.mixture + np.where(df.heldout.isna(), "", tag))


def bootstrap_median(values: np.ndarray, n_boot: int = 1000, seed: int = 0) -> tuple:
    """(median, 2.5th, 97.5th percentile of the bootstrap medians); one value: no interval."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return (float("nan"),) * 3
    median = float(np.median(values))
    if len(values) == 1:
        return median, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    draws = np.median(rng.choice(values, size=(n_boot, len(values)), replace=True), axis=1)
    return median, float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))


def aggregate(df: pd.DataFrame, n_boot: int = 1000) -> pd.DataFrame:
    """Per mixture x training data x size x metric: seeds, median, ci_low, ci_high."""
    out = []
    for (mixture, data, n_params, d_model, metric), g in df.groupby(
        ["mixture", "data", "n_params", "d_model", "metric"], sort=True
    ):
        median, low, high = bootstrap_median(g["value"].to_numpy(), n_boot)
        out.append(
            {
                "mixture": mixture,
                "data": data,
                "n_params": n_params,
                "d_model": d_model,
                "metric": metric,
                "seeds": len(g),
                "median": median,
                "ci_low": low,
                "ci_high": high,
            }
        )
    return pd.DataFrame(out)


def plot_metric(df: pd.DataFrame, table: pd.DataFrame, metric: str, out: Path) -> Path:
    """One metric against parameters, saved as a PNG: see metric_figure."""
    from mechlistops.analysis.viz import _save

    return _save(metric_figure(df, table, metric), out)


def metric_figure(df: pd.DataFrame, table: pd.DataFrame, metric: str):
    """One metric against parameters: a line per mixture (medians), seeds as points. The y
    label is the metric wrapped onto lines short enough to fit beside the axes."""
    import textwrap

    from mechlistops.analysis.viz import _pyplot
    from mechlistops.plots import parameter_axis

    plt, sns = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 5))
    several = table.data.nunique() > 1  # one line per mixture and training data

    def series(frame: pd.DataFrame) -> pd.Series:
        return frame.mixture + ", " + frame.data if several else frame.mixture

    points = df[df.metric == metric].assign(series=series)
    lines = table[table.metric == metric].assign(series=series)
    names = sorted(points.series.unique())
    palette = dict(zip(names, sns.color_palette("tab10", len(names))))
    sns.scatterplot(
        points,
        x="n_params",
        y="value",
        hue="series",
        palette=palette,
        ax=ax,
        alpha=0.6,
        legend=False,
    )
    for name, g in lines.groupby("series"):
        g = g.sort_values("n_params")
        ax.plot(g.n_params, g["median"], marker="o", color=palette[name], label=name)
        ax.fill_between(g.n_params, g.ci_low, g.ci_high, color=palette[name], alpha=0.15)
    ax.set(ylabel=textwrap.fill(metric, 28), title=metric)
    parameter_axis(ax, points.n_params)
    ax.title.set_fontsize(10)
    title = "mixture, training data" if several else "mixture"
    ax.legend(  # under the axes, where it hides no seed
        fontsize=8,
        title=f"{title} (median, 95% interval)",
        title_fontsize=8,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.3),
        ncol=1 if several else 2,  # a series named by its training data too is long
        frameon=False,
    )
    fig.tight_layout()
    return fig


def write_outputs(df: pd.DataFrame, table: pd.DataFrame, out_dir: Path) -> dict[str, Path]:
    """analysis.json/.csv (the aggregated table) and one figure per metric."""
    from mechlistops.atomic import write_text

    out_dir = Path(out_dir)
    files = {"json": out_dir / "analysis.json", "csv": out_dir / "analysis.csv"}
    write_json(files["json"], json.loads(table.to_json(orient="records")))
    write_text(files["csv"], table.to_csv(index=False))
    write_text(out_dir / "analysis_runs.csv", df.to_csv(index=False))
    figures = out_dir / "analysis"
    for metric in table.metric.unique():
        slug = "".join(c if c.isalnum() else "_" for c in metric.lower()).strip("_")
        files[metric] = plot_metric(df, table, metric, figures / f"{slug}.png")
    return files
