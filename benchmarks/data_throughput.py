"""ListOps generation + tokenisation speed: the vectorised sampler against a one-at-a-time
Python baseline (recursive sampling, evaluation and tokenisation, as one would first write it),
in one process; then an ensemble's feed: the batches of 12 training streams (4 mixtures x 3
seeds, as one size of the 120-run sweep), step by step, made in this process against made
ahead by `data.ChunkWorkers` processes; last, the same for finite pools: a step's inputs made
on the host (rows as Examples, then tensors, as fresh streams' are) against gathered from the
pools held on the device (`ensemble.DevicePools`, what the ensemble does).

    python benchmarks/data_throughput.py [--n 1000000] [--baseline-n 50000]
        [--feed-steps 1024] [--feed-workers 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np

from mechlistops.config import DataConfig
from mechlistops.data import sample_examples, seq_len
from mechlistops.listops import Node, Vocab, apply_op, ssum_permutation


def python_baseline(cfg: DataConfig, n: int, seed: int = 0) -> list[list[int]]:
    """Straightforward per-example generation: build a tree, evaluate it, tokenise it."""
    rng, vocab = random.Random(seed), Vocab(cfg.modulus)
    perm = ssum_permutation(cfg.modulus, cfg.seed)

    def tree(depth):
        op = rng.choice(cfg.ops)
        args = [
            tree(depth + 1)
            if depth < cfg.max_depth and rng.random() < cfg.branch_prob
            else rng.randrange(cfg.modulus)
            for _ in range(rng.randint(cfg.min_args, cfg.max_args))
        ]
        return Node(op, args)

    def value(t):
        return (
            t
            if isinstance(t, int)
            else apply_op(t.op, [value(a) for a in t.args], cfg.modulus, cfg.median, perm)
        )

    def tokens(t, out):
        if isinstance(t, int):
            out.append(t)
            return
        out.append(vocab.op_id(t.op))
        for a in t.args:
            tokens(a, out)
        out.append(vocab.close)

    rows = []
    width = seq_len(cfg)
    for _ in range(n):
        t = tree(1)
        row = [vocab.bos]
        tokens(t, row)
        row += [vocab.equals, value(t), vocab.eos]
        rows.append(row + [vocab.pad] * (width - len(row)))
    return rows


def feed_rate(steps: int, workers: int) -> float:
    """Ensemble steps/s of 12 streams' batches (every stream's batch for a step, then the
    next step), in this process (workers 0) or from `workers` ChunkWorkers processes."""
    from mechlistops.config import TrainConfig
    from mechlistops.data import ChunkWorkers, TrainStream

    mixtures = (("SUM",), ("MAX",), ("MED",), ("SUM", "MAX", "MED"))
    train = TrainConfig()
    streams = [
        TrainStream(DataConfig(ops=ops, seed=seed), train, np.array([], np.uint64), ops)
        for ops in mixtures
        for seed in range(3)
    ]
    pool = ChunkWorkers(workers) if workers else None
    if pool:
        streams = [pool.parallel(s) for s in streams]
        for s in streams:  # start-up (spawning the processes) is not the rate
            s.batch(0)
    t0 = time.perf_counter()
    for step in range(1 if pool else 0, steps):
        for s in streams:
            s.batch(step)
    rate = (steps - (1 if pool else 0)) / (time.perf_counter() - t0)
    if pool:
        pool.close()
    return rate


def pool_feed(steps: int, device: str = "cpu", pool: int = 3000) -> dict[str, float]:
    """Ensemble steps/s of the loss inputs of 12 pool streams (4 mixtures x 3 seeds, `pool`
    expressions per operator, single-operator trees of 3-5 operands, as the study's): made on
    the host against gathered on `device`. Both give the same tensors (tests/test_ensemble.py)."""
    import torch

    from mechlistops.config import RunConfig, TrainConfig
    from mechlistops.ensemble import DevicePools, stacked_inputs
    from mechlistops.pools import PoolStream, evaluation_data

    mixtures = (("SUM",), ("MAX",), ("MED",), ("SUM", "MAX", "MED"))
    cfgs = [
        RunConfig(DataConfig(ops=ops, seed=seed, tree="single", train_size=pool, min_args=3))
        for ops in mixtures
        for seed in range(3)
    ]
    train = TrainConfig()
    streams = [PoolStream(c.data, train, evaluation_data(c.data)[1], c.data.ops) for c in cfgs]
    on_device = DevicePools(streams, device)
    slots = list(range(len(streams)))

    def sync():
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()

    def host(step):
        return stacked_inputs([s.batch(step) for s in streams], cfgs[0], device)

    def gathered(step):
        return on_device.inputs(slots, [s.rows(step) for s in streams], cfgs[0], None)

    rates = {}
    for name, make in (("host", host), ("device", gathered)):
        make(0)  # the first chunk of every stream, and any lazy start-up, untimed
        sync()
        t0 = time.perf_counter()
        for step in range(1, steps):
            make(step)
        sync()
        rates[name] = (steps - 1) / (time.perf_counter() - t0)
    return rates


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--baseline-n", type=int, default=50_000)
    p.add_argument("--feed-steps", type=int, default=1024)
    p.add_argument("--feed-workers", type=int, default=2)
    p.add_argument("--device", default="cpu", help="where the pools are held (cpu, cuda)")
    args = p.parse_args()
    cfg = DataConfig()
    t0 = time.perf_counter()
    python_baseline(cfg, args.baseline_n)
    base = args.baseline_n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    ex = sample_examples(cfg, args.n, np.random.default_rng(0))
    seconds = time.perf_counter() - t0
    fast = args.n / seconds
    print(f"mixture {','.join(cfg.ops)}, depth <= {cfg.max_depth}, args <= {cfg.max_args}")
    print(f"python baseline: {base:,.0f} expressions/s ({args.baseline_n:,} timed)")
    print(
        f"mechlistops:     {fast:,.0f} expressions/s; {len(ex):,} in {seconds:.2f} s "
        f"(tokens, answers and per-position node values)"
    )
    print(f"ratio: {fast / base:.1f}x")
    alone = feed_rate(args.feed_steps, 0)
    fed = feed_rate(args.feed_steps, args.feed_workers)
    print(f"ensemble feed, 12 streams, {args.feed_steps} steps:")
    print(f"  made in this process:        {alone:,.1f} steps/s")
    print(
        f"  made by {args.feed_workers} worker processes:  {fed:,.1f} steps/s, {fed / alone:.2f}x"
    )
    pools = pool_feed(args.feed_steps, args.device)
    print(f"pool feed, 12 pool streams (3,000 per operator), {args.feed_steps} steps:")
    print(f"  made on the host:            {pools['host']:,.1f} steps/s")
    label = f"gathered on {args.device}:"
    print(f"  {label:<29}{pools['device']:,.1f} steps/s, {pools['device'] / pools['host']:.2f}x")


if __name__ == "__main__":
    main()
