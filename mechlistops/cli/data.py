"""`mechlistops data sample | evaluate`: write ListOps files, check the labels of any."""

from __future__ import annotations

import sys
from pathlib import Path

from mechlistops.cli.options import Parser, add_config_options, bounded, config_from_args
from mechlistops.config import MAX_SEED, MEDIAN_RULES, MODULI, DataConfig

MAX_SAMPLE = 10_000_000  # lines per sample file

# The sampler's knobs; the split and the training regime do not apply to a sample file.
_NOT_SAMPLED = ("chain_of_thought", "seed", "test_size", "holdout_min_leaves", "train_size")


def cmd_data_sample(args) -> int:
    import numpy as np

    from mechlistops.atomic import check_writable_file, write_text
    from mechlistops.data import sample_examples
    from mechlistops.listops import Vocab

    check_writable_file(args.out, "sample file")
    cfg = config_from_args(args, "data", DataConfig(seed=args.seed))
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


def add_parsers(sub) -> None:
    p = sub.add_parser("data", help="sample or check ListOps files")
    dsub = p.add_subparsers(dest="data_command", required=True, parser_class=Parser)
    s = dsub.add_parser("sample", help="write expression<TAB>answer lines")
    add_config_options(s, "data", DataConfig, exclude=_NOT_SAMPLED)
    s.add_argument("--n", type=bounded(int, 1, MAX_SAMPLE), required=True, help="examples")
    s.add_argument("--seed", type=bounded(int, 0, MAX_SEED), default=0)
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_data_sample)
    e = dsub.add_parser("evaluate", help="check the labels of a ListOps file")
    e.add_argument("file")
    e.add_argument("--modulus", type=bounded(int, *MODULI), default=10)
    e.add_argument("--median", choices=MEDIAN_RULES, default="listops")
    e.add_argument(
        "--seed",
        type=bounded(int, 0, MAX_SEED),
        default=0,
        help="data seed behind SSUM's relabelling",
    )
    e.add_argument(
        "--show", type=bounded(int, 0, 1_000_000), default=10, help="disagreements to print"
    )
    e.set_defaults(func=cmd_data_evaluate)
