"""Finite training pools: a fixed set of N distinct expressions per operator, cycled in epochs.

Context: with a fresh sample stream a model never sees an expression twice, so there is nothing
to memorise; the paper very probably trained on a finite set for many epochs
(../shared/PAPER.md). `DataConfig.train_size = N` switches to that regime:

- Each operator's pool is N distinct single-operator expressions drawn from its own RNG
  (data seed, operator), with every expression of that operator's test set left out; or, with
  `pool_draw` "sampled", N draws of the sampler with their repeats (flat expressions, of which
  few exist, then keep the share they have in the stream). It depends on nothing else: SUM's
  pool in SUM+MAX+MED is exactly SUM alone's pool, so two such runs differ only in what is
  added. The mixture's own test set drops any expression that is in a pool, so the pools are
  disjoint from every test set.
- Training rows draw their operator from the mixture weights (as the fresh stream does), and
  each operator walks through its own pool in epochs, reshuffled every epoch by an RNG keyed on
  (data seed, operator, epoch). SUM's k-th training example is therefore the same in SUM alone
  and in any mixture; a mixture just reaches it later.
- Batch `s` depends only on (data seed, phase, s), as with the fresh stream, so resumption is
  exact: the operators' positions in their pools at a chunk are recounted from the seeded draws.
"""

from __future__ import annotations

import hashlib

import numpy as np

from mechlistops.config import OPERATORS, DataConfig, TrainConfig
from mechlistops.data import (
    _TRAIN_STREAM,
    Examples,
    bucket_order,
    eval_ops,
    make_test_sets,
    phase_weights,
    row_hashes,
    sample_examples,
)
from mechlistops.errors import ConfigError

_POOL_DRAW, _POOL_ORDER = 3, 4
_DRAW_ROUNDS = 60  # draws of 2N candidates before a pool is declared impossible to fill


def make_pool(cfg: DataConfig, op: str, test_set: Examples) -> Examples:
    """`cfg.train_size` expressions of `op`, none in `test_set`, in draw order: distinct ones,
    or (`pool_draw` "sampled") the sampler's draws with their repeats."""
    n = cfg.train_size
    rng = np.random.default_rng([cfg.seed, _POOL_DRAW, OPERATORS.index(op)])
    banned = np.unique(row_hashes(test_set.tokens))
    kept: list[Examples] = []
    have = np.zeros(0, dtype=np.uint64)
    for _ in range(_DRAW_ROUNDS):
        ex = sample_examples(cfg, max(2 * n, 4096), rng, ops=(op,), weights=(1.0,), tree="single")
        h = row_hashes(ex.tokens)
        if cfg.pool_draw == "sampled":  # every draw outside the test set, repeats too
            take = np.flatnonzero(~np.isin(h, banned))
        else:  # the first occurrence of each new expression, in draw order
            _, take = np.unique(h, return_index=True)
            take = np.sort(take)
            take = take[~np.isin(h[take], banned) & ~np.isin(h[take], have)]
        take = take[: n - len(have)]
        kept.append(ex.subset(take))
        have = np.concatenate([have, h[take]])
        if len(have) == n:
            return kept[0] if len(kept) == 1 else Examples.concat(kept)
    raise ConfigError(
        f"train_size {n:,}: found only {len(have):,} distinct {op} expressions outside its test "
        f"set under these tree settings (at most {cfg.distinct(op):,} exist); "
        "choose a smaller --train-size"
    )


def pool_digest(pool: Examples) -> str:
    """A short hash of a pool's token rows, recorded with the run."""
    return hashlib.sha256(np.ascontiguousarray(pool.tokens).tobytes()).hexdigest()[:16]


def evaluation_data(
    cfg: DataConfig, extra_ops: tuple[str, ...] = ()
) -> tuple[dict[str, Examples], dict[str, Examples]]:
    """The test sets and the training pools of a run (pools empty with a fresh stream).

    With pools, the mixture's own test set loses the rows that are in a pool."""
    sets = make_test_sets(cfg, extra_ops)
    if not cfg.train_size:
        return sets, {}
    pools = {op: make_pool(cfg, op, sets[op]) for op in eval_ops(cfg, extra_ops)}
    in_pools = np.concatenate([row_hashes(p.tokens) for p in pools.values()])
    mixture = sets["mixture"]
    sets["mixture"] = mixture.subset(~np.isin(row_hashes(mixture.tokens), in_pools))
    return sets, pools


