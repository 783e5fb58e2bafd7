"""`mechlistops data sample | evaluate`: write ListOps files, check the labels of any;
`mechlistops complexity`: the task-complexity proxy of operators and mixtures."""

from __future__ import annotations

import sys
from pathlib import Path

from mechlistops.cli.options import Parser, add_config_options, bounded, config_from_args
from mechlistops.config import GROUP_K, MAX_SEED, MEDIAN_RULES, MODULI, DataConfig

MAX_SAMPLE = 10_000_000  # lines per sample file

# The sampler's knobs; the split and the training regime do not apply to a sample file.
_NOT_SAMPLED = (
    "chain_of_thought",
    "seed",
    "test_size",
    "holdout_min_leaves",
    "train_size",
    "pool_draw",
)
# The proxy depends on the family, its size, the median rule and the seed's relabellings only.
_TASK_EXCLUDED = ("ops", "weights", "tree", "min_args", "max_args", "max_depth", "branch_prob")
_TASK_EXCLUDED += _NOT_SAMPLED


def cmd_data_sample(args) -> int:
    import numpy as np

    from mechlistops.atomic import check_writable_file, write_text
    from mechlistops.data import sample_examples
    from mechlistops.listops import Vocab

    check_writable_file(args.out, "sample file")
    cfg = config_from_args(args, "data", DataConfig(seed=args.seed))
    ex = sample_examples(cfg, args.n, np.random.default_rng([args.seed, 7]))
    vocab = Vocab.of(cfg)
    answers = [vocab.tokens[a] for a in ex.answers]
    lines = [f"{e}\t{a}\n" for e, a in zip(ex.expressions(vocab), answers)]
    write_text(Path(args.out), "".join(lines))
    print(f"wrote {args.n} examples to {args.out}")
    return 0


def cmd_data_evaluate(args) -> int:
    from mechlistops.files import check_file

    report = check_file(Path(args.file), args.modulus, args.median, args.seed, args.group_k)
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


def cmd_complexity(args) -> int:
    import dataclasses
    import json

    from mechlistops.cli.options import given
    from mechlistops.complexity import proxy, solver
    from mechlistops.config import DEFAULT_OPS, FAMILIES, family_of, parse_ops

    chosen = given(args, "data")
    base = DataConfig(seed=args.seed)
    if args.mixture:
        tasks = []
        for text in args.mixture:
            ops = parse_ops(text)
            tasks.append((chosen.get("family") or family_of(ops[0]), ops))
    else:
        tasks = []
        for family in [chosen["family"]] if "family" in chosen else FAMILIES:
            tasks += [(family, (op,)) for op in FAMILIES[family]] + [(family, DEFAULT_OPS[family])]

    def config(family: str, ops: tuple[str, ...]) -> DataConfig:
        # each family takes the options that are its own (the modulus, or k of S_k)
        own = {k: v for k, v in chosen.items() if k not in ("modulus", "group_k", "family")}
        size = "modulus" if family == "listops" else "group_k"
        if size in chosen:
            own[size] = chosen[size]
        return dataclasses.replace(base, family=family, ops=ops, tree="single", **own)

    rows = []
    for family, ops in tasks:
        cfg = config(family, ops)
        rows.append(
            {
                "family": family,
                "task": "+".join(ops),
                "proxy_bytes": proxy(cfg),
                "source_chars": len(solver(cfg)),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(
        "complexity proxy: gzip -9 size of a minimal solver minus the shared parser stub's "
        "(mechlistops/complexity.py)"
    )
    print(f"{'family':<8} {'task':<20} {'bytes':>6} {'source chars':>13}")
    for r in rows:
        print(f"{r['family']:<8} {r['task']:<20} {r['proxy_bytes']:>6} {r['source_chars']:>13}")
    for family, ops in tasks if args.show else ():
        print(f"\n# {family} {'+'.join(ops)}\n{solver(config(family, ops))}", end="")
    return 0


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
        "--group-k",
        type=bounded(int, *GROUP_K),
        default=None,
        help="the file holds permutation products over S_k (elements in one-line notation)",
    )
    e.add_argument(
        "--seed",
        type=bounded(int, 0, MAX_SEED),
        default=0,
        help="data seed behind the SSUM and SPRD relabellings",
    )
    e.add_argument(
        "--show", type=bounded(int, 0, 1_000_000), default=10, help="disagreements to print"
    )
    e.set_defaults(func=cmd_data_evaluate)

    c = sub.add_parser("complexity", help="the task-complexity proxy of operators and mixtures")
    add_config_options(c, "data", DataConfig, exclude=tuple(f for f in _TASK_EXCLUDED))
    c.add_argument(
        "--mixture",
        action="append",
        help="operators of one task, e.g. SUM,MAX,MED (repeat; default: every operator alone "
        "and each family's default mixture)",
    )
    c.add_argument(
        "--seed", type=bounded(int, 0, MAX_SEED), default=0, help="data seed (relabellings)"
    )
    c.add_argument("--show", action="store_true", help="print each solver's source")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_complexity)
