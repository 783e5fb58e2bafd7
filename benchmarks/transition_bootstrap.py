"""How long `mechlistops transition`'s bootstrap takes, in one process against spread over
processes (`transitions(n_jobs=...)`), in this process, on a committed runs table.

The intervals must be the same whatever the number of processes: the script checks the two
tables are identical and prints the seconds of each and their ratio. Default: stage 9p's 48
runs on the sampled 11,250 pool (docs/data/stage9p_runs.csv), held-out accuracy, thresholds
0.5, 0.85 and 0.9, 1,000 resamples: the command of docs/findings.md stage 9p.

    python benchmarks/transition_bootstrap.py [--table CSV] [--bootstrap 1000] [--jobs -1]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from mechlistops.errors import ConfigError
from mechlistops.transition import read_runs_table, transitions

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--table", type=Path, default=ROOT / "docs" / "data" / "stage9p_runs.csv")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--jobs", type=int, default=-1, help="processes of the parallel run")
    args = p.parse_args()
    if not 1 <= args.bootstrap <= 100_000:
        p.error(f"--bootstrap {args.bootstrap}: must be 1 to 100000")
    if args.jobs == 0 or args.jobs < -1:
        p.error(f"--jobs {args.jobs}: must be -1 (one per core) or a number of processes")
    try:
        runs = read_runs_table(args.table)
    except ConfigError as e:
        p.error(str(e))
    df = runs.dropna(subset=["accuracy_heldout"]).assign(accuracy=lambda d: d["accuracy_heldout"])
    thresholds = (0.5, 0.85, 0.9)
    seconds, tables = {}, {}
    for jobs in (1, args.jobs):
        t = time.perf_counter()
        fits = transitions(df, thresholds=thresholds, n_boot=args.bootstrap, n_jobs=jobs)
        seconds[jobs] = time.perf_counter() - t
        tables[jobs] = fits.to_json(orient="records")
    same = tables[1] == tables[args.jobs]
    print(
        f"{args.table.name}: {df.run.nunique()} runs ({len(df)} accuracies), {args.bootstrap} "
        f"resamples, thresholds {thresholds}, {os.cpu_count()} cores"
    )
    print(f"one process: {seconds[1]:.1f}s; n_jobs={args.jobs}: {seconds[args.jobs]:.1f}s")
    print(f"speed-up {seconds[1] / seconds[args.jobs]:.2f}x; identical tables: {same}")
    if not same:
        raise SystemExit("the parallel bootstrap gave other intervals")


if __name__ == "__main__":
    main()
