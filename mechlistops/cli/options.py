"""Command-line options built from the config dataclasses' fields.

A knob is written once, in `mechlistops.config`: its default, help, choices and its
spelled-out "off" word (field metadata). `add_config_options` turns a dataclass's fields into
options, `config_from_args` turns the options a user gave back into a config. Options left
out keep the config's default: they are absent from the parsed namespace (argparse.SUPPRESS),
so "not given" never needs a sentinel value, and an off word ("none", "auto", "all") maps to
the field's off value.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from mechlistops.config import parse_ops
from mechlistops.errors import EXIT_ERROR, ConfigError, MechlistopsError

_FLAGS: dict[str, str] = {}  # option dest -> its flag, for messages
_TITLES = {"train": "training"}


class Parser(argparse.ArgumentParser):
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

    parse.__name__ = f"{cast.__name__} list"
    return parse


def bounded(cast, low, high):
    """argparse type for one number in [low, high]: bounded(int, 1, 10)("3") == 3."""

    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid {cast.__name__} value: {text!r}") from None
        if not low <= value <= high:  # NaN fails too
            raise argparse.ArgumentTypeError(f"expected {low}..{high:,}, got {text}")
        return value

    parse.__name__ = cast.__name__
    return parse


def checked(parse):
    """argparse type from a library parser: its MechlistopsError becomes argparse's error,
    one line that names the option."""

    def call(text: str):
        try:
            return parse(text)
        except MechlistopsError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    call.__name__ = parse.__name__
    return call


_ops = checked(parse_ops)


_CASTS = {
    "int": int,
    "float": float,
    "str": str,
    "tuple[str, ...]": _ops,
    "tuple[float, ...]": numbers(float),
}


def _option_type(f: dataclasses.Field):
    """The argparse type of a field: its cast, its choices and its off word."""
    kind = str(f.type).replace(" | None", "")
    cast, meta = _CASTS[kind], f.metadata
    choices = [c for c in meta.get("choices", ()) if c is not None]
    off_word = meta.get("none")
    off_value = None if "| None" in str(f.type) else f.default

    def parse(text: str) -> Any:
        if off_word is not None and text == off_word:
            return off_value
        try:
            value = cast(text)
        except ValueError:
            also = f" (or {off_word!r})" if off_word else ""
            raise argparse.ArgumentTypeError(
                f"invalid {getattr(cast, '__name__', kind)} value: {text!r}{also}"
            ) from None
        if choices and value not in choices:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not one of {', '.join(choices + ([off_word] if off_word else []))}"
            )
        return value

    metavar = "{" + ",".join(choices + ([off_word] if off_word else [])) + "}" if choices else None
    return parse, meta.get("metavar", metavar or f.name.upper())


def _shown(f: dataclasses.Field) -> str:
    if "shown" in f.metadata:
        return f.metadata["shown"]
    value = f.default
    if value is None:
        return f.metadata.get("none", "none")
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or f.metadata.get("none", "none")
    return str(value)


def add_config_options(
    parser: argparse.ArgumentParser, section: str, kind: type, exclude: tuple[str, ...] = ()
) -> None:
    """One option per field of the config dataclass `kind` (its values land in `args` as
    `{section}__{field}`)."""
    group = parser.add_argument_group(_TITLES.get(section, section))
    for f in dataclasses.fields(kind):
        if f.name in exclude or f.metadata.get("cli", True) is False:
            continue
        flag = "--" + f.metadata.get("flag", f.name.replace("_", "-"))
        help_ = f"{f.metadata['help']} (default: {_shown(f)})"
        dest = f"{section}__{f.name}"
        _FLAGS[dest] = flag
        if str(f.type) == "bool":
            group.add_argument(
                flag,
                dest=dest,
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=help_,
            )
            continue
        parse, metavar = _option_type(f)
        group.add_argument(
            flag, dest=dest, type=parse, metavar=metavar, default=argparse.SUPPRESS, help=help_
        )


def given(args: argparse.Namespace, section: str) -> dict[str, Any]:
    """The fields of one section the user set on the command line."""
    prefix = f"{section}__"
    return {k[len(prefix) :]: v for k, v in vars(args).items() if k.startswith(prefix)}


def given_flags(args: argparse.Namespace) -> list[str]:
    """Every config option the user gave, as its flag (for messages)."""
    return [_FLAGS.get(k, k) for k in vars(args) if "__" in k]


def only_with(args: argparse.Namespace, needs: str, applies: bool, *dests: str) -> None:
    """Refuse options the user gave that would do nothing here (--slurm-time without
    --launcher slurm, say): left unsaid, the run goes on as if they were not given. The
    options are declared with default=argparse.SUPPRESS, so only given ones are present."""
    idle = ["--" + d.replace("_", "-") for d in dests if hasattr(args, d)]
    if idle and not applies:
        raise ConfigError(f"{', '.join(idle)}: only with {needs}")


def config_from_args(args: argparse.Namespace, section: str, base: Any) -> Any:
    """`base` with the options of `section` the user gave (validated by the dataclass).
    Another task family brings its own default operators unless --ops is given."""
    changes = given(args, section)
    if "family" in changes and changes["family"] != getattr(base, "family", None):
        changes.setdefault("ops", None)
    return dataclasses.replace(base, **changes)
