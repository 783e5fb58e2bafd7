"""The `mechlistops` command line: parse arguments, build configs, call the library, print.

Every failure a user can cause (bad expressions, unknown operators, sizes that do not divide,
missing or corrupted checkpoints) ends as one line on stderr and a non-zero exit, never a
traceback. `main(argv)` returns the exit code, so tests call it directly.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from mechlistops import __version__
from mechlistops.config import (
    ACT_FNS,
    MEDIAN_RULES,
    SCHEDULES,
    TRANSFER,
    TREE_KINDS,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    parse_ops,
    replace,
)
from mechlistops.errors import ConfigError, MechlistopsError

EXIT_ERROR = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not usage + message
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(EXIT_ERROR)


def numbers(cast):
    """argparse type for comma-separated numbers: numbers(float)("1,2") == (1.0, 2.0)."""

    def parse(text: str) -> tuple:
        try:
            return tuple(cast(x) for x in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {cast.__name__} values, got {text!r}"
            ) from None

    return parse


def _add_data_args(p: argparse.ArgumentParser, ops_default: str | None = None) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--ops", default=ops_default, help="operators, e.g. SUM,MAX,MED")
    g.add_argument(
        "--weights", type=numbers(float), help="mixture weights, one per op (default equal)"
    )
    g.add_argument("--tree", choices=TREE_KINDS, help="mixed: each node draws its op; single")
    g.add_argument("--modulus", type=int, help="values are residues mod n (2..36, default 10)")
    g.add_argument("--max-depth", type=int, help="nesting depth (default 3)")
    g.add_argument("--max-args", type=int, help="most operands per node (default 3)")
    g.add_argument("--min-args", type=int, help="fewest operands per node (default 2)")
    g.add_argument("--branch-prob", type=float, help="chance an operand is a subtree (0.3)")
    g.add_argument("--median", choices=MEDIAN_RULES, help="even-count median rule")


def _data_config(args, base: DataConfig | None = None) -> DataConfig:
    base = base or DataConfig()
    return replace(
        base,
        ops=parse_ops(args.ops) if args.ops else None,
        weights=args.weights,
        tree=args.tree,
        modulus=args.modulus,
        max_depth=args.max_depth,
        max_args=args.max_args,
        min_args=args.min_args,
        branch_prob=args.branch_prob,
        median=args.median,
    )


# ----------------------------------------------------------------------------- train
def _add_train_options(p: argparse.ArgumentParser, sweep: bool = False) -> None:
    """Options shared by train and sweep (a sweep sets d_model and seed per member)."""
    g = p.add_argument_group("data (more)")
    g.add_argument("--cot", action="store_true", default=None, help="chain-of-thought targets")
    if not sweep:
        g.add_argument("--data-seed", type=int, help="test sets and data seed (default: --seed)")
    g.add_argument("--test-size", type=int, help="examples per test set (default 1000)")
    g.add_argument(
        "--train-size",
        type=int,
        help="finite training pool: N distinct expressions per operator, cycled in epochs "
        "(needs --tree single; default 0 = a fresh sample stream)",
    )
    g.add_argument(
        "--holdout-min-leaves",
        type=int,
        help="test expressions with at least this many leaves never train (default 4)",
    )
    g = p.add_argument_group("model")
    g.add_argument("--n-layers", type=int)
    if not sweep:
        g.add_argument("--d-model", type=int)
    g.add_argument("--n-heads", type=int)
    g.add_argument("--d-head", type=int, help="default d_model / n_heads")
    g.add_argument("--d-mlp", type=int, help="default 4 * d_model")
    g.add_argument("--act-fn", choices=ACT_FNS)
    g.add_argument("--normalization", choices=["LN", "RMS", "none"])
    g.add_argument(
        "--looped",
        action="store_true",
        default=None,
        help="share one block's parameters across all layers",
    )
    g = p.add_argument_group("training")
    g.add_argument("--steps", type=int)
    g.add_argument("--batch-size", type=int)
    g.add_argument(
        "--length-buckets",
        type=int,
        help="batches pooled and sorted by length (default 16; 0 = off)",
    )
    g.add_argument("--lr", type=float)
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--warmup-steps", type=int)
    g.add_argument("--schedule", choices=SCHEDULES)
    g.add_argument("--min-lr-frac", type=float)
    g.add_argument("--grad-clip", type=float, help="0 disables clipping")
    g.add_argument("--loss-on", choices=["answer", "sequence"])
    if not sweep:
        g.add_argument("--seed", type=int, help="initialisation seed (and data seed by default)")
    g.add_argument("--eval-interval", type=int)
    g.add_argument("--eval-size", type=int, help="examples per test set at periodic evals")
    g.add_argument("--save-interval", type=int)
    g.add_argument("--device", help="auto (cuda when present, else cpu), cpu, cuda")
    g.add_argument("--pretrain-ops", help="curriculum: pretrain on these ops first")
    g.add_argument("--pretrain-steps", type=int)
    g.add_argument("--init-from", help="start from another run's final weights")
    g.add_argument("--transfer", choices=TRANSFER, help="which weights --init-from copies")


def _add_train_parser(sub) -> None:
    p = sub.add_parser("train", help="train a HookedTransformer (defaults: the embedded demo)")
    _add_data_args(p)
    _add_train_options(p)
    p.add_argument("--out", help="run directory (default checkpoints/<generated name>)")
    p.add_argument("--resume", metavar="RUN", help="continue an interrupted run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-report", action="store_true", help="skip the analyses report at the end")
    p.add_argument("--json", action="store_true", help="print the final results as JSON")
    p.set_defaults(func=cmd_train)


_TRAIN_ONLY = ("out", "resume", "no_progress", "no_report", "json", "func", "command")


def _train_config(args) -> RunConfig:
    seed = args.seed if args.seed is not None else 0
    data = _data_config(args)
    data = replace(
        data,
        chain_of_thought=args.cot,
        seed=args.data_seed if args.data_seed is not None else seed,
        test_size=args.test_size,
        holdout_min_leaves=args.holdout_min_leaves,
        train_size=args.train_size,
    )
    model = replace(
        ModelConfig(),
        n_layers=args.n_layers,
        d_model=args.d_model,
        n_heads=args.n_heads,
        d_head=args.d_head,
        d_mlp=args.d_mlp,
        act_fn=args.act_fn,
        looped=args.looped,
    )
    if args.normalization is not None:
        model = replace(
            model, normalization=None if args.normalization == "none" else args.normalization
        )
    train = replace(
        TrainConfig(),
        steps=args.steps,
        batch_size=args.batch_size,
        length_buckets=args.length_buckets,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_steps=args.warmup_steps,
        schedule=args.schedule,
        min_lr_frac=args.min_lr_frac,
        loss_on=args.loss_on,
        seed=seed,
        eval_interval=args.eval_interval,
        eval_size=args.eval_size,
        save_interval=args.save_interval,
        device=args.device,
        pretrain_ops=parse_ops(args.pretrain_ops) if args.pretrain_ops else None,
        pretrain_steps=args.pretrain_steps,
        init_from=args.init_from,
        transfer=args.transfer,
    )
    if args.grad_clip is not None:
        train = replace(train, grad_clip=args.grad_clip or 0.0)
    return RunConfig(data, model, train)


def cmd_train(args) -> int:
    from mechlistops.checkpoint import load_run_config
    from mechlistops.evaluate import format_table
    from mechlistops.plots import plot_training
    from mechlistops.train import default_run_name, train

    if args.resume:
        given = [
            k
            for k, v in vars(args).items()
            if v is not None and v is not False and k not in _TRAIN_ONLY
        ]
        if given or args.out:
            raise ConfigError(
                "--resume takes every setting from the run; drop "
                + ", ".join("--" + k.replace("_", "-") for k in given + ["out"] * bool(args.out))
            )
        run_dir = Path(args.resume)
        cfg = load_run_config(run_dir)
    else:
        cfg = _train_config(args)
        if cfg.train.init_from and not Path(cfg.train.init_from).is_dir():
            raise ConfigError(f"--init-from {cfg.train.init_from}: no such run directory")
        run_dir = Path(args.out) if args.out else Path("checkpoints") / default_run_name(cfg)
    result = train(cfg, run_dir, resume=bool(args.resume), progress=not args.no_progress)
    figure = plot_training(run_dir)
    report = None
    if not args.no_report:  # the run's analyses, on one offline page
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
        f"{cfg.train.total_steps} steps in {result.seconds:.0f} s"
    )
    print(format_table(result.results))
    print(f"\nrun saved to {run_dir} (training curves: {figure})")
    if report:
        print(f"analyses (ablation, attribution, probes, geometry, attention views): {report}")
    return 0


# ----------------------------------------------------------------------------- eval
def cmd_eval(args) -> int:
    from mechlistops.checkpoint import load_run
    from mechlistops.evaluate import evaluate_sets, format_table
    from mechlistops.model import resolve_device
    from mechlistops.pools import evaluation_data

    run = load_run(args.run, device=resolve_device(args.device))
    cfg = run.config
    sets, pools = evaluation_data(cfg.data, extra_ops=cfg.train.pretrain_ops)
    results = evaluate_sets(run.model, sets, cfg.data, pools=pools)
    if args.json:
        print(json.dumps({k: v.to_dict() for k, v in results.items()}, indent=2))
    else:
        print(format_table(results))
    return 0


# ----------------------------------------------------------------------------- data
def cmd_data_sample(args) -> int:
    import numpy as np

    from mechlistops.checkpoint import write_text
    from mechlistops.data import sample_examples
    from mechlistops.listops import Vocab

    if args.n < 1:
        raise ConfigError(f"--n must be positive, got {args.n}")
    cfg = replace(_data_config(args), seed=args.seed)
    ex = sample_examples(cfg, args.n, np.random.default_rng([args.seed, 7]))
    lines = [f"{e}\t{a}\n" for e, a in zip(ex.expressions(Vocab(cfg.modulus)), ex.answers)]
    write_text(Path(args.out), "".join(lines))
    print(f"wrote {args.n} examples to {args.out}")
    return 0


def cmd_data_evaluate(args) -> int:
    from mechlistops.files import check_file

    report = check_file(Path(args.file), args.modulus, args.median, args.seed)
    if report.unlabelled:
        sys.stdout.write("".join(f"{e}\t{v}\n" for e, v in report.unlabelled))
        return 0
    print(
        f"{report.n} labelled examples: {report.n - len(report.disagreements)} agree, "
        f"{len(report.disagreements)} disagree"
    )
    for line_no, expr, label, value in report.disagreements[: args.show]:
        print(f"  line {line_no}: {expr}  labelled {label}, evaluates to {value}")
    return 1 if report.disagreements else 0


def _add_data_parser(sub) -> None:
    p = sub.add_parser("data", help="sample or check ListOps files")
    dsub = p.add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    s = dsub.add_parser("sample", help="write expression<TAB>answer lines")
    _add_data_args(s, ops_default="SUM,MAX,MED")
    s.add_argument("--n", type=int, required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_data_sample)
    e = dsub.add_parser("evaluate", help="check the labels of a ListOps file")
    e.add_argument("file")
    e.add_argument("--modulus", type=int, default=10)
    e.add_argument("--median", choices=MEDIAN_RULES, default="listops")
    e.add_argument("--seed", type=int, default=0, help="data seed behind SSUM's relabelling")
    e.add_argument("--show", type=int, default=10, help="disagreements to print")
    e.set_defaults(func=cmd_data_evaluate)


# ----------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="mechlistops",
        description="Train tiny TransformerLens models on ListOps mixtures and look inside them.",
    )
    p.add_argument("--version", action="version", version=f"mechlistops {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_train_parser(sub)
    e = sub.add_parser("eval", help="per-operator accuracy of a saved run")
    e.add_argument("run", help="run directory, or RUN@STEP")
    e.add_argument("--json", action="store_true")
    e.add_argument("--device", default="auto")
    e.set_defaults(func=cmd_eval)
    _add_data_parser(sub)
    from mechlistops import cli_analysis, cli_sweep  # they reuse this module's option helpers

    cli_analysis.add_parsers(sub)
    cli_sweep.add_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return int(exc.code or 0)
    try:
        return args.func(args)
    except MechlistopsError as exc:
        print(f"mechlistops: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("mechlistops: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head`: not an error of ours
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
