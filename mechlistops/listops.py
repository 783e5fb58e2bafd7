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

from mechlistops import groups
from mechlistops.config import LISTOPS_OPERATORS, MEDIAN_RULES, OPERATORS, DataConfig
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
    """Word-level vocabulary: value v has id v, then `]`, `=`, one `[OP` per operator of the
    family, specials.

    ListOps values are the residues `0`..`n-1`; the perm family's are the elements of S_k in
    one-line notation (`group`). Every operator of the family has a token whatever the
    mixture, so runs on different mixtures share one vocabulary (needed to transfer weights).
    """

    def __init__(self, modulus: int = 10, group: groups.SymmetricGroup | None = None):
        self.group = group
        values = group.names if group else [str(v) for v in range(modulus)]
        self.family_ops = groups.PERM_OPERATORS if group else LISTOPS_OPERATORS
        self.n_values = len(values)
        self.modulus = modulus  # the listops modulus (unused by the perm family)
        self.tokens: list[str] = (
            values + ["]", "="] + ["[" + op for op in self.family_ops] + list(SPECIALS)
        )
        self.ids = {tok: i for i, tok in enumerate(self.tokens)}
        self.close = self.ids["]"]
        self.equals = self.ids["="]
        self.bos, self.eos, self.pad = (self.ids[s] for s in SPECIALS)

    @classmethod
    def of(cls, cfg: DataConfig) -> Vocab:
        """The vocabulary of a run's data config."""
        if cfg.family == "perm":
            return cls(group=groups.symmetric_group(cfg.group_k))
        return cls(cfg.modulus)

    def __len__(self) -> int:
        return len(self.tokens)

    def op_id(self, op: str) -> int:
        return self.ids["[" + op]

    @property
    def op_ids(self) -> list[int]:
        """Token id of each operator, in OPERATORS order (`<pad>` for another family's)."""
        return [self.op_id(op) if op in self.family_ops else self.pad for op in OPERATORS]

    def parity(self, values: np.ndarray) -> np.ndarray:
        """The two-class structure probes and geometry look for: a residue's parity, or an
        element's sign (0 even, 1 odd)."""
        values = np.asarray(values)
        return self.group.sign[values] if self.group else values % 2

    def encode(self, text: str) -> list[int]:
        out = []
        for word in text.split():
            if word not in self.ids:
                raise ParseError(f"token {word!r} is not in the vocabulary ({self.describe()})")
            out.append(self.ids[word])
        return out

    def decode(self, ids, skip_pad: bool = True) -> str:
        words = [self.tokens[int(i)] for i in ids if not (skip_pad and int(i) == self.pad)]
        return " ".join(words)

    def describe(self) -> str:
        return f"S_{self.group.k}" if self.group else f"modulus {self.modulus}"

    def to_dict(self) -> dict:
        if self.group:
            return {"family": "perm", "group_k": self.group.k, "tokens": self.tokens}
        return {"modulus": self.modulus, "tokens": self.tokens}


def ssum_permutation(n_values: int, seed: int) -> np.ndarray:
    """The fixed relabelling p of the values behind the shuffled-table controls (SSUM over the
    residues, SPRD over the elements of S_k), drawn from the data seed."""
    return np.random.default_rng([seed, _SSUM_STREAM]).permutation(n_values)


def apply_op(
    op: str,
    args: list[int],
    modulus: int,
    median: str = "listops",
    perm=None,
    group: groups.SymmetricGroup | None = None,
) -> int:
    """Value of one operator node over its argument values (residues mod `modulus`, or element
    ids of `group` for the perm family's operators)."""
    if op in groups.PERM_OPS:
        if group is None:
            raise ParseError(f"[{op} is a permutation operator: it needs a group (S_k)")
        relabel = perm if perm is not None else np.arange(len(group))
        return groups.apply(op, args, group, np.asarray(relabel))
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

    @property
    def operators(self) -> set[str]:
        """Every operator in the tree."""
        return {self.op}.union(*(a.operators for a in self.args if isinstance(a, Node)))


def tokenize_text(text: str) -> list[str]:
    """Split an expression into words, dropping SPINN's parentheses."""
    text = re.sub(r"[()]", " ", text)
    text = re.sub(r"\]", " ] ", text)
    return text.split()


def parse(text: str, modulus: int = 10, group: groups.SymmetricGroup | None = None) -> Node:
    """Parse one bracketed expression; raises ParseError naming the problem. With a `group`,
    values are elements of S_k in one-line notation and operators the perm family's."""
    family_ops = groups.PERM_OPERATORS if group else LISTOPS_OPERATORS
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
            if name not in family_ops:
                known = f"; S_{group.k} has {', '.join(family_ops)}" if group else ""
                raise ParseError(f"unknown operator {word!r} (word {i + 1}){known}")
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
        elif group is not None:
            if not stack:
                raise ParseError(f"value {word} outside any operator (word {i + 1})")
            try:
                stack[-1].args.append(group.element(word))
            except ParseError as exc:
                raise ParseError(f"{exc} (word {i + 1})") from None
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


def evaluate(
    tree: Node | int,
    modulus: int = 10,
    median: str = "listops",
    perm=None,
    group: groups.SymmetricGroup | None = None,
) -> int:
    """Recursive value of a parsed expression."""
    if median not in MEDIAN_RULES:
        raise ParseError(f"median rule must be one of {MEDIAN_RULES}, got {median!r}")
    if isinstance(tree, int):
        return tree
    args = [evaluate(a, modulus, median, perm, group) for a in tree.args]
    return apply_op(tree.op, args, modulus, median, perm, group)


def to_text(tree: Node | int, group: groups.SymmetricGroup | None = None) -> str:
    """Canonical bracket form: `[SUM 3 [MAX 4 9 ] 2 ]` (element names with a `group`)."""
    if isinstance(tree, int):
        return group.names[tree] if group else str(tree)
    return "[" + tree.op + " " + " ".join(to_text(a, group) for a in tree.args) + " ]"


def count_leaves(tree: Node | int) -> int:
    if isinstance(tree, int):
        return 1
    return sum(count_leaves(a) for a in tree.args)
