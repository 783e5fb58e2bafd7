"""ListOps generation + tokenisation speed: the vectorised sampler against a one-at-a-time
Python baseline (recursive sampling, evaluation and tokenisation, as one would first write it),
in one process.

    python benchmarks/data_throughput.py [--n 1000000] [--baseline-n 50000]
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--baseline-n", type=int, default=50_000)
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


if __name__ == "__main__":
    main()
