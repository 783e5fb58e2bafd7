"""The `mechlistops` command line: parse arguments, build configs, call the library, print.

Every failure a user can cause (bad expressions, unknown operators, sizes that do not divide,
missing or corrupted checkpoints) ends as one line on stderr and a non-zero exit, never a
traceback. `main(argv)` returns the exit code, so tests call it directly.

    options.py   the options every command builds from the config dataclasses
    train.py     train, eval
    data.py      data sample, data evaluate
    analysis.py  ablate, attribute, probe, geometry, report
    sweep.py     sweep, transition, reproduce
"""

from __future__ import annotations

import logging
import sys

from mechlistops import __version__
from mechlistops.cli import analysis, data, sweep, train
from mechlistops.cli.options import EXIT_ERROR, Parser
from mechlistops.errors import MechlistopsError


def build_parser() -> Parser:
    p = Parser(
        prog="mechlistops",
        description="Train tiny TransformerLens models on ListOps mixtures and look inside them.",
    )
    p.add_argument("--version", action="version", version=f"mechlistops {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module in (train, data, analysis, sweep):
        module.add_parsers(sub)
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
