"""`mechlistops train | eval | export`: train a run (or resume one), score a saved run, export
it for TransformerLens 4.x."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from mechlistops.cli.options import (
    add_config_options,
    bounded,
    config_from_args,
    given,
    given_flags,
    only_with,
)
from mechlistops.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from mechlistops.errors import ConfigError


def add_run_options(p, exclude: dict[str, tuple[str, ...]] | None = None) -> None:
    """Every knob of a run, as options (sections data, model, training)."""
    exclude = exclude or {}
    for section, kind in (("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig)):
        add_config_options(p, section, kind, exclude.get(section, ()))


def run_config_from_args(args, base: RunConfig | None = None) -> RunConfig:
    """The RunConfig the options describe. The data seed follows --seed unless given."""
    follow = base is None  # a new run's data seed follows --seed; a given base's stays
    base = base or RunConfig()
    if {"steps", "budget_examples"} <= given(args, "train").keys():
        raise ConfigError("--steps and --budget-examples are alternatives: give one")
    train = config_from_args(args, "train", base.train)
    data = base.data
    if "seed" not in given(args, "data") and (follow or "seed" in given(args, "train")):
        data = dataclasses.replace(data, seed=train.seed)
    data = config_from_args(args, "data", data)
    return RunConfig(data, config_from_args(args, "model", base.model), train)


def add_device_option(p, threads: bool = True) -> None:
    p.add_argument(
        "--device",
        default="auto",
        help="where to compute: auto (cuda when present, else cpu), cpu, cuda, cuda:N",
    )
    if threads:
        p.add_argument(
            "--threads",
            default="auto",
            help="CPU threads for torch: auto (the cores free now, at least 1) or a count",
        )


def cmd_train(args) -> int:
    from mechlistops.checkpoint import load_run_config, parse_run_spec
    from mechlistops.evaluate import format_table
    from mechlistops.plots import plot_training
    from mechlistops.train import branch, default_run_name, train

    if args.resume and args.branch_from:
        raise ConfigError("--resume and --branch-from are alternatives: give one")
    if args.resume:
        extra = given_flags(args) + ["--out"] * bool(args.out)
        if extra:
            raise ConfigError("--resume takes every setting from the run; drop " + ", ".join(extra))
        run_dir = Path(args.resume)
        cfg = load_run_config(run_dir)
    elif args.branch_from:
        parent, step = parse_run_spec(args.branch_from)
        if step is None:
            raise ConfigError(f"--branch-from {args.branch_from}: expected RUN@STEP")
        cfg = run_config_from_args(args, base=load_run_config(parent))
        name = f"{parent.name}-at{step}-to{cfg.train.total_steps}"
        run_dir = Path(args.out) if args.out else parent.parent / name
        branch(parent, step, cfg, run_dir)
    else:
        cfg = run_config_from_args(args)
        if cfg.train.init_from and not Path(cfg.train.init_from).is_dir():
            raise ConfigError(f"--init-from {cfg.train.init_from}: no such run directory")
        run_dir = Path(args.out) if args.out else Path("checkpoints") / default_run_name(cfg)
    if getattr(args, "thread_choice", None) is not None:
        from mechlistops.model import resolve_device

        where = resolve_device(args.device)
        print(
            f"training on {where}" + (f" with {args.thread_choice}" if where.type == "cpu" else "")
        )
    try:
        result = train(
            cfg,
            run_dir,
            resume=bool(args.resume or args.branch_from),
            progress=not args.no_progress,
            device=args.device,
        )
    except KeyboardInterrupt:
        print(
            f"mechlistops: interrupted; continue with: mechlistops train --resume {run_dir}",
            file=sys.stderr,
        )
        return 130
    figure = plot_training(run_dir)
    report = None
    diverged = result.stopped and result.stopped["reason"].startswith("diverged")
    if not args.no_report and not diverged:  # the run's analyses, on one offline page
        from mechlistops.report import build_report

        report = build_report(
            [str(run_dir)], run_dir / "report.html", device=result.model.W_E.device
        )
    if args.json:
        print(
            json.dumps(
                {
                    "run_dir": str(run_dir),
                    "n_params": result.n_params,
                    "seconds": round(result.seconds, 2),
                    "results": {k: v.to_dict() for k, v in result.results.items()},
                },
                indent=2,
            )
        )
        return 0
    print(
        f"\n{result.n_params['n_params']:,} parameters "
        f"({result.n_params['n_params_no_embed']:,} without embeddings), "
        f"{result.stopped['step'] if result.stopped else cfg.train.total_steps} steps in "
        f"{result.seconds:.0f} s"
    )
    print(format_table(result.results))
    if result.stopped:
        print(f"\nstopped at step {result.stopped['step']}: {result.stopped['reason']}")
    print(f"\nrun saved to {run_dir} (training curves: {figure})")
    if report:
        print(f"analyses (ablation, attribution, probes, geometry, attention views): {report}")
    return 0


def cmd_eval(args) -> int:
    from mechlistops.checkpoint import load_run
    from mechlistops.evaluate import evaluate_sets, format_table
    from mechlistops.model import resolve_device
    from mechlistops.pools import evaluation_data

    only_with(args, "--expr or --file", bool(args.expr or args.file), "skip_long")
    only_with(args, "--file", bool(args.file), "show")
    run = load_run(args.run, device=resolve_device(args.device))
    if args.expr or args.file:
        return _eval_expressions(args, run)
    cfg = run.config
    sets, pools = evaluation_data(cfg.data, extra_ops=cfg.train.pretrain_ops)
    results = evaluate_sets(run.model, sets, cfg.data, pools=pools)
    if args.json:
        print(json.dumps({k: v.to_dict() for k, v in results.items()}, indent=2))
    else:
        print(format_table(results))
    return 0


SHOW_WRONG = 5  # eval --file lists the first wrong answers unless --show says how many


def _eval_expressions(args, run) -> int:
    """`eval RUN --expr EXPR` / `--file FILE`: the model's answers to expressions a user
    brings, against the run's own task (its modulus or group, median rule, relabelling)."""
    import numpy as np

    from mechlistops.config import OPERATORS
    from mechlistops.data import examples_from_trees
    from mechlistops.errors import ParseError
    from mechlistops.evaluate import answers_with_confidence
    from mechlistops.files import FileLine, read_expressions
    from mechlistops.listops import Vocab, parse, to_text

    data = run.config.data
    vocab = Vocab.of(data)
    task = vocab.describe() + (f", {data.median} median" if data.family == "listops" else "")
    if args.file:
        path = Path(args.file)
        group_k = data.group_k if data.family == "perm" else None
        lines = read_expressions(path, data.modulus, data.median, data.seed, group_k)
        where = [f"{path}:{x.line_no}" for x in lines]
        wrong = next((x for x in lines if x.label is not None and x.label != x.value), None)
        if wrong is not None:
            raise ParseError(
                f"{path}:{wrong.line_no}: labelled {vocab.tokens[wrong.label]}, but this run's "
                f"task ({task}) makes it {vocab.tokens[wrong.value]}"
            )
    else:
        lines, where = [], []
        for i, text in enumerate(args.expr, start=1):
            try:
                tree = parse(text, data.modulus, vocab.group)
            except ParseError as exc:
                raise ParseError(f"expression {i}: {exc}") from None
            lines.append(FileLine(i, tree, -1, None))
            where.append(f"expression {i}")
    n_ctx = run.model.cfg.n_ctx
    width = n_ctx if data.chain_of_thought else 0  # room for the model's own chain

    def laid_out(lines):
        return examples_from_trees([x.tree for x in lines], data, width)

    ex = laid_out(lines)
    fits = ex.lengths <= n_ctx
    if not fits.all():
        first = int(np.flatnonzero(~fits)[0])
        if not getattr(args, "skip_long", False):
            raise ConfigError(
                f"{where[first]}: {ex.lengths[first]} tokens with its answer, but this run's "
                f"model reads at most {n_ctx} (--skip-long leaves such expressions out)"
            )
        keep = np.flatnonzero(fits)
        if not len(keep):
            raise ConfigError(f"no expression fits this run's model ({n_ctx} tokens at most)")
        lines, where = [lines[i] for i in keep], [where[i] for i in keep]
        ex = laid_out(lines)  # no wider than the model's context
    answers, probs = answers_with_confidence(run.model, ex, data)
    name = vocab.tokens.__getitem__
    trained = set(data.ops) | set(run.config.train.pretrain_ops)

    def said(i: int) -> str:  # the model's answer; -1: a chain that never ended
        return "no answer" if answers[i] < 0 else name(answers[i])

    rows = [
        {
            "where": where[i],
            "expression": to_text(x.tree, vocab.group),
            "operator": x.tree.op,
            "depth": x.tree.depth,
            "answer": name(ex.answers[i]),
            "model": said(i),
            "probability": None if np.isnan(probs[i]) else round(float(probs[i]), 4),
            "right": bool(answers[i] == ex.answers[i]),
            "not_trained_on": sorted(x.tree.operators - trained),
        }
        for i, x in enumerate(lines)
    ]
    skipped, show = int((~fits).sum()), getattr(args, "show", SHOW_WRONG)
    if args.expr:
        if args.json:
            print(json.dumps(rows, indent=2))
            return 0
        for r in rows:
            p = "" if r["probability"] is None else f" (p {r['probability']:.2f})"
            mark = "right" if r["right"] else "wrong"
            untrained = r["not_trained_on"]
            note = f"  ({', '.join(untrained)}: not trained on)" if untrained else ""
            print(f"{r['expression']} = {r['answer']}   model: {r['model']}{p}, {mark}{note}")
        if skipped:
            print(f"({skipped} expression(s) longer than the model's {n_ctx} tokens left out)")
        return 0
    right = np.array([r["right"] for r in rows])

    def accuracy_by(key: str, order) -> dict:
        hits = {k: [r["right"] for r in rows if r[key] == k] for k in order}
        return {k: {"n": len(h), "accuracy": float(np.mean(h))} for k, h in hits.items() if h}

    by_op = accuracy_by("operator", OPERATORS)
    by_depth = accuracy_by("depth", sorted({r["depth"] for r in rows}))
    misses = [r for r in rows if not r["right"]]
    if args.json:
        summary = {
            "file": str(path), "task": task, "n": len(rows), "skipped_long": skipped,
            "accuracy": float(right.mean()), "trained_on": sorted(trained),
            "by_operator": by_op, "by_depth": by_depth, "wrong": misses[:show],
        }  # fmt: skip
        print(json.dumps(summary, indent=2))
        return 0
    labelled = "labels agree with" if lines[0].label is not None else "answers by"
    print(f"{path}: {len(rows):,} expressions ({labelled} this run's task: {task})")
    if skipped:
        print(f"  {skipped:,} longer than the model's {n_ctx} tokens left out (--skip-long)")
    print(f"{'operator':<10} {'n':>7}  accuracy")
    for op, r in by_op.items():
        note = "" if op in trained else "  (not trained on)"
        print(f"{op:<10} {r['n']:>7,}  {r['accuracy']:>8.3f}{note}")
    print(f"{'all':<10} {len(rows):>7,}  {right.mean():>8.3f}")
    print(f"{'depth':<10} {'n':>7}  accuracy")
    for depth, r in by_depth.items():
        note = "" if depth <= data.max_depth else "  (deeper than training)"
        print(f"{depth:<10} {r['n']:>7,}  {r['accuracy']:>8.3f}{note}")
    if misses and show:
        print(f"wrong (first {min(show, len(misses))} of {len(misses):,}):")
        for r in misses[:show]:
            print(f"  {r['where']}: {r['expression']}  model {r['model']}, answer {r['answer']}")
    return 0


