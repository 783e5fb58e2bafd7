"""The `mechlistops` command line: parse arguments, build configs, call the library, print.

Every failure a user can cause (bad expressions, unknown operators, sizes that do not divide,
missing or corrupted checkpoints) ends as one line on stderr and a non-zero exit, never a
traceback. `main(argv)` returns the exit code, so tests call it directly.

    options.py   the options every command builds from the config dataclasses
    train.py     train, eval, export
    data.py      data sample, data evaluate, complexity
    analysis.py  ablate, attribute, probe, geometry, report
    sweep.py     sweep, transition, reproduce
"""

from __future__ import annotations

import logging
import os
import sys

from mechlistops import __version__, threads  # noqa: E402

# Before anything loads torch: idle OpenMP threads spin only briefly, so a run sharing its
# cores with another process is not stalled by a descheduled thread (threads.py).
threads.set_wait_policy()
from mechlistops.cli import analysis, data, sweep, train  # noqa: E402
from mechlistops.cli.options import Parser  # noqa: E402
from mechlistops.errors import EXIT_ERROR, MechlistopsError, error_text, first_line  # noqa: E402

TRACEBACK_VAR = "MECHLISTOPS_TRACEBACK"
EXIT_INTERNAL = 70  # sysexits' EX_SOFTWARE


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
        if getattr(args, "threads", None) is not None:
            _set_threads(args)
        return args.func(args)
    except MechlistopsError as exc:
        print(f"mechlistops: error: {error_text(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("mechlistops: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head`: not an error of ours
        sys.stderr.close()
        return 0
    except MemoryError:
        print("mechlistops: error: out of memory (try smaller sizes or --limit)", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:  # the file system said no: permissions, disk full, a vanished file
        print(f"mechlistops: error: {error_text(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:  # a bug of ours: still one line, the traceback on request
        if os.environ.get(TRACEBACK_VAR):
            raise
        print(
            f"mechlistops: internal error: {type(exc).__name__}: {first_line(exc)} "
            f"(please report it; {TRACEBACK_VAR}=1 shows the traceback)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


def _set_threads(args) -> None:
    # `train` prints the choice in its header; stderr stays for errors (one line each)
    args.thread_choice = threads.apply(threads.choose(threads.parse_threads(args.threads)))


if __name__ == "__main__":
    raise SystemExit(main())