class PoolStream:
    """Training batches from finite pools; the same interface as `data.TrainStream`.

    Rows of chunk c (chunk_steps batches) draw their operators from an RNG keyed on (seed,
    phase, c); an operator's rows take the next entries of its epoch-shuffled pool.
    A batch is rows of the phase's pools joined one after another (`rows(step)`; `take` makes
    Examples of any such rows without joining the pools), so a trainer holding the joined pools
    on its device gathers a batch there (the ensemble).
    """

    def __init__(
        self,
        data: DataConfig,
        train: TrainConfig,
        pools: dict[str, Examples],
        ops: tuple[str, ...],
        phase: int = 0,
    ):
        self.cfg, self.batch_size, self.pools, self.ops = data, train.batch_size, pools, ops
        self.phase, self.chunk_steps = phase, train.stream_chunk_steps
        self.length_buckets = train.length_buckets
        self._cum = np.cumsum(phase_weights(data, ops))[:-1]
        self._counts: list[np.ndarray] = [np.zeros(len(ops), dtype=np.int64)]  # before chunk c
        self._order: dict[tuple[str, int], np.ndarray] = {}
        self._offsets = np.cumsum([0] + [len(pools[op]) for op in ops])[:-1]
        # per row of the joined pools: what a batch's width and operator counts need
        self.lengths = np.concatenate([pools[op].lengths for op in ops])
        self.root_ops = np.concatenate([pools[op].root_ops for op in ops])
        self._chunk_id: int | None = None
        self._chunk: np.ndarray | None = None  # the chunk's rows of the joined pools
        self._examples: Examples | None = None  # the same as Examples, once asked for

    def rows(self, step: int) -> np.ndarray:
        """Batch `step` as rows of the joined pools."""
        b, offset = self.batch_size, self._chunk_at(step)
        return self._chunk[offset * b : (offset + 1) * b]

    def batch(self, step: int) -> Examples:
        b, offset = self.batch_size, self._chunk_at(step)
        if self._examples is None:
            self._examples = self.take(self._chunk)
        return self._examples.subset(slice(offset * b, (offset + 1) * b))

    def take(self, rows: np.ndarray) -> Examples:
        """Rows of the joined pools as Examples, in the order given (the pools stay apart)."""
        which = np.searchsorted(self._offsets, rows, side="right") - 1  # each row's operator
        order = np.argsort(which, kind="stable")
        parts = [
            self.pools[op].subset(rows[order[which[order] == i]] - self._offsets[i])
            for i, op in enumerate(self.ops)
        ]
        return Examples.concat(parts).subset(np.argsort(order))

    def _chunk_at(self, step: int) -> int:
        """Make step's chunk current; the step's offset in it."""
        chunk_id, offset = divmod(step, self.chunk_steps)
        if chunk_id != self._chunk_id:
            self._chunk, self._chunk_id = self._chunk_rows(chunk_id), chunk_id
            self._examples = None
        return offset

    def _rng(self, chunk_id: int) -> np.random.Generator:
        return np.random.default_rng([self.cfg.seed, _TRAIN_STREAM, self.phase, chunk_id])

    def _row_ops(self, rng: np.random.Generator) -> np.ndarray:
        need = self.chunk_steps * self.batch_size
        return np.searchsorted(self._cum, rng.random(need), side="right")

    def _counts_before(self, chunk_id: int) -> np.ndarray:
        while len(self._counts) <= chunk_id:  # recount the draws of the chunks before
            c = len(self._counts) - 1
            drawn = np.bincount(self._row_ops(self._rng(c)), minlength=len(self.ops))
            self._counts.append(self._counts[-1] + drawn)
        return self._counts[chunk_id]

    def _epoch_order(self, op: str, epoch: int) -> np.ndarray:
        key = (op, epoch)
        if key not in self._order:
            if len(self._order) > 4 * len(self.ops):
                self._order.clear()
            rng = np.random.default_rng([self.cfg.seed, _POOL_ORDER, OPERATORS.index(op), epoch])
            self._order[key] = rng.permutation(len(self.pools[op]))
        return self._order[key]

    def _pool_rows(self, op: str, start: int, count: int) -> np.ndarray:
        """Pool indices of an operator's training examples start .. start + count - 1."""
        size = len(self.pools[op])
        k = np.arange(start, start + count)
        out = np.empty(count, dtype=np.int64)
        for epoch in np.unique(k // size):
            sel = k // size == epoch
            out[sel] = self._epoch_order(op, int(epoch))[k[sel] % size]
        return out

    def _chunk_rows(self, chunk_id: int) -> np.ndarray:
        rng = self._rng(chunk_id)
        row_ops = self._row_ops(rng)
        before = self._counts_before(chunk_id)
        if len(self._counts) == chunk_id + 1:
            self._counts.append(before + np.bincount(row_ops, minlength=len(self.ops)))
        parts, where = [], []
        for i, op in enumerate(self.ops):
            rows = np.flatnonzero(row_ops == i)
            parts.append(self._offsets[i] + self._pool_rows(op, int(before[i]), len(rows)))
            where.append(rows)
        out = np.concatenate(parts)[np.argsort(np.concatenate(where), kind="stable")]
        if self.length_buckets > 1:
            lengths = self.lengths[out]
            out = out[bucket_order(lengths, self.batch_size, self.length_buckets, rng)]
        return out
