# %% [markdown]
# # What a stopping rule would have saved on runs already trained
# `train.StopRule` is a pure function of a run's evaluations, so it replays exactly on saved
# metrics: for every finished run under ROOT, the step at which `--stop-patience P
# --stop-delta D` (and/or `--stop-accuracy A`) would have stopped it, the steps saved, and what
# the rest of the training changed in the operators' mean held-out accuracy.
# Run: `python analyses/stop_savings.py ROOT [--patience 6] [--delta 0.005] [--accuracy 0]`

# %%
import argparse
import dataclasses
from pathlib import Path

import pandas as pd

from mechlistops.analysis.common import script_errors
from mechlistops.checkpoint import is_finished, load_run_config, read_metrics
from mechlistops.errors import ConfigError
from mechlistops.train import StopRule, mean_heldout


def replay(run_dir: Path, patience: int, delta: float, accuracy: float) -> dict | None:
    records = read_metrics(run_dir)
    if not records:
        return None
    cfg = load_run_config(run_dir)
    rule = StopRule(
        dataclasses.replace(
            cfg.train, stop_patience=patience, stop_delta=delta, stop_accuracy=accuracy
        )
    )
    last_phase = max(r["phase"] for r in records)
    stop = records[-1]
    for record in records:
        if rule.update(record["eval"]) and record["phase"] == last_phase:
            stop = record
            break
    return {
        "run": str(run_dir),
        "steps": records[-1]["step"],
        "stop_step": stop["step"],
        "held-out at stop": mean_heldout(stop["eval"]),
        "held-out at end": mean_heldout(records[-1]["eval"]),
    }


# %%
if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("root")
    p.add_argument("--patience", type=int, default=6)
    p.add_argument("--delta", type=float, default=0.005)
    p.add_argument("--accuracy", type=float, default=0.0)
    args = p.parse_args()
    with script_errors("stop_savings"):
        runs = sorted(
            m.parent for m in Path(args.root).rglob("metrics.jsonl") if is_finished(m.parent)
        )
        rows = [r for d in runs if (r := replay(d, args.patience, args.delta, args.accuracy))]
        if not rows:
            raise ConfigError(f"{args.root}: no finished run with evaluations under it")
        df = pd.DataFrame(rows)
        saved = 1 - df.stop_step.sum() / df.steps.sum()
        early = df[df.stop_step < df.steps]
        lost = early["held-out at end"] - early["held-out at stop"]
        print(
            f"{len(df)} runs, {df.steps.sum():,} steps trained; with patience {args.patience}, "
            f"delta {args.delta}, accuracy {args.accuracy}: {df.stop_step.sum():,} steps "
            f"({saved:.0%} saved); {len(early)} runs stop early, and training them on to the end "
            f"would have changed their mean held-out accuracy (over the operators) by "
            f"{lost.mean():+.3f} on average (from {lost.min():+.3f} to {lost.max():+.3f})"
        )
