"""`mechlistops sweep | transition`: grids of runs and their learning transitions."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
from pathlib import Path

from mechlistops.cli.options import bounded, checked, numbers, only_with
from mechlistops.cli.train import add_device_option, add_run_options, run_config_from_args
from mechlistops.config import COMPILE_MODES, parse_ops
from mechlistops.errors import ConfigError, MechlistopsError
from mechlistops.launch import SLURM_EXECUTORS, SlurmOptions
from mechlistops.search import run_search
from mechlistops.sweep import ENGINES, LAUNCHERS, SWEEP_FILE, load_sweep, parse_seeds

EXIT_SOME_FAILED = 1


# ----------------------------------------------------------------------------- sweeps
SEARCH_KNOBS = ("threshold", "op", "on")  # --search-KNOB: run_search's keyword KNOB
# --slurm-* options by SlurmOptions field
SLURM_OPTIONS = {
    "partition": "slurm_partition",
    "time_min": "slurm_time",
    "gpus": "slurm_gpus",
    "cpus": "slurm_cpus",
    "mem_gb": "slurm_mem_gb",
    "parallelism": "slurm_parallelism",
    "executor": "slurm_executor",
}


def cmd_sweep(args) -> int:
    from mechlistops.sweep import SweepConfig, branch_sweep, run_sweep

    if args.branch_from:
        parent, step = _sweep_spec(args.branch_from)
        if args.search == "bisect":
            raise ConfigError("--search bisect picks its own sizes; it cannot --branch-from")
        grid = load_sweep(parent)
        base = run_config_from_args(args, base=grid.base)
    else:
        missing = [o for o, v in (("--mixture", args.mixture), ("--d-model", args.d_model_list))
                   if not v]  # fmt: skip
        if missing:
            raise ConfigError(f"a sweep needs {' and '.join(missing)} (or --branch-from)")
        grid, base = None, run_config_from_args(args)
    sweep = SweepConfig(
        tuple(parse_ops(m) for m in args.mixture) if args.mixture else grid.mixtures,
        args.d_model_list or grid.d_models,
        args.seeds or (grid.seeds if grid else (0, 1, 2)),
        base,
    )
    only_with(
        args, "--search bisect", args.search == "bisect", *("search_" + k for k in SEARCH_KNOBS)
    )
    if args.search == "bisect":
        return _bisect(sweep, args)
    if args.branch_from:
        branch_sweep(parent, step, sweep, Path(args.out), not args.no_progress)
    outcome = run_sweep(sweep, Path(args.out), **_engine_options(args))
    before = outcome.saved_before
    if before is not None and before < len(sweep.members()):
        print(f"the sweep grew from {before} to {len(sweep.members())} runs")
    return report_outcome(outcome, len(sweep.members()))


def _sweep_spec(spec: str) -> tuple[Path, int]:
    """--branch-from's SWEEP@STEP, read as `checkpoint.parse_run_spec` reads RUN@STEP."""
    from mechlistops.checkpoint import parse_run_spec
    from mechlistops.errors import CheckpointError

    try:
        path, step = parse_run_spec(spec)
    except CheckpointError:
        step = None
    if step is None:
        raise ConfigError(f"--branch-from {spec}: expected SWEEP@STEP with an integer step")
    return path, step


def report_outcome(outcome, total: int) -> int:
    """Print what a sweep left: the members that failed (with reasons) and those that diverged;
    exit status 1 when some failed."""
    out = outcome.out
    for name, reason in outcome.diverged.items():
        print(f"  {name}: {reason}")
    if not outcome.failed:
        print(f"{total} runs in {out}; next: mechlistops transition {out}")
        return 0
    print(f"{len(outcome.failed)} of {total} runs failed (listed in {out}/failures.json):")
    for name, reason in outcome.failed.items():
        print(f"  {name}: {reason}")
    print("the rest are saved; rerun the same command to retry the failed ones")
    return EXIT_SOME_FAILED


