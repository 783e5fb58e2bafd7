"""ListOps files users bring: our TSV, the original ListOps TSV, bare expressions.

Accepted line formats (tab-separated):
- `expression<TAB>answer` (what `mechlistops data sample` writes);
- `answer<TAB>expression` (Nangia & Bowman's original ListOps files), also with SPINN-style
  parentheses `( ( [MAX 2 ) 9 ) ] )` and `[SM` for sum mod 10;
- a bare expression per line (no label: the file is labelled instead of checked).
A first line without brackets (a `Source<TAB>Target` header) is skipped. With a group (S_k),
values and answers are elements in one-line notation and operators the perm family's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from mechlistops.errors import ParseError
from mechlistops.groups import symmetric_group
from mechlistops.listops import Node, evaluate, parse, ssum_permutation, to_text

_INT = re.compile(r"\s*-?[0-9]{1,18}\s*")  # ASCII digits: int() also reads "٣"
_WORD = re.compile(r"\s*[^\s\[\]()]{1,40}\s*")  # one value token: a label


@dataclass
class FileReport:
    n: int = 0  # labelled examples checked
    disagreements: list[tuple[int, str, str, str]] = field(default_factory=list)
    unlabelled: list[tuple[str, str]] = field(default_factory=list)


def _split(line: str, group=None) -> tuple[str, str | None]:
    """(expression, label or None) from one line: a label is a number, or with a group an
    element token."""
    fields = line.split("\t")
    if len(fields) == 1:
        return fields[0], None
    if len(fields) != 2:
        raise ParseError(f"expected 1 or 2 tab-separated fields, got {len(fields)}")
    a, b = fields
    label = _INT if group is None else _WORD
    if "[" in a and label.fullmatch(b):
        return a, b
    if "[" in b and label.fullmatch(a):
        return b, a
    raise ParseError("expected expression<TAB>answer or answer<TAB>expression")


def _label(word: str, modulus: int, group) -> int:
    word = word.strip()
    if group is not None:
        return group.element(word)
    value = int(word)  # _split only passes ASCII digits
    if not 0 <= value < modulus:
        raise ParseError(f"answer {value} is outside the modulus {modulus}")
    return value


@dataclass
class FileLine:
    """One expression of a file: where it is, its tree and value, and its label (None when
    the file is unlabelled)."""

    line_no: int
    tree: Node
    value: int
    label: int | None


def read_expressions(
    path: Path,
    modulus: int = 10,
    median: str = "listops",
    seed: int = 0,
    group_k: int | None = None,
) -> list[FileLine]:
    """Every expression of a file, parsed and evaluated; ParseError names the line and the
    problem (or a file that is missing, not text, empty, or mixes labelled and unlabelled
    lines). `group_k`: the file holds permutation products over S_k."""
    if not path.is_file():
        what = "a directory, not a file" if path.is_dir() else "no such file"
        raise ParseError(f"{path}: {what}")
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError:
        raise ParseError(f"{path}: not a text file") from None
    group = symmetric_group(group_k) if group_k else None
    perm = ssum_permutation(len(group) if group else modulus, seed)
    out: list[FileLine] = []
    for i, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            continue
        if i == 1 and "[" not in line:
            continue  # header
        try:
            text, label = _split(line, group)
            tree = parse(text, modulus, group)
            value = evaluate(tree, modulus, median, perm, group)
            label_value = None if label is None else _label(label, modulus, group)
        except ParseError as exc:
            raise ParseError(f"{path}:{i}: {exc}") from None
        if out and (out[0].label is None) != (label is None):
            raise ParseError(f"{path}:{i}: mixes labelled and unlabelled lines")
        out.append(FileLine(i, tree, value, label_value))
    if not out:
        raise ParseError(f"{path}: no expressions found")
    return out


def check_file(
    path: Path,
    modulus: int = 10,
    median: str = "listops",
    seed: int = 0,
    group_k: int | None = None,
) -> FileReport:
    """Evaluate every line (`read_expressions`): the labels that disagree, or, for an
    unlabelled file, each expression with its value."""
    group = symmetric_group(group_k) if group_k else None
    name = group.names.__getitem__ if group else str
    report = FileReport()
    for line in read_expressions(path, modulus, median, seed, group_k):
        if line.label is None:
            report.unlabelled.append((to_text(line.tree, group), name(line.value)))
            continue
        report.n += 1
        if line.label != line.value:
            report.disagreements.append(
                (line.line_no, to_text(line.tree, group), name(line.label), name(line.value))
            )
    return report
