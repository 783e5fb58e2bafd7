"""ListOps files users bring: our TSV, the original ListOps TSV, bare expressions.

Accepted line formats (tab-separated):
- `expression<TAB>answer` (what `mechlistops data sample` writes);
- `answer<TAB>expression` (Nangia & Bowman's original ListOps files), also with SPINN-style
  parentheses `( ( [MAX 2 ) 9 ) ] )` and `[SM` for sum mod 10;
- a bare expression per line (no label: the file is labelled instead of checked).
A first line without brackets (a `Source<TAB>Target` header) is skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from mechlistops.errors import ParseError
from mechlistops.listops import evaluate, parse, ssum_permutation, to_text

_INT = re.compile(r"\s*-?[0-9]{1,18}\s*")  # ASCII digits: int() also reads "٣"


@dataclass
class FileReport:
    n: int = 0  # labelled examples checked
    disagreements: list[tuple[int, str, int, int]] = field(default_factory=list)
    unlabelled: list[tuple[str, int]] = field(default_factory=list)


def _split(line: str) -> tuple[str, str | None]:
    """(expression, label or None) from one line."""
    fields = line.split("\t")
    if len(fields) == 1:
        return fields[0], None
    if len(fields) != 2:
        raise ParseError(f"expected 1 or 2 tab-separated fields, got {len(fields)}")
    a, b = fields
    if "[" in a and _INT.fullmatch(b):
        return a, b
    if "[" in b and _INT.fullmatch(a):
        return b, a
    raise ParseError("expected expression<TAB>answer or answer<TAB>expression")


def check_file(path: Path, modulus: int = 10, median: str = "listops", seed: int = 0) -> FileReport:
    """Evaluate every line; ParseError names the line and the problem."""
    if not path.is_file():
        raise ParseError(f"{path}: no such file")
    try:
        lines = path.read_text().splitlines()
    except UnicodeDecodeError:
        raise ParseError(f"{path}: not a text file") from None
    perm = ssum_permutation(modulus, seed)
    report, labelled = FileReport(), None
    for i, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            continue
        if i == 1 and "[" not in line:
            continue  # header
        try:
            text, label = _split(line)
            tree = parse(text, modulus)
            value = evaluate(tree, modulus, median, perm)
            if label is not None:
                label_value = int(label)
                if not 0 <= label_value < modulus:
                    raise ParseError(f"answer {label_value} is outside the modulus {modulus}")
        except ParseError as exc:
            raise ParseError(f"{path}:{i}: {exc}") from None
        if labelled is None:
            labelled = label is not None
        elif labelled != (label is not None):
            raise ParseError(f"{path}:{i}: mixes labelled and unlabelled lines")
        if label is None:
            report.unlabelled.append((to_text(tree), value))
            continue
        report.n += 1
        if label_value != value:
            report.disagreements.append((i, to_text(tree), label_value, value))
    if report.n == 0 and not report.unlabelled:
        raise ParseError(f"{path}: no expressions found")
    return report
