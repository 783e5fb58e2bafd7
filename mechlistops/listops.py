"""ListOps expressions one at a time: the vocabulary, operator semantics, parsing, evaluation.

This is the scalar, readable side of the task: it parses the text users bring (our bracket form,
the original ListOps TSV of Nangia & Bowman 2018 with SPINN's parentheses and `[SM` for sum) and
evaluates it recursively. `data.py` generates millions of expressions with vectorised numpy;
the two are written independently so that each checks the other in the tests.

Format: `[SUM 3 [MAX 4 9 ] 2 ]` is 3 + 9 + 2 = 14 -> 4 (mod 10). Values are residues 0..n-1,
one token each; an operator token carries its opening bracket (`[SUM`); `]` closes.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from mechlistops.config import MEDIAN_RULES, OPERATORS
from mechlistops.errors import ParseError

# The original ListOps spells sum mod 10 as `[SM`.
OP_ALIASES = {"SM": "SUM"}
SPECIALS = ("<bos>", "<eos>", "<pad>")
_SSUM_STREAM = 0x55_55  # keeps the SSUM relabelling independent of every other stream
# Deeper than any generated expression by far; keeps the recursive helpers (evaluate, to_text,
# count_leaves) well inside Python's recursion limit.
MAX_NESTING = 200
_VALUE = re.compile(r"-?[0-9]{1,18}")  # ASCII digits only: str.isdigit accepts "٣" and "３"


class Vocab:
    """Word-level vocabulary: value v has id v, then `]`, `=`, one `[OP` per operator, specials.

    Every operator has a token whatever the mixture, so runs on different mixtures share one
    vocabulary (needed to transfer weights between them).
    """

    def __init__(self, modulus: int):
        self.modulus = modulus
        self.tokens: list[str] = (
            [str(v) for v in range(modulus)]
            + ["]", "="]
            + ["[" + op for op in OPERATORS]
            + list(SPECIALS)
        )
        self.ids = {tok: i for i, tok in enumerate(self.tokens)}
        self.close = self.ids["]"]
        self.equals = self.ids["="]
        self.bos, self.eos, self.pad = (self.ids[s] for s in SPECIALS)

    def __len__(self) -> int:
        return len(self.tokens)

    def op_id(self, op: str) -> int:
        return self.ids["[" + op]

    @property
    def op_ids(self) -> list[int]:
        """Token id of each operator, in OPERATORS order."""
        return [self.op_id(op) for op in OPERATORS]

    def encode(self, text: str) -> list[int]:
        out = []
        for word in text.split():
            if word not in self.ids:
                raise ParseError(
                    f"token {word!r} is not in the vocabulary (modulus {self.modulus})"
                )
            out.append(self.ids[word])
        return out

    def decode(self, ids, skip_pad: bool = True) -> str:
        words = [self.tokens[int(i)] for i in ids if not (skip_pad and int(i) == self.pad)]
        return " ".join(words)

    def to_dict(self) -> dict:
        return {"modulus": self.modulus, "tokens": self.tokens}


def ssum_permutation(modulus: int, seed: int) -> np.ndarray:
    """The fixed relabelling p of residues behind SSUM, drawn from the data seed."""
    return np.random.default_rng([seed, _SSUM_STREAM]).permutation(modulus)


def apply_op(op: str, args: list[int], modulus: int, median: str = "listops", perm=None) -> int:
    """Value of one operator node over its argument values (all residues mod `modulus`)."""
    if op == "MAX":
        return max(args)
    if op == "MIN":
        return min(args)
    if op == "MED":
        s, k = sorted(args), len(args)
        if k % 2:
            return s[k // 2]
        return (s[k // 2 - 1] + s[k // 2]) // 2 if median == "listops" else s[k // 2 - 1]
    if op == "SUM":
        return sum(args) % modulus
    if op == "PROD":
        return math.prod(args) % modulus
    if op == "NADD":
        return sum(a if i % 2 == 0 else -a for i, a in enumerate(args)) % modulus
    if op == "SSUM":
        p = [int(x) for x in perm]
        p_inv = {v: i for i, v in enumerate(p)}
        return p[sum(p_inv[a] for a in args) % modulus]
    raise ParseError(f"unknown operator {op!r}")


@dataclass
class Node:
    op: str
    args: list  # of int | Node

    @property
    def depth(self) -> int:
        return 1 + max((a.depth for a in self.args if isinstance(a, Node)), default=0)


def tokenize_text(text: str) -> list[str]:
    """Split an expression into words, dropping SPINN's parentheses."""
    text = re.sub(r"[()]", " ", text)
    text = re.sub(r"\]", " ] ", text)
    return text.split()


def parse(text: str, modulus: int = 10) -> Node:
    """Parse one bracketed expression; raises ParseError naming the problem."""
    words = tokenize_text(text)
    if not words:
        raise ParseError("empty expression")
    stack: list[Node] = []
    root: Node | None = None
    for i, word in enumerate(words):
        if root is not None:
            raise ParseError(f"unexpected {word!r} after the expression closed (word {i + 1})")
        if word.startswith("["):
            name = word[1:].upper()
            name = OP_ALIASES.get(name, name)
            if name not in OPERATORS:
                raise ParseError(f"unknown operator {word!r} (word {i + 1})")
            if len(stack) == MAX_NESTING:
                raise ParseError(f"nesting deeper than {MAX_NESTING} levels (word {i + 1})")
            stack.append(Node(name, []))
        elif word == "]":
            if not stack:
                raise ParseError(f"unbalanced: ']' with no open bracket (word {i + 1})")
            node = stack.pop()
            if not node.args:
                raise ParseError(f"operator [{node.op} has no arguments (word {i + 1})")
            if stack:
                stack[-1].args.append(node)
            else:
                root = node
        else:
            if not _VALUE.fullmatch(word):
                if re.fullmatch(r"-?\d+", word):  # too long, or digits of another script
                    raise ParseError(
                        f"value {word[:20]!r} is not a residue 0..{modulus - 1} in ASCII digits "
                        f"(word {i + 1})"
                    )
                raise ParseError(f"expected a value, operator or ']', got {word!r} (word {i + 1})")
            value = int(word)
            if not 0 <= value < modulus:
                raise ParseError(f"value {value} is outside the modulus {modulus} (word {i + 1})")
            if not stack:
                raise ParseError(f"value {word} outside any operator (word {i + 1})")
            stack[-1].args.append(value)
    if root is None:
        raise ParseError(f"unbalanced: {len(stack)} bracket(s) never closed")
    return root


def evaluate(tree: Node | int, modulus: int = 10, median: str = "listops", perm=None) -> int:
    """Recursive value of a parsed expression."""
    if median not in MEDIAN_RULES:
        raise ParseError(f"median rule must be one of {MEDIAN_RULES}, got {median!r}")
    if isinstance(tree, int):
        return tree
    args = [evaluate(a, modulus, median, perm) for a in tree.args]
    return apply_op(tree.op, args, modulus, median, perm)


def to_text(tree: Node | int) -> str:
    """Canonical bracket form: `[SUM 3 [MAX 4 9 ] 2 ]`."""
    if isinstance(tree, int):
        return str(tree)
    return "[" + tree.op + " " + " ".join(to_text(a) for a in tree.args) + " ]"


def count_leaves(tree: Node | int) -> int:
    if isinstance(tree, int):
        return 1
    return sum(count_leaves(a) for a in tree.args)
