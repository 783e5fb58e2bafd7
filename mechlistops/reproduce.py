"""The reproduction of ../shared/PAPER.md's learning-transition claims as one command.

    mechlistops reproduce --quick      # reduced scale: about 30 minutes on 2 CPU cores
    mechlistops reproduce              # the full study (a GPU: ensembles; or Ray)

Three sweeps share one set of sizes, seeds and steps (the scale), under one directory:

    single/      claim 1: each operation alone (MAX, MIN, MED, SUM, PROD, NADD, SSUM)
    joint/       claims 2 and 3: SUM with easy operations, SUM with NADD, and the
                 shuffled-table control SSUM with MAX and MED
    curriculum/  claim 6: MAX+MED first (pretrain_steps = steps), then SUM for `steps`

then one transition table over all of them (an operation's N* alone comes from single/),
written as transitions.json / transitions.png, and summary.md with the claims' numbers. Every
member is an ordinary run directory; rerunning resumes. Training examples are single-operator
trees (`--tree single`): each expression uses one operation, as in the test sets, and a
mixture's operations share the step budget.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mechlistops.atomic import check_writable_dir, write_json, write_text
from mechlistops.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from mechlistops.errors import ConfigError
from mechlistops.sweep import SweepConfig, run_sweep
from mechlistops.transition import ratio_text, size_text

SINGLE = (("MAX",), ("MIN",), ("MED",), ("SUM",), ("PROD",), ("NADD",), ("SSUM",))


@dataclass(frozen=True)
class Regime:
    """The task and training settings the study runs under (overrides of the defaults)."""

    name: str
    data: tuple[tuple[str, Any], ...] = ()  # DataConfig fields
    model: tuple[tuple[str, Any], ...] = ()  # ModelConfig fields
    train: tuple[tuple[str, Any], ...] = ()  # TrainConfig fields
    note: str = ""

    def settings(self) -> dict[str, Any]:
        """Every field the regime sets, by name (config field names are unique across
        DataConfig, ModelConfig and TrainConfig)."""
        return {**dict(self.data), **dict(self.model), **dict(self.train)}


def options(settings: dict[str, Any]) -> list[str]:
    """Config fields as `mechlistops train` / `sweep` options: {"train_size": 12500,
    "looped": True} -> ["--train-size", "12500", "--looped"] (False: --no-FIELD)."""
    out = []
    for name, value in settings.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            out.append(flag if value else "--no-" + flag[2:])
        else:
            out += [flag, str(value)]
    return out


REGIMES = {
    "stream": Regime(
        "stream",
        note="2-3 operands per node (with 2, MED is floor((a+b)/2), an addition), a fresh "
        "sample stream, equal steps for every mixture: the regime of our first studies",
    ),
    "paper": Regime(
        "paper",
        data=(("min_args", 3), ("train_size", 3000)),
        model=(("looped", True), ("n_heads", 1)),
        note="a finite pool of 3,000 expressions per operator trained for many epochs, exactly "
        "3 operands per node (the paper's default; MED is then an order statistic), one "
        "single-head block applied twice (the later version's model): the most paper-like "
        "setting of the factor screen (docs/findings.md), under which joint training helped "
        "SUM most",
    ),
    "sampled": Regime(
        "sampled",
        data=(("min_args", 3), ("train_size", 12_500), ("pool_draw", "sampled")),
        model=(("looped", True), ("n_heads", 1)),
        train=(
            ("steps", 28_000),
            ("schedule", "wsd"),
            ("decay_steps", 10_000),
            ("min_lr_frac", 0.0),
            ("eval_interval", 500),
            ("save_interval", 4_000),
        ),
        note="a pool of 12,500 expressions per operator drawn as the sampler draws them, "
        "exactly 3 operands, one single-head block applied twice, 18,000 constant-lr steps "
        "then 10,000 of linear decay to 0 whatever the scale: docs/findings.md stage 9's "
        "recipe, at the pool size where SUM+MAX+MED needed 5.7x fewer parameters than SUM "
        "alone to reach 0.9 held-out (the paper reports 2-7x). Its steps make even the "
        "quick scale hours on a CPU (a run took 4-14 minutes on one core from d_model 8 to "
        "48 in stage 9); on a GPU the sweeps train as ensembles",
    ),
}


@dataclass(frozen=True)
class Scale:
    name: str
    d_models: tuple[int, ...]
    seeds: int
    steps: int
    joint: tuple[tuple[str, ...], ...]  # the mixtures of joint/
    single: tuple[tuple[str, ...], ...] = SINGLE  # the operations of single/
    test_size: int = 1000
    note: str = ""
    regime: Regime = REGIMES["stream"]


_JOINT = (("SUM", "MAX", "MED"), ("SUM", "NADD"), ("SSUM", "MAX", "MED"))
SCALES = {
    "quick": Scale(
        "quick",
        d_models=(8, 16, 32, 64),
        seeds=2,
        steps=1500,
        joint=_JOINT,
        note="About 30 minutes on 2 CPU cores in the paper and stream regimes (their 1,500 "
        "steps). A reduced scale: fewer sizes, seeds and "
        "steps than the full study, so its N* values are not the paper's; "
        "docs/reproduction.md compares the scales. In the paper regime 1,500 steps show "
        "claim 1 only: no arm learns SUM this early (measured, docs/reproduction.md).",
    ),
    "full": Scale(
        "full",
        d_models=(12, 16, 24, 32, 40, 48, 64, 80, 96, 128),  # 5,026 to 409,750 parameters
        seeds=3,
        steps=10000,
        joint=_JOINT + (("SUM", "MAX"), ("SUM", "MED"), ("SUM", "MIN", "PROD")),
        note="meant for a GPU (--engine ensemble, the default there) or a Ray cluster",
    ),
}


def base_config(scale: Scale) -> RunConfig:
    """Everything but mixture, size and seed: the defaults, with single-operator trees, under
    the scale's regime."""
    return RunConfig(
        DataConfig(tree="single", test_size=scale.test_size, **dict(scale.regime.data)),
        ModelConfig(**dict(scale.regime.model)),
        TrainConfig(  # the regime's own settings win, its steps too (a recipe's decay)
            **{
                "steps": scale.steps,
                "eval_interval": max(scale.steps // 5, 1),
                "save_interval": max(scale.steps // 5, 1),
                **dict(scale.regime.train),
            }
        ),
    )


def sweeps(scale: Scale) -> dict[str, SweepConfig]:
    base = base_config(scale)
    curriculum = dataclasses.replace(
        base,
        train=dataclasses.replace(
            base.train, pretrain_ops=("MAX", "MED"), pretrain_steps=base.train.steps
        ),
    )
    return {
        "single": SweepConfig(scale.single, scale.d_models, scale.seeds, base),
        "joint": SweepConfig(scale.joint, scale.d_models, scale.seeds, base),
        "curriculum": SweepConfig((("SUM",),), scale.d_models, scale.seeds, curriculum),
    }


def describe(scale: Scale) -> str:
    parts = sweeps(scale)
    runs = sum(len(s.members()) for s in parts.values())
    steps = parts["single"].base.train.steps  # the scale's, or the regime's own
    return (
        f"reproduction at {scale.name} scale: d_model {','.join(map(str, scale.d_models))} "
        f"(2 layers), {scale.seeds} seeds, {steps:,} steps per run (curriculum: "
        f"{steps:,} MAX+MED then {steps:,} SUM), {scale.test_size} test expressions "
        f"per operation; {runs} runs; regime {scale.regime.name}: {scale.regime.note}. "
        f"{scale.note}"
    )


def run(
    scale: Scale, out: Path, progress: bool = True, **sweep_options
) -> tuple[dict[str, Path], dict[str, str]]:
    """Train every sweep (resuming), then fit and write the transitions and summary from the
    runs that finished. Returns the files written and the failed members ("sweep/member":
    reason; a rerun retries them)."""
    out = check_writable_dir(out, "reproduction directory")
    failed = {}
    for name, sweep in sweeps(scale).items():
        outcome = run_sweep(sweep, out / name, progress=progress, **sweep_options)
        failed.update({f"{name}/{member}": why for member, why in outcome.failed.items()})
    if failed and collect_all(out).empty:
        name, reason = next(iter(failed.items()))
        raise ConfigError(f"every run failed ({len(failed)}; {name}: {reason})")
    return write_summary(scale, out), failed


def collect_all(out: Path) -> pd.DataFrame:
    """Every finished run's final accuracies; curriculum rows only for SUM (the pretraining
    operations' test sets are also scored there, but are not this study's question)."""
    from mechlistops.transition import final_accuracies

    frames = []
    for name in ("single", "joint", "curriculum"):
        if (Path(out) / name).is_dir():
            df = final_accuracies(Path(out) / name)
            if name == "curriculum" and not df.empty:
                df = df[df.op == "SUM"]
            frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def write_summary(
    scale: Scale, out: Path, n_boot: int = 500, df: pd.DataFrame | None = None
) -> dict[str, Path]:
    """Fit and write the transitions and summary.md of the runs under `out` (or of `df`, the
    rows of several studies together)."""
    from mechlistops.plots import plot_transitions
    from mechlistops.transition import transitions

    df = collect_all(out) if df is None else df
    files = {}
    tables = {}
    for metric, suffix in (("accuracy", ""), ("accuracy_heldout", "_heldout")):
        part = df.assign(accuracy=df[metric])
        fits = transitions(part, thresholds=(0.9, 0.99), n_boot=n_boot)
        tables[metric] = fits
        path = out / f"transitions{suffix}.json"
        write_json(path, json.loads(fits.to_json(orient="records")))
        files[f"transitions{suffix}"] = path
        files[f"figure{suffix}"] = plot_transitions(part, fits, out / f"transitions{suffix}.png")
    text = summary_text(scale, df, tables["accuracy"], tables["accuracy_heldout"])
    write_text(out / "summary.md", text)
    files["summary"] = out / "summary.md"
    return files


def summary_text(scale: Scale, df: pd.DataFrame, fits: pd.DataFrame, held: pd.DataFrame) -> str:
    """Markdown: per (operation, setting) N* two ways, ratios to the operation alone, and the
    median accuracy of the largest model; for the whole test set and its held-out part."""
    largest = df[df.n_params == df.groupby("mixture").n_params.transform("max")]
    acc = largest.groupby(["op", "mixture"])[["accuracy", "accuracy_heldout"]].median()
    lines = [
        "# Reproduction summary",
        "",
        describe(scale),
        "",
        "N*: parameters at the learning transition; midpoint = sigmoid fit in log10(params) "
        "(or why there is none), with the accuracies it rises from and to (a rise that "
        "levels off low is not learning the operation); >=0.9 = smallest size whose median "
        "accuracy over seeds "
        "reaches 0.9; [95% bootstrap interval over seeds]. Ratio = N*(alone) / N*(here) "
        "from the >=0.9 column (> 1: learned with fewer parameters here; 'at least' where "
        "the operation alone never reaches 0.9: its largest size over N* here). Held-out: test "
        f"expressions with >= {base_config(scale).data.holdout_min_leaves} leaves, never in "
        "training.",
        "",
        "| claim | operation | trained as | N* midpoint | N* >=0.9 | ratio | N* >=0.9 "
        "held-out | ratio held-out | acc. largest | held-out acc. largest |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    held_by = {(r["op"], r["mixture"]): r for r in held.to_dict(orient="records")}
    for r in fits.to_dict(orient="records"):
        op, mixture = r["op"], r["mixture"]
        claim = _claim(op, mixture)
        if claim is None:
            continue
        h = held_by.get((op, mixture), {})
        mid = r["midpoint_note"]
        if r["midpoint"] is not None and pd.notna(r["midpoint"]):
            low, high = r["rise"]
            mid = f"{size_text(r['midpoint'], r['midpoint_ci'])}, {low:.2f} to {high:.2f}"
        a = acc.loc[(op, mixture)]
        cells = [claim, op, mixture, mid]
        for row in (r, h):
            cells.append(size_text(row.get("smallest_0.9"), row.get("smallest_0.9_ci")))
            ratio = ratio_text(row, "smallest_0.9") if row else None
            cells.append(ratio or ("" if mixture == op else "-"))
        cells += [f"{a['accuracy']:.3f}", f"{a['accuracy_heldout']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _claim(op: str, mixture: str) -> str | None:
    """Which claim a row speaks to; None for rows that speak to none (MAX within SUM+MAX+MED)."""
    if mixture == op:
        return "1"
    if op == "SUM":
        return "6" if "after" in mixture else ("3" if "NADD" in mixture else "2")
    if op == "SSUM":
        return "3"
    return None