def cmd_export(args) -> int:
    from mechlistops.export import export_tl4

    out = export_tl4(args.run, args.out)
    print(f"exported {args.run} to {out} (TransformerLens 4.x: mechlistops.tl.boot_tl4)")
    return 0


def add_parsers(sub) -> None:
    p = sub.add_parser("train", help="train a HookedTransformer (defaults: the embedded demo)")
    add_run_options(p)
    add_device_option(p)
    p.add_argument("--out", help="run directory (default checkpoints/<generated name>)")
    p.add_argument("--resume", metavar="RUN", help="continue an interrupted run")
    p.add_argument(
        "--branch-from",
        metavar="RUN@STEP",
        help="a new run (--out) that continues RUN from its state kept at STEP (--keep-states) "
        "with the options given here (such as --steps, --decay-steps), exactly as if trained so "
        "from the start",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-report", action="store_true", help="skip the analyses report at the end")
    p.add_argument("--json", action="store_true", help="print the final results as JSON")
    p.set_defaults(func=cmd_train)

    e = sub.add_parser(
        "eval",
        help="per-operator accuracy of a saved run, or its answers to expressions you bring",
    )
    e.add_argument("run", help="run directory, or RUN@STEP")
    bring = e.add_mutually_exclusive_group()
    bring.add_argument(
        "--expr",
        action="append",
        metavar="EXPR",
        help="an expression to answer, e.g. '[SUM 3 [MAX 4 9 ] 2 ]' (repeat for several)",
    )
    bring.add_argument(
        "--file",
        help="score the model on a file of expressions (the formats `data evaluate` reads; "
        "its labels must agree with the run's task)",
    )
    e.add_argument(  # with --expr or --file: absent unless given (only_with)
        "--skip-long",
        action="store_true",
        default=argparse.SUPPRESS,
        help="leave out expressions longer than the model's context instead of refusing",
    )
    e.add_argument(
        "--show",
        type=bounded(int, 0, 1_000_000),
        default=argparse.SUPPRESS,
        help=f"wrong answers to list (--file; default: {SHOW_WRONG})",
    )
    e.add_argument("--json", action="store_true")
    add_device_option(e)
    e.set_defaults(func=cmd_eval)

    x = sub.add_parser("export", help="a run as a folder TransformerLens 4.x opens (boot_tl4)")
    x.add_argument("run", help="run directory, or RUN@STEP")
    x.add_argument("--out", required=True, help="a new (or empty) folder")
    x.set_defaults(func=cmd_export)
