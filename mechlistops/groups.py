"""The permutation family: the symmetric group S_k as a task alphabet, and its operators.

The later version of the paper makes its claim on a second task family, nested products of
permutations, hard alone and easier with "auxiliary sub-block operations" (../shared/PAPER.md).
Its exact companions are not public; the ones here are our choice (docs/task.md says why).

Elements. S_k for k = 3, 4, 5 (6, 24, 120 elements), one token per element, written in
one-line notation: the token `201` is the permutation g with g(0)=2, g(1)=0, g(2)=1. Element
ids follow the lexicographic order of that notation, so id 0 is the identity `012`.

Composition. Functions compose right to left: (a b)(x) = a(b(x)). The product of
`[PRD a b c ]` is a b c: apply c first, then b, then a. Worked examples in S_3:
`[PRD 102 021 ]` = 120 (021 sends 1->2, then 102 sends 2->2, so 1->2; 0->0->1; 2->1->0);
`[PRD 021 102 ]` = 201 (the other order: S_3 is not abelian).

Operators. Each is `post(product of pre(a_i))` for element maps `pre` and `post`, with operands
drawn from a `domain` (all of S_k, or a subgroup). A new companion is one more `PermOp` entry
in `PERM_OPS` and its name in `config.PERM_OPERATORS` (config is stdlib only, so it also
lists the operators with a subgroup and their subgroup's size in `DataConfig.leaf_values`;
tests/test_groups.py holds those lists to this one): the sampler, the evaluator, the vocabulary
and the CLI pick it up.

- PRD  the product (the hard task);
- SGN  the sign of the product, as an element: the identity if even, the transposition `102`
       (which swaps 0 and 1) if odd. Sign is a homomorphism, so this is the parity of the count
       of odd operands;
- PNT  the image of point 0 under the product, written as the rotation r^j with j = product(0)
       (r = the k-cycle i -> i+1): following one point through the product, a sub-computation
       of it;
- CYC  the abelian control: the product of operands from the cyclic subgroup <r> (the sum of
       exponents mod k in disguise);
- BLK  the sub-block product: operands from the stabiliser of the last point, so the product
       is the induced permutation of the first k-1 points (S_{k-1} as a block of S_k);
- SPRD the shuffled-table control, as SSUM is for SUM: a fixed random relabelling p of the
       elements (drawn from the data seed), SPRD(a) = p(product of p^-1(a_i)). It is a group
       isomorphic to S_k that shares no structure with the other operators' tokens.

Two implementations of the product live here on purpose: `apply` composes tuples one operand at
a time; `apply_ids` folds the Cayley table over numpy arrays (data.py's vectorised sampler). The
tests hold both against a third, written with permutation matrices.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from mechlistops.config import GROUP_K
from mechlistops.errors import ConfigError, ParseError

Perm = tuple[int, ...]


def compose(a: Perm, b: Perm) -> Perm:
    """(a b)(x) = a(b(x)): apply b first."""
    return tuple(a[x] for x in b)


class SymmetricGroup:
    """S_k: elements in lexicographic one-line order, their names, the Cayley table, signs and
    the subgroups the operators use."""

    def __init__(self, k: int):
        if not GROUP_K[0] <= k <= GROUP_K[1]:
            raise ConfigError(f"group_k must be in {GROUP_K[0]}..{GROUP_K[1]} (S_k), got {k}")
        self.k = k
        self.elements: list[Perm] = list(itertools.permutations(range(k)))
        self.index = {p: i for i, p in enumerate(self.elements)}
        self.names = ["".join(str(x) for x in p) for p in self.elements]
        self.ids = {name: i for i, name in enumerate(self.names)}
        n = len(self.elements)
        self.table = np.array(
            [[self.index[compose(a, b)] for b in self.elements] for a in self.elements],
            dtype=np.int64,
        )  # table[a, b] = id of a b
        self.identity = self.index[tuple(range(k))]
        self.inverse = np.array([self.index[_invert(p)] for p in self.elements])
        self.sign = np.array([_parity(p) for p in self.elements])  # 0 even, 1 odd
        self.rotation = self.index[tuple((i + 1) % k for i in range(k))]
        self.swap01 = self.index[(1, 0, *range(2, k))]
        # r^j for j = 0..k-1: r^j sends 0 to j
        powers = [tuple(range(k))]
        for _ in range(k - 1):
            powers.append(compose(self.elements[self.rotation], powers[-1]))
        self.rotation_power = np.array([self.index[p] for p in powers])
        self.cyclic = np.sort(self.rotation_power)
        self.image0 = np.array([p[0] for p in self.elements])
        # where each element sends the last point: its left coset of the stabiliser
        self.image_last = np.array([p[-1] for p in self.elements])
        self.stabiliser = np.flatnonzero(self.image_last == k - 1)
        assert n == math.factorial(k)

    def __len__(self) -> int:
        return len(self.elements)

    def element(self, word: str) -> int:
        """Id of an element token; ParseError naming the problem otherwise."""
        if word not in self.ids:
            raise ParseError(
                f"{word!r} is not an element of S_{self.k} "
                f"(one-line notation, e.g. {self.names[-1]})"
            )
        return self.ids[word]


@lru_cache(maxsize=8)
def symmetric_group(k: int) -> SymmetricGroup:
    return SymmetricGroup(k)


def _invert(p: Perm) -> Perm:
    inv = [0] * len(p)
    for i, x in enumerate(p):
        inv[x] = i
    return tuple(inv)


def _parity(p: Perm) -> int:
    """0 for an even permutation, 1 for an odd one (count of inversions mod 2)."""
    return sum(p[i] > p[j] for i in range(len(p)) for j in range(i + 1, len(p))) % 2


# ----------------------------------------------------------------------------- operators
IdMap = Callable[[SymmetricGroup, np.ndarray], np.ndarray]  # (group, relabelling) -> id map


@dataclass(frozen=True)
class PermOp:
    """`post(pre(a_1) pre(a_2) ... pre(a_m))` with operands drawn from `domain`.

    pre/post: element id maps (arrays of len(group)), None for the identity map; they receive
    the group and the seed's relabelling. domain: the ids operands are drawn from, None for all
    of S_k. An operator with a domain is defined on that subgroup only, so it needs
    single-operator trees (a mixed tree could hand it another operator's value)."""

    about: str
    pre: IdMap | None = None
    post: IdMap | None = None
    domain: Callable[[SymmetricGroup], np.ndarray] | None = None


PERM_OPS: dict[str, PermOp] = {
    "PRD": PermOp("the product"),
    "SGN": PermOp(
        "the sign of the product (identity if even, 102... if odd)",
        post=lambda g, p: np.where(g.sign == 1, g.swap01, g.identity),
    ),
    "PNT": PermOp(
        "the image of point 0 under the product, as the rotation r^j",
        post=lambda g, p: g.rotation_power[g.image0],
    ),
    "CYC": PermOp("the product in the cyclic subgroup <r> (abelian)", domain=lambda g: g.cyclic),
    "BLK": PermOp(
        "the product in the stabiliser of the last point (S_{k-1} as a block)",
        domain=lambda g: g.stabiliser,
    ),
    "SPRD": PermOp(
        "the product under a fixed random relabelling of the elements (shuffled table)",
        pre=lambda g, p: np.argsort(p),
        post=lambda g, p: p,
    ),
}
PERM_OPERATORS: tuple[str, ...] = tuple(PERM_OPS)


def domain(group: SymmetricGroup, op: str) -> np.ndarray:
    """The element ids `op`'s operands are drawn from."""
    d = PERM_OPS[op].domain
    return np.arange(len(group)) if d is None else d(group)


def _map(fn: IdMap | None, group: SymmetricGroup, relabel: np.ndarray) -> np.ndarray:
    return np.arange(len(group)) if fn is None else np.asarray(fn(group, relabel))


def apply(op: str, args: list[int], group: SymmetricGroup, relabel: np.ndarray) -> int:
    """Value of one operator node, composing the operands as tuples (the scalar path)."""
    spec = PERM_OPS[op]
    if spec.domain is not None:
        allowed = set(int(x) for x in spec.domain(group))
        for a in args:
            if a not in allowed:
                raise ParseError(
                    f"[{op} takes operands from its subgroup; {group.names[a]} is not in it"
                )
    pre, post = _map(spec.pre, group, relabel), _map(spec.post, group, relabel)
    product = tuple(range(group.k))
    for a in args:
        product = compose(product, group.elements[int(pre[a])])
    return int(post[group.index[product]])


def apply_ids(
    op: str, args: np.ndarray, valid: np.ndarray, group: SymmetricGroup, relabel: np.ndarray
) -> np.ndarray:
    """Vectorised node values, folding the Cayley table left to right. args/valid: (m, A);
    invalid operands are skipped."""
    spec = PERM_OPS[op]
    pre, post = _map(spec.pre, group, relabel), _map(spec.post, group, relabel)
    acc = np.full(len(args), group.identity, dtype=np.int64)
    for j in range(args.shape[1]):
        acc = np.where(valid[:, j], group.table[acc, pre[args[:, j]]], acc)
    return post[acc]