def _bisect(sweep, args) -> int:
    from mechlistops.search import SEARCH_FILE

    if args.launcher != "local":
        raise ConfigError("--search bisect runs on this machine (--launcher local)")
    choices = {
        k: getattr(args, "search_" + k) for k in SEARCH_KNOBS if hasattr(args, "search_" + k)
    }
    if "op" in choices:
        choices["op"] = parse_ops(choices["op"])[0]
    found = run_search(sweep, Path(args.out), workers=args.workers, device=args.device, **choices)
    grid = len(sweep.members())
    runs = sum(r.runs for r in found)
    print(f"bisection: {runs} runs instead of the grid's {grid} ({grid / max(runs, 1):.1f}x fewer)")
    for r in found:
        if r.failed:
            print(f"  {r.op} in {r.mixture}, seed {r.seed}: FAILED: {r.failed}")
            continue
        size = "none passes" if r.boundary_d_model is None else f"d_model {r.boundary_d_model}"
        size += "" if r.boundary_n_params is None else f" ({r.boundary_n_params:,} parameters)"
        flag = "" if r.monotone else "  NOT MONOTONE: check the sizes"
        accs = ", ".join(f"d{d} {a:.2f}" for d, a in r.accuracies.items())
        print(f"  {r.op} in {r.mixture}, seed {r.seed}: {size}; {accs}{flag}")
    print(f"saved {Path(args.out) / SEARCH_FILE}; next: mechlistops transition {args.out}")
    return EXIT_SOME_FAILED if any(r.failed for r in found) else 0


