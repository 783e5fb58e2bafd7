"""ListOps data at speed: vectorised tree sampling, evaluation, tokenisation, splits.

Context: training draws millions of expressions, so nothing here loops over examples in Python.
Every expression is laid out on the slots of the full `max_args`-ary tree of depth `max_depth`:
the node slots of level d (1 = root) are numbered 0..A^(d-1)-1 and child j of slot s is slot
s*A + j one level down. Sampling, evaluation (bottom-up, level by level) and tokenisation
(write every token at its fixed slot position, then squeeze out the empty slots) are numpy
operations over (examples, slots) arrays. `listops.py` evaluates the same expressions one at a
time, by recursion, and the tests hold the two against each other.

Sequences are `<bos> EXPR = ANSWER <eos>` right-padded with `<pad>`; with chain-of-thought
targets, `<bos> EXPR = EXPR' = EXPR'' = ANSWER <eos>` where each EXPR' collapses the deepest
remaining level to its values. Every position also records the value of the node its token
belongs to (a leaf's value, a bracket's subtree value, the answer at `=`) for probes.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from mechlistops import groups
from mechlistops.config import OPERATORS, DataConfig, TrainConfig
from mechlistops.errors import ConfigError
from mechlistops.listops import Node, Vocab, apply_op, count_leaves, ssum_permutation

_TEST_STREAM, _TRAIN_STREAM, _MIXTURE_KEY = 1, 2, 100
_CHUNK_ROWS = 1 << 16  # compaction works in chunks to bound memory


@dataclass
class Examples:
    """A set of tokenised expressions (numpy arrays, one row per example)."""

    tokens: np.ndarray  # (n, seq_len) uint8, right-padded with vocab.pad
    node_values: np.ndarray  # (n, seq_len) int8: value of the token's node; -1 where none
    node_ops: np.ndarray  # (n, seq_len) int8: OPERATORS index at `[OP` and `]`; -1 elsewhere
    lengths: np.ndarray  # (n,) tokens before padding
    prompt_len: np.ndarray  # (n,) tokens up to and including the first `=`
    answers: np.ndarray  # (n,) int64
    root_ops: np.ndarray  # (n,) OPERATORS index of the root node
    depths: np.ndarray  # (n,) nesting depth, 1 = flat
    n_leaves: np.ndarray  # (n,)

    def __len__(self) -> int:
        return len(self.answers)

    @property
    def answer_pos(self) -> np.ndarray:
        """Position of the last `=`, whose next-token prediction is the answer."""
        return self.lengths - 3

    def subset(self, idx) -> Examples:
        return Examples(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    @staticmethod
    def concat(parts: list[Examples]) -> Examples:
        """Join example sets drawn with the same config (hence the same width)."""
        return Examples(
            **{
                f.name: np.concatenate([getattr(p, f.name) for p in parts])
                for f in fields(Examples)
            }
        )

    def expressions(self, vocab: Vocab) -> list[str]:
        """Bracket form of each expression (without `<bos>` and the answer)."""
        out = []
        for row, first_eq in zip(self.tokens, self.prompt_len - 1):
            out.append(vocab.decode(row[1:first_eq]))
        return out


# ----------------------------------------------------------------------------- layout
def _widths(max_args: int, max_depth: int) -> list[int]:
    """w[d] = layout width of a node at level d (1-based); w[max_depth + 1] = 1 (a leaf)."""
    w = [0] * (max_depth + 2)
    w[max_depth + 1] = 1
    for d in range(max_depth, 0, -1):
        w[d] = 2 + max_args * w[d + 1]
    return w


def _starts(max_args: int, max_depth: int) -> list[np.ndarray]:
    """starts[d][s] = layout position of node slot s's opening token at level d."""
    w = _widths(max_args, max_depth)
    starts = [np.zeros(0, dtype=np.int64), np.zeros(1, dtype=np.int64)]
    for d in range(1, max_depth):
        j = np.arange(max_args)
        child = starts[d][:, None] + 1 + j[None, :] * w[d + 1]
        starts.append(child.reshape(-1))
    return starts


def seq_len(cfg: DataConfig) -> int:
    """Longest token sequence the config can produce (the model's n_ctx)."""
    a = cfg.max_args

    def expr_max(depth: int) -> int:  # tokens of a full tree of this depth
        nodes = sum(a**k for k in range(depth))
        return 2 * nodes + a**depth

    total = 1 + expr_max(cfg.max_depth) + 3
    if cfg.chain_of_thought:
        total += sum(1 + expr_max(t) for t in range(1, cfg.max_depth))
    return total