def cmd_transition(args) -> int:
    import pandas as pd

    from mechlistops.atomic import atomic_write, check_writable_dir, write_json
    from mechlistops.checkpoint import holds_run
    from mechlistops.plots import plot_pass_rates, plot_ratio_vs_data, plot_transitions
    from mechlistops.transition import (
        accuracies_at,
        crossing_text,
        is_runs_table,
        ratio_table,
        ratio_text,
        share_test_lines,
        share_tests,
        size_table,
        size_text,
        statistic_keys,
        step_test_lines,
        step_tests,
        transitions,
        varying_groups,
        write_runs_table,
    )

    if args.at_step is not None and args.at_examples is not None:
        raise ConfigError("give --at-step or --at-examples, not both")
    if args.out is None and len(args.paths) > 1:
        raise ConfigError("several sweeps or folders given: say where the results go (--out)")
    if args.out is None and holds_run(Path(args.paths[0])):  # its files stay as they are
        raise ConfigError(f"{args.paths[0]} is a run: say where the results go (--out)")
    if args.out is None and is_runs_table(args.paths[0]):
        raise ConfigError(f"{args.paths[0]} is a runs table: say where the results go (--out)")
    out = check_writable_dir(Path(args.out or args.paths[0]), "output directory")
    sweeps = [Path(p) for p in args.paths if (Path(p) / SWEEP_FILE).is_file()]
    if args.complexity and len(sweeps) < len(args.paths):
        raise ConfigError("--complexity reads the tasks of sweeps: give sweep directories")
    where = ", ".join(args.paths)
    df = accuracies_at([Path(p) for p in args.paths], args.at_step, args.at_examples)
    missing = df.attrs.get("missing", [])
    if missing:  # unfinished or failed members: the fits use the others
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        print(f"{len(missing)} runs missing (unfinished, failed or short of this point): {shown}")
    point = "" if args.at_step is None else f"_step{args.at_step}"
    if args.at_examples:
        point = f"_{args.at_examples[0]}{args.at_examples[1]}"
    if df.empty and not missing:
        raise ConfigError(
            f"{where}: no finished run (give sweeps, runs, folders of runs or runs tables)"
        )
    if df.empty:
        raise ConfigError(f"{where}: no runs have reached this point yet")
    runs = df  # every accuracy read, for the runs table
    if args.heldout:  # score only the test expressions guaranteed absent from training
        none = df[df["accuracy_heldout"].isna()]
        if len(none) == len(df):
            raise ConfigError(f"{where}: no test set has a held-out part (fit without --heldout)")
        if len(none):
            shown = ", ".join(f"{r.run} {r.op}" for r in none.head(5).itertuples())
            print(f"{len(none)} test sets have no held-out part (left out): {shown}")
        df = df.dropna(subset=["accuracy_heldout"]).assign(accuracy=lambda d: d["accuracy_heldout"])
    elif args.pool:  # accuracy on training expressions: memorisation, not the transition
        if df["accuracy_pool"].isna().all():
            raise ConfigError(f"{where}: its runs have no training pools (--train-size)")
        df = df.dropna(subset=["accuracy_pool"]).assign(accuracy=lambda d: d["accuracy_pool"])
    stem = "transitions" + point + ("_heldout" if args.heldout else "_pool" if args.pool else "")
    args.threshold = args.threshold or [0.9, 0.99]
    fits = transitions(df, thresholds=tuple(args.threshold), n_boot=args.bootstrap)
    table = write_runs_table(runs, out / f"runs{point}.csv")  # to fit again without the runs
    write_json(out / f"{stem}.json", json.loads(fits.to_json(orient="records")))
    cells = size_table(df, args.threshold)  # per size: the median and the runs passing
    sizes_csv = out / f"{stem}_sizes.csv"
    atomic_write(sizes_csv, lambda tmp: cells.to_csv(tmp, index=False))
    tests = share_tests(cells, args.threshold)  # cells that differ in one thing, size by size
    shares_csv = out / f"{stem}_shares.csv"
    atomic_write(shares_csv, lambda tmp: tests.to_csv(tmp, index=False))
    steps = step_tests(cells, args.threshold)  # each size against the next, cell by cell
    steps_csv = out / f"{stem}_steps.csv"
    atomic_write(steps_csv, lambda tmp: steps.to_csv(tmp, index=False))
    figure = plot_transitions(df, fits, out / f"{stem}.png")
    passing = plot_pass_rates(df, fits, args.threshold, out / f"{stem}_passrate.png")
    # pools of several sizes: how the ratio moves with the training data
    by_data = plot_ratio_vs_data(ratio_table(fits, df), out / f"{stem}_ratio_vs_data.png")
    if args.json:
        print(fits.to_json(orient="records", indent=2))
        return 0

    several = varying_groups(df)  # then each group is named
    keys = ["op", "mixture", *several]
    for r in fits.to_dict(orient="records"):
        on = "".join(f", {r[c]}" for c in several)
        print(f"{r['op']} in {r['mixture']}{on} ({r['n_runs']} runs):")
        sizes = cells[(cells[keys] == pd.Series({k: r[k] for k in keys})).all(axis=1)]
        sizes = sizes.set_index("n_params")  # how near each size is to a threshold
        text = ", ".join(f"{n:,.0f}: {m['median']:.3f} ({m['runs']})" for n, m in sizes.iterrows())
        print(f"  median accuracy by size (runs): {text}")
        for t in args.threshold:
            text = ", ".join(
                f"{n:,.0f}: {m[f'passed_{t}']} of {m['runs']} "
                f"({m[f'share_{t}_low']:.2f}-{m[f'share_{t}_high']:.2f})"
                for n, m in sizes.iterrows()
            )  # a share of a few runs says little: 6 of 6 is 0.61-1.00
            print(f"  runs at {t} or more by size (the share's 95% Wilson interval): {text}")
        mid = r["midpoint_note"]
        if r["midpoint"] is not None and pd.notna(r["midpoint"]):
            low, high = r["rise"]
            mid = f"{size_text(r['midpoint'], r['midpoint_ci'])} (accuracy {low:.2f} -> {high:.2f})"
        print(f"  N* sigmoid midpoint: {mid}")
        for t in args.threshold:
            text = size_text(r[f"smallest_{t}"], r[f"smallest_{t}_ci"])
            print(f"  smallest size with median accuracy >= {t}: {text}")
        for t in args.threshold:
            text = crossing_text(r, t)
            print(f"  median crosses {t} at (interpolated in log parameters): {text}")
        for t in args.threshold:
            text = crossing_text(r, t, kind="passrate")
            print(f"  half the runs pass {t} at (logistic fit over every run): {text}")
        for key in ["midpoint", *statistic_keys(args.threshold)]:
            ratio = ratio_text(r, key)
            if ratio:
                print(f"  N*(alone) / N*(here), {key}: {ratio}")
    if args.at_examples:
        seen = df[df.op == args.at_examples[0]]["examples_seen"]
        print(
            f"read at the first evaluation with >= {args.at_examples[1]:,} "
            f"{args.at_examples[0]} examples: {seen.min():,} to {seen.max():,} seen"
        )
    if args.complexity:
        key = f"smallest_{args.threshold[0]}" if args.complexity == "first" else args.complexity
        _print_complexity(sweeps, out, fits, key, stem)
    if len(tests):
        print("runs passing, between cells that differ in one thing (Fisher's exact test):")
        for line in share_test_lines(tests, several):
            print(f"  {line}")
    if len(steps):
        print("runs passing, each size against the next (Fisher's exact test):")
        for line in step_test_lines(steps, several):
            print(f"  {line}")
    pooled = df.dropna(subset=["memorisation_gap"])
    for (op, mixture, *group), g in pooled.groupby(["op", "mixture", *several], sort=False):
        gaps = g.groupby("n_params")["memorisation_gap"].median()
        cells = ", ".join(f"{n:,.0f}: {v:+.2f}" for n, v in gaps.items())
        on = "".join(f", {v}" for v in group)
        print(
            f"memorisation gap (pool - held-out) of {op} in {mixture}{on}, median by size: {cells}"
        )
    figures = ", ".join(map(str, [figure, passing, *([by_data] if by_data else [])]))
    files = ", ".join(map(str, [out / f"{stem}.json", sizes_csv, shares_csv, steps_csv, table]))
    print(f"\nsaved {files}, {figures}")
    return 0