# ----------------------------------------------------------------------------- operators
def _apply_ops(
    op: np.ndarray, args: np.ndarray, valid: np.ndarray, cfg: DataConfig, perm: np.ndarray
) -> np.ndarray:
    """Vectorised node values. op: (m,), args/valid: (m, A). Invalid args are ignored."""
    n = cfg.modulus
    out = np.zeros(len(op), dtype=np.int64)
    for k in np.unique(op):
        name, sel = OPERATORS[k], op == k
        a, v = args[sel], valid[sel]
        if name in groups.PERM_OPS:
            r = groups.apply_ids(name, a, v, groups.symmetric_group(cfg.group_k), perm)
        elif name == "MAX":
            r = np.where(v, a, -1).max(1)
        elif name == "MIN":
            r = np.where(v, a, n).min(1)
        elif name == "SUM":
            r = np.where(v, a, 0).sum(1) % n
        elif name == "PROD":
            r = np.where(v, a, 1).prod(1) % n
        elif name == "NADD":
            sign = np.where(np.arange(a.shape[1]) % 2 == 0, 1, -1)
            r = (np.where(v, a, 0) * sign).sum(1) % n
        elif name == "SSUM":
            inv = np.argsort(perm)
            r = perm[np.where(v, inv[a], 0).sum(1) % n]
        else:  # MED
            s = np.sort(np.where(v, a, n + 1), axis=1)
            k_ = v.sum(1)
            hi = np.take_along_axis(s, (k_ // 2)[:, None], 1)[:, 0]
            lo = np.take_along_axis(s, np.maximum(k_ // 2 - 1, 0)[:, None], 1)[:, 0]
            even = lo if cfg.median == "lower" else (lo + hi) // 2
            r = np.where(k_ % 2 == 1, hi, even)
        out[sel] = r
    return out


# ----------------------------------------------------------------------------- sampling
def phase_weights(cfg: DataConfig, ops: tuple[str, ...]) -> tuple[float, ...]:
    """The operator weights of a training phase: the mixture's own, or equal ones for another
    set of operators (a pretraining phase)."""
    return cfg.mixture_weights if ops == cfg.ops else (1.0 / len(ops),) * len(ops)


def sample_examples(
    cfg: DataConfig,
    n: int,
    rng: np.random.Generator,
    ops: tuple[str, ...] | None = None,
    weights: tuple[float, ...] | None = None,
    tree: str | None = None,
) -> Examples:
    """Draw `n` expressions. ops/weights/tree override the config's mixture."""
    ops = ops or cfg.ops
    if weights is None:
        weights = phase_weights(cfg, ops)
    tree = tree or cfg.tree
    parts = []
    for start in range(0, n, _CHUNK_ROWS):
        m = min(_CHUNK_ROWS, n - start)
        parts.append(_sample_chunk(cfg, m, rng, ops, np.asarray(weights), tree))
    return parts[0] if len(parts) == 1 else Examples.concat(parts)


def _sample_chunk(cfg, n, rng, ops, weights, tree) -> Examples:
    A, D, vocab = cfg.max_args, cfg.max_depth, Vocab.of(cfg)
    perm = ssum_permutation(cfg.n_values, cfg.seed)
    op_index = np.array([OPERATORS.index(o) for o in ops])
    weights = weights / weights.sum()
    cum = np.cumsum(weights)[:-1]

    def draw_ops(shape):  # categorical draw, faster than rng.choice with p
        return op_index[np.searchsorted(cum, rng.random(shape), side="right")]

    single_op = draw_ops(n)

    exists = [None, np.ones((n, 1), dtype=bool)]
    arity, node_op, is_sub, leaf = [None], [None], [None], [None]
    for d in range(1, D + 1):
        slots = A ** (d - 1)
        arity.append(rng.integers(cfg.min_args, A + 1, size=(n, slots)))
        if tree == "single":
            node_op.append(np.broadcast_to(single_op[:, None], (n, slots)))
        else:
            node_op.append(draw_ops((n, slots)))
        valid = exists[d][:, :, None] & (np.arange(A)[None, None, :] < arity[d][:, :, None])
        sub = valid & (rng.random((n, slots, A)) < cfg.branch_prob) if d < D else valid & False
        is_sub.append(sub)
        leaf.append(_leaves(cfg, rng.integers(0, cfg.n_values, size=(n, slots, A)), node_op[d]))
        exists.append(sub.reshape(n, slots * A))

    # Values bottom-up.
    value = [None] * (D + 2)
    for d in range(D, 0, -1):
        slots = A ** (d - 1)
        valid = exists[d][:, :, None] & (np.arange(A)[None, None, :] < arity[d][:, :, None])
        args = leaf[d]
        if d < D:
            args = np.where(is_sub[d], value[d + 1].reshape(n, slots, A), leaf[d])
        v = _apply_ops(node_op[d].reshape(-1), args.reshape(-1, A), valid.reshape(-1, A), cfg, perm)
        value[d] = v.reshape(n, slots)

    depth = np.ones(n, dtype=np.int64)
    n_leaves = np.zeros(n, dtype=np.int64)
    for d in range(1, D + 1):
        depth = np.where(exists[d].any(1), d, depth)
        valid = exists[d][:, :, None] & (np.arange(A)[None, None, :] < arity[d][:, :, None])
        n_leaves += (valid & ~is_sub[d]).reshape(n, -1).sum(1)

    # Layouts are position-major, (position, example), so each slot write is one contiguous row.
    tree_parts = {
        "exists": [None] + [x.T for x in exists[1 : D + 1]],
        "arity": [None] + [x.T for x in arity[1:]],
        "node_op": [None] + [x.T for x in node_op[1:]],
        "is_sub": [None] + [x.transpose(1, 2, 0) for x in is_sub[1:]],
        "leaf": [None] + [x.transpose(1, 2, 0) for x in leaf[1:]],
        "value": [None] + [x.T for x in value[1 : D + 1]],
    }
    answers = value[1][:, 0]
    segments = [_constant_segment(n, vocab.bos, -1)]
    segments.append(_expression_segment(cfg, tree_parts, level=D, vocab=vocab))
    if cfg.chain_of_thought:
        for t in range(D - 1, 0, -1):
            shown = depth > t
            segments.append(_constant_segment(n, vocab.equals, answers, present=shown))
            segments.append(_expression_segment(cfg, tree_parts, level=t, vocab=vocab, rows=shown))
    segments.append(_constant_segment(n, vocab.equals, answers))
    segments.append(_constant_segment(n, answers, answers))
    segments.append(_constant_segment(n, vocab.eos, -1))

    tok, val, ops_, present = (np.concatenate(x, axis=0) for x in zip(*segments))
    expr_tokens = segments[1][3].sum(0)
    out_tok, out_val, out_ops, lengths = _compact(tok, val, ops_, present, seq_len(cfg), vocab.pad)
    return Examples(
        tokens=out_tok,
        node_values=out_val,
        node_ops=out_ops,
        lengths=lengths,
        prompt_len=expr_tokens + 2,
        answers=answers.astype(np.int64),
        root_ops=node_op[1][:, 0].astype(np.int64),
        depths=depth,
        n_leaves=n_leaves,
    )


def _leaves(cfg: DataConfig, draw: np.ndarray, node_op: np.ndarray) -> np.ndarray:
    """Operand values from uniform draws over every value: a subgroup operator's operands are
    mapped onto its subgroup (its size divides k!, so they stay uniform there)."""
    if cfg.family != "perm":
        return draw
    group = groups.symmetric_group(cfg.group_k)
    for name in cfg.ops:
        dom = groups.domain(group, name)
        if len(dom) < len(group):
            here = (node_op == OPERATORS.index(name))[:, :, None]
            draw = np.where(here, dom[draw % len(dom)], draw)
    return draw


def _constant_segment(n, token, value, present=None):
    """One position holding the same kind of token in every example: (1, n) arrays."""
    tok = np.broadcast_to(np.asarray(token, dtype=np.int16), (n,)).reshape(1, n)
    val = np.broadcast_to(np.asarray(value, dtype=np.int8), (n,)).reshape(1, n)
    pres = np.ones((1, n), dtype=bool) if present is None else present.reshape(1, n)
    return tok, val, np.full((1, n), -1, dtype=np.int8), pres


def _expression_segment(cfg, t, level, vocab, rows=None):
    """(position, example) layout of every expression, levels below `level` collapsed to values."""
    A, D = cfg.max_args, cfg.max_depth
    n = t["exists"][1].shape[1]
    w, starts = _widths(A, D), _starts(A, D)
    tok = np.zeros((w[1], n), dtype=np.int16)
    val = np.full((w[1], n), -1, dtype=np.int8)
    ops = np.full((w[1], n), -1, dtype=np.int8)
    present = np.zeros((w[1], n), dtype=bool)
    op_tok = np.asarray(vocab.op_ids, dtype=np.int16)
    j = np.arange(A)
    for d in range(1, level + 1):
        s, ex = starts[d], t["exists"][d]  # (slots,), (slots, n)
        node_val, node_op = t["value"][d].astype(np.int8), t["node_op"][d].astype(np.int8)
        # A missing node's slot may hold its parent's leaf, so write only where nodes exist.
        for pos, tok_d in ((s, op_tok[t["node_op"][d]]), (s + w[d] - 1, vocab.close)):
            tok[pos] = np.where(ex, tok_d, tok[pos])
            val[pos] = np.where(ex, node_val, val[pos])
            ops[pos] = np.where(ex, node_op, ops[pos])
            present[pos] |= ex
        valid = ex[:, None, :] & (j[None, :, None] < t["arity"][d][:, None, :])  # (slots, A, n)
        leaf_pos = (s[:, None] + 1 + j[None, :] * w[d + 1]).reshape(-1)
        leaf_val = t["leaf"][d]
        if d < level:
            shown = valid & ~t["is_sub"][d]
        else:  # collapse the children below this level to their values
            shown = valid
            if d < D:
                child = t["value"][d + 1].reshape(-1, A, n)
                leaf_val = np.where(t["is_sub"][d], child, leaf_val)
        shown, leaf_val = shown.reshape(-1, n), leaf_val.reshape(-1, n)
        tok[leaf_pos] = np.where(shown, leaf_val, tok[leaf_pos])
        val[leaf_pos] = np.where(shown, leaf_val, val[leaf_pos])
        present[leaf_pos] |= shown
    if rows is not None:
        present &= rows[None, :]
    return tok, val, ops, present


def _compact(tok, val, ops, present, width, pad):
    """Squeeze out empty slots: each example's present tokens, in order, right-padded.

    Inputs are (position, example); outputs are (example, position).
    """
    n = tok.shape[1]
    pos = np.empty(present.shape, dtype=np.int16)  # row-by-row: numpy's axis-0 cumsum is slow
    running = np.full(n, -1, dtype=np.int16)
    for i, row in enumerate(present):
        running += row
        pos[i] = running
    c, r = np.nonzero(present)
    p = pos[c, r]
    out_tok = np.full((n, width), pad, dtype=np.uint8)
    out_val = np.full((n, width), -1, dtype=np.int8)
    out_ops = np.full((n, width), -1, dtype=np.int8)
    out_tok[r, p] = tok[c, r]
    out_val[r, p] = val[c, r]
    out_ops[r, p] = ops[c, r]
    return out_tok, out_val, out_ops, present.sum(0)


# ----------------------------------------------------------------------------- splits
_HASH_MULT = np.random.default_rng(0x11_57_0B5).integers(1, 2**63, size=4096, dtype=np.uint64) | 1


def row_hashes(tokens: np.ndarray) -> np.ndarray:
    """64-bit hash of each token row (a collision can only drop a training example)."""
    t = tokens.astype(np.uint64) + np.uint64(1)
    with np.errstate(over="ignore"):
        return (t * _HASH_MULT[: t.shape[1]][None, :]).sum(1, dtype=np.uint64)


def eval_ops(cfg: DataConfig, extra_ops: tuple[str, ...] = ()) -> tuple[str, ...]:
    return tuple(dict.fromkeys(cfg.ops + tuple(extra_ops)))


def make_test_sets(cfg: DataConfig, extra_ops: tuple[str, ...] = ()) -> dict[str, Examples]:
    """Held-out sets: pure single-operator trees per op, plus the mixture's own ('mixture').

    Each op's set depends only on (seed, op, tree shape), so SUM's test set is the same in
    every mixture and runs are comparable.
    """
    sets = {}
    for op in eval_ops(cfg, extra_ops):
        rng = np.random.default_rng([cfg.seed, _TEST_STREAM, OPERATORS.index(op)])
        sets[op] = sample_examples(
            cfg, cfg.test_size, rng, ops=(op,), weights=(1.0,), tree="single"
        )
    rng = np.random.default_rng([cfg.seed, _TEST_STREAM, _MIXTURE_KEY])
    sets["mixture"] = sample_examples(cfg, cfg.test_size, rng)
    return sets


def examples_from_trees(trees: list[Node], cfg: DataConfig, width: int = 0) -> Examples:
    """Parsed expressions (`listops.parse`) as the sampler lays its own out: `<bos> EXPR =
    ANSWER <eos>` (no chain of thought), every position with its node's value and operator,
    the answer and each node's value by the task's own rules (modulus or group, median rule,
    the SSUM relabelling of the data seed). Right-padded to `width` or the longest row."""
    vocab = Vocab.of(cfg)
    perm = ssum_permutation(vocab.n_values, cfg.seed)

    def walk(node, toks: list, values: list, ops: list) -> int:
        """Append the node's tokens, node values and operators; return its value."""
        if isinstance(node, int):
            toks.append(node)
            values.append(node)
            ops.append(-1)
            return node
        op, start = OPERATORS.index(node.op), len(toks)
        toks.append(vocab.op_id(node.op))
        ops.append(op)
        values.append(-1)  # the subtree's value, once its arguments have one
        args = [walk(a, toks, values, ops) for a in node.args]
        values[start] = apply_op(node.op, args, cfg.modulus, cfg.median, perm, vocab.group)
        toks.append(vocab.close)
        ops.append(op)
        values.append(values[start])
        return values[start]

    rows = []
    for tree in trees:
        toks, values, ops = [vocab.bos], [-1], [-1]
        answer = walk(tree, toks, values, ops)
        rows.append(
            (toks + [vocab.equals, answer, vocab.eos], values + [answer] * 2 + [-1], ops + [-1] * 3)
        )
    width = max([width, *(len(t) for t, _, _ in rows)])
    n = len(rows)
    ex = Examples(
        tokens=np.full((n, width), vocab.pad, dtype=np.uint8),
        node_values=np.full((n, width), -1, dtype=np.int8),
        node_ops=np.full((n, width), -1, dtype=np.int8),
        lengths=np.array([len(t) for t, _, _ in rows], dtype=np.int64),
        prompt_len=np.array([len(t) - 2 for t, _, _ in rows], dtype=np.int64),
        answers=np.array([t[-2] for t, _, _ in rows], dtype=np.int64),
        root_ops=np.array([OPERATORS.index(t.op) for t in trees], dtype=np.int64),
        depths=np.array([t.depth for t in trees], dtype=np.int64),
        n_leaves=np.array([count_leaves(t) for t in trees], dtype=np.int64),
    )
    for i, (toks, values, ops) in enumerate(rows):
        ex.tokens[i, : len(toks)] = toks
        ex.node_values[i, : len(values)] = values
        ex.node_ops[i, : len(ops)] = ops
    return ex


def heldout_mask(cfg: DataConfig, ex: Examples) -> np.ndarray:
    """Which test examples are guaranteed absent from training."""
    return ex.n_leaves >= cfg.holdout_min_leaves


def excluded_hashes(cfg: DataConfig, test_sets: dict[str, Examples]) -> np.ndarray:
    parts = [row_hashes(ex.tokens[heldout_mask(cfg, ex)]) for ex in test_sets.values()]
    return np.unique(np.concatenate(parts))


class TrainStream:
    """Deterministic training batches: batch `step` depends only on (seed, phase, step).

    Batches come from chunks of `train.stream_chunk_steps` batches, each drawn from its own
    RNG, so a resumed run regenerates exactly the batches it would have seen. Held-out test
    expressions are filtered out.
    """

    def __init__(
        self,
        data: DataConfig,
        train: TrainConfig,
        exclude: np.ndarray,
        ops: tuple[str, ...] | None = None,
        phase: int = 0,
    ):
        self.cfg, self.train, self.exclude = data, train, exclude
        self.batch_size, self.ops, self.phase = train.batch_size, ops, phase
        self._chunk_id: int | None = None
        self._chunk: Examples | None = None

    def batch(self, step: int) -> Examples:
        chunk_id, offset = divmod(step, self.train.stream_chunk_steps)
        if chunk_id != self._chunk_id:
            self._chunk, self._chunk_id = self._make_chunk(chunk_id), chunk_id
        b = self.batch_size
        return self._chunk.subset(slice(offset * b, (offset + 1) * b))

    def _make_chunk(self, chunk_id: int) -> Examples:
        t = self.train
        rng = np.random.default_rng([self.cfg.seed, _TRAIN_STREAM, self.phase, chunk_id])
        need, kept, got = t.stream_chunk_steps * self.batch_size, [], 0
        while got < need:
            draw = int(need * t.stream_oversample) + t.stream_extra_rows
            ex = sample_examples(self.cfg, draw, rng, ops=self.ops)
            ex = ex.subset(~np.isin(row_hashes(ex.tokens), self.exclude))
            kept.append(ex)
            got += len(ex)
        out = kept[0] if len(kept) == 1 else Examples.concat(kept)
        out = out.subset(slice(0, need))
        if t.length_buckets > 1:
            out = out.subset(bucket_order(out.lengths, self.batch_size, t.length_buckets, rng))
        return out


def _chunk_of(
    data: DataConfig,
    train: TrainConfig,
    exclude: np.ndarray,
    ops: tuple[str, ...] | None,
    phase: int,
    chunk_id: int,
) -> Examples:
    """One TrainStream chunk, made anywhere (in a worker process)."""
    return TrainStream(data, train, exclude, ops, phase)._make_chunk(chunk_id)


def _chunk_worker_init(parent: int) -> None:
    from mechlistops.threads import die_with_parent

    die_with_parent(parent)


class ChunkWorkers:
    """Worker processes that make training-stream chunks ahead of use (`parallel`).

    One process's numpy makes about 220,000 expressions/s; an ensemble on a GPU steps faster
    than that feeds it. Each chunk is a pure function of its stream and index, so chunks made
    in any process, in any order, are the chunks the stream itself would make: the batches,
    and the trained weights, are unchanged.
    """

    def __init__(self, workers: int, ahead: int = 2):
        import multiprocessing
        import os
        from concurrent.futures import ProcessPoolExecutor

        if workers < 1:
            raise ConfigError(f"data workers must be at least 1, got {workers}")
        # spawn, not fork: forking a process whose torch thread pool runs can deadlock
        self.pool = ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_chunk_worker_init,
            initargs=(os.getpid(),),
        )
        self.ahead = ahead  # chunks requested beyond the one in use, per stream

    def parallel(self, stream):
        """`stream` with its chunks made here; a stream of another kind (a finite pool's,
        which only indexes) is returned as it is."""
        return _ParallelStream(stream, self) if isinstance(stream, TrainStream) else stream

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


class _ParallelStream:
    """A TrainStream whose chunks come from `ChunkWorkers`, requested `ahead` chunks early."""

    def __init__(self, stream: TrainStream, workers: ChunkWorkers):
        self.stream, self.workers = stream, workers
        self._pending: dict = {}  # chunk id -> Future
        self._chunk_id: int | None = None
        self._chunk: Examples | None = None

    def _request(self, chunk_id: int) -> None:
        s = self.stream
        if chunk_id not in self._pending:
            self._pending[chunk_id] = self.workers.pool.submit(
                _chunk_of, s.cfg, s.train, s.exclude, s.ops, s.phase, chunk_id
            )

    def batch(self, step: int) -> Examples:
        s = self.stream
        chunk_id, offset = divmod(step, s.train.stream_chunk_steps)
        if chunk_id != self._chunk_id:
            for c in range(chunk_id, chunk_id + self.workers.ahead + 1):
                self._request(c)
            for c in [c for c in self._pending if c < chunk_id]:  # skipped (a resume)
                self._pending.pop(c).cancel()
            self._chunk, self._chunk_id = self._pending.pop(chunk_id).result(), chunk_id
        b = s.batch_size
        return self._chunk.subset(slice(offset * b, (offset + 1) * b))


def bucket_order(
    lengths: np.ndarray, batch_size: int, buckets: int, rng: np.random.Generator
) -> np.ndarray:
    """Row order in which each group of `buckets` batches is sorted by length and its batches
    shuffled: batches hold similar lengths, so less padding is computed."""
    b, k = batch_size, buckets
    order = []
    for start in range(0, len(lengths), b * k):
        rows = np.arange(start, min(start + b * k, len(lengths)))
        rows = rows[np.argsort(lengths[rows], kind="stable")]
        batches = [rows[i : i + b] for i in range(0, len(rows), b)]
        order.extend(batches[i] for i in rng.permutation(len(batches)))
    return np.concatenate(order)