def cmd_reproduce(args) -> int:
    from mechlistops.reproduce import REGIMES, SCALES, describe, run

    scale = SCALES["quick" if args.quick else args.scale]
    scale = dataclasses.replace(scale, regime=REGIMES[args.regime])
    print(describe(scale), flush=True)
    out = Path(args.out or f"reproduction-{scale.name}-{args.regime}")
    files, failed = run(scale, out, **_engine_options(args))
    print(files["summary"].read_text())
    print("saved " + ", ".join(str(p) for p in files.values()))
    for name, reason in failed.items():
        print(f"  FAILED {name}: {reason}")
    if failed:
        print(f"{len(failed)} runs failed (the summary leaves them out); rerun to retry them")
    return EXIT_SOME_FAILED if failed else 0


def _engine_options(args) -> dict:
    """run_sweep's keyword arguments from the options `_add_engine_options` adds."""
    only_with(args, "--launcher ray", args.launcher == "ray", "address")
    only_with(args, "--launcher slurm", args.launcher == "slurm", *SLURM_OPTIONS.values())
    slurm = {f: getattr(args, d) for f, d in SLURM_OPTIONS.items() if hasattr(args, d)}
    return {
        "progress": not args.no_progress,
        "workers": args.workers,
        "engine": args.engine,
        "max_models": args.max_models,
        "launcher": args.launcher,
        "address": getattr(args, "address", None),
        "device": args.device,
        "data_workers": args.data_workers,
        "compile": args.compile,
        "slurm": SlurmOptions(**slurm),
    }


def _add_engine_options(s) -> None:
    s.add_argument(
        "--workers",
        type=bounded(int, 0, 1024),
        default=0,
        help="local processes (default: one per core on CPU, one on a GPU)",
    )
    s.add_argument(
        "--engine",
        choices=ENGINES,
        default="auto",
        help="ensemble: runs of one shape train together, batched (default on a GPU); "
        "processes: one run per task (default on CPU)",
    )
    s.add_argument(
        "--data-workers",
        type=bounded(int, 0, 256),
        default=0,
        help="processes that make each ensemble's batches ahead (a GPU's feed; default: none, "
        "one thread)",
    )
    s.add_argument(
        "--compile",
        choices=COMPILE_MODES,
        default="off",
        help="ensembles: torch.compile each training step (reduce-overhead: with CUDA graphs on "
        "a GPU); the same training; benchmarks/gpu_suite.py measures whether it pays "
        "(default: off)",
    )
    s.add_argument(
        "--max-models",
        type=bounded(int, 0, 1_000_000),
        default=0,
        help="most runs per ensemble (default: no limit)",
    )
    s.add_argument(
        "--launcher",
        choices=LAUNCHERS,
        default="local",
        help="local: processes on this machine; ray: Ray tasks; slurm: one SLURM array job",
    )
    # options of one launcher: absent unless given (only_with refuses them under another)
    s.add_argument(
        "--address",
        default=argparse.SUPPRESS,
        help="Ray cluster HOST:PORT for --launcher ray (default: start a local Ray)",
    )
    slurm = s.add_argument_group("SLURM (--launcher slurm, through submitit)")
    d = SlurmOptions()
    for flag, kind, help_ in (
        ("--slurm-partition", str, "partition (default: the cluster's)"),
        ("--slurm-time", bounded(int, 1, 43_200), f"minutes per task (default: {d.time_min})"),
        ("--slurm-gpus", bounded(int, 0, 64), f"GPUs per task (default: {d.gpus})"),
        ("--slurm-cpus", bounded(int, 1, 1024), f"CPUs per task (default: {d.cpus})"),
        ("--slurm-mem-gb", bounded(float, 0.001, 65536), "memory per task (default: SLURM's)"),
        (
            "--slurm-parallelism",
            bounded(int, 1, 100_000),
            f"array tasks running at once (default: {d.parallelism})",
        ),
    ):
        slurm.add_argument(flag, type=kind, default=argparse.SUPPRESS, help=help_)
    slurm.add_argument(
        "--slurm-executor",
        choices=SLURM_EXECUTORS,
        default=argparse.SUPPRESS,
        help="local: run the array on this machine with submitit's local executor (a test; "
        f"default: {d.executor})",
    )
    s.add_argument("--no-progress", action="store_true")
    add_device_option(s, threads=False)


def _print_complexity(sweeps: list[Path], out: Path, fits, key: str, stem: str) -> None:
    """N* against the complexity proxy over the sweeps' tasks, and the power-law fit."""
    from mechlistops.atomic import write_json
    from mechlistops.complexity import fit_power_law, transition_points

    points = transition_points(sweeps, fits, key)
    print(f"\nN* ({key}) against the complexity proxy (gzip bytes of a minimal solver):")
    for r in points.itertuples():
        n_star = "none" if r.n_star != r.n_star else f"{r.n_star:,.0f}"
        print(f"  {r.op} in {r.task}: proxy {r.proxy}, N* {n_star}")
    usable = points.dropna(subset=["n_star"])
    record = {"key": key, "points": points.to_dict(orient="records"), "fit": None}
    try:
        law = fit_power_law(usable["proxy"], usable["n_star"])
        record["fit"] = {"a": law.a, "b": law.b, "b_ci": law.b_ci, "n": law.n}
        print(f"  fit: {law.describe()}")
        if law.n < 5:
            print(f"  ({law.n} points carry this fit: read the exponent as a rough indication)")
    except ConfigError as exc:
        print(f"  no fit: {exc}")
    write_json(out / f"{stem}_complexity.json", record)


def _step(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive step, got {text!r}")
    return int(text)


def _op_count(text: str) -> tuple[str, int]:
    op, _, n = text.partition(":")
    try:
        (op,) = parse_ops(op)
    except (MechlistopsError, ValueError):
        raise argparse.ArgumentTypeError(f"expected OP:N with one operator, got {text!r}") from None
    if not n.isdigit() or int(n) < 1:
        raise argparse.ArgumentTypeError(f"expected OP:N with N a positive count, got {text!r}")
    return op, int(n)


# A sweep varies these itself (--mixture, --d-model, --seeds); they are not options of it.
_VARIED = {"data": ("ops", "seed"), "model": ("d_model",), "train": ("seed",)}


def add_parsers(sub) -> None:
    s = sub.add_parser("sweep", help="train a grid of mixtures x sizes x seeds")
    add_run_options(s, exclude=_VARIED)
    s.add_argument(
        "--mixture",
        action="append",
        help="operators of one mixture, e.g. SUM,MAX,MED (repeat for several; required "
        "unless --branch-from)",
    )
    s.add_argument(
        "--d-model",
        dest="d_model_list",
        type=numbers(int),
        help="model widths, e.g. 8,12,16,24,32 (required unless --branch-from)",
    )
    s.add_argument(
        "--seeds",
        type=checked(parse_seeds),
        help="the data and init seeds: N for 0..N-1 (default: 3), or seeds and ranges such as "
        "5-17 or 0,3,8-9 (more seeds for a sweep trained before: give its grid with them, "
        "or a new --out)",
    )
    s.add_argument("--out", required=True, help="sweep directory")
    s.add_argument(
        "--branch-from",
        metavar="SWEEP@STEP",
        help="continue every member of a sweep trained with --keep-states from its state "
        "kept at STEP, with the options given here overriding the sweep's (a longer budget, "
        "another decay; docs/training.md, Branching); --mixture, --d-model and --seeds, if "
        "given, pick part of its grid",
    )
    s.add_argument(
        "--search",
        choices=("grid", "bisect"),
        default="grid",
        help="grid: train every size; bisect: per mixture and seed, find the smallest size "
        "that passes --search-threshold by bisection (about log2(sizes) runs)",
    )
    # --search bisect's options: absent unless given, their defaults run_search's own
    d = {k: v.default for k, v in inspect.signature(run_search).parameters.items()}
    s.add_argument(
        "--search-threshold",
        type=bounded(float, 0.001, 1.0),
        default=argparse.SUPPRESS,
        help=f"accuracy that passes (default: {d['threshold']})",
    )
    s.add_argument(
        "--search-op",
        default=argparse.SUPPRESS,
        help="operator whose accuracy decides (default: the mixture's first)",
    )
    s.add_argument(
        "--search-on",
        choices=("heldout", "all"),
        default=argparse.SUPPRESS,
        help=f"accuracy on the held-out part of the test set, or on all of it (default: {d['on']})",
    )
    _add_engine_options(s)
    s.set_defaults(func=cmd_sweep)
    t = sub.add_parser("transition", help="learning transitions of sweeps, runs or folders of runs")
    t.add_argument(
        "paths",
        nargs="+",
        help="sweep directories, runs, folders of runs trained one by one (read at any "
        "depth), or runs tables (.csv: the runs.csv this command writes); runs on different "
        "training data or budgets are never pooled",
    )
    t.add_argument(
        "--out", help="where the table and figure go (default: the one sweep or folder given)"
    )
    t.add_argument(
        "--threshold",
        type=bounded(float, 0.001, 1.0),
        action="append",
        default=None,
        help="accuracy counted as learned (default 0.9 and 0.99)",
    )
    t.add_argument(
        "--bootstrap", type=bounded(int, 1, 100_000), default=500, help="bootstrap resamples"
    )
    which = t.add_mutually_exclusive_group()
    which.add_argument(
        "--heldout",
        action="store_true",
        help="use accuracy on the held-out part of each test set (the expressions with at "
        "least the runs' holdout_min_leaves leaves, never in training)",
    )
    which.add_argument(
        "--pool",
        action="store_true",
        help="use accuracy on the operators' training pools (runs with --train-size)",
    )
    t.add_argument(
        "--complexity",
        nargs="?",
        const="first",
        metavar="KEY",
        help="also fit log N* against log complexity proxy over the sweep's tasks; KEY: which "
        "N* (midpoint, or smallest_T for a --threshold T; default: the first threshold's)",
    )
    t.add_argument(
        "--at-step",
        type=_step,
        help="read accuracies at this evaluation step instead of at the end",
    )
    t.add_argument(
        "--at-examples",
        type=_op_count,
        metavar="OP:N",
        help="read accuracies at the first evaluation after N training examples of OP",
    )
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=cmd_transition, threshold=None)
    r = sub.add_parser(
        "reproduce",
        help="the paper's learning-transition claims: sweeps, transitions and a summary",
    )
    r.add_argument("--scale", choices=("quick", "full"), default="full")
    r.add_argument("--quick", action="store_true", help="same as --scale quick (~30 min, 2 CPUs)")
    r.add_argument(
        "--regime",
        choices=("paper", "sampled", "stream"),
        default="paper",
        help="paper: finite pools of 3,000, exactly 3 operands, a looped single-head block (the "
        "factor screen's most paper-like setting, docs/findings.md); sampled: stage 9's "
        "recipe, where the paper's 2-7x showed (sampled pools of 12,500, exactly 3 operands, "
        "the looped single-head block, 18,000 steps then 10,000 of decay to 0, whatever the "
        "scale: hours on a CPU); stream: 2-3 operands, a fresh sample stream, 2 blocks of 4 "
        "heads (our earlier studies' setting)",
    )
    r.add_argument("--out", default=None, help="directory (default: reproduction-SCALE-REGIME)")
    _add_engine_options(r)
    r.set_defaults(func=cmd_reproduce)
