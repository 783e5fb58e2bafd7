"""Transition search: bisection against the full grid, on one real study, in one process.

Both train the same sweep (same members, same steps, one run at a time in this process on one
thread) into fresh directories: (a) the grid trains every size of every (mixture, seed);
(b) `sweep --search bisect` trains the sizes its bisection asks for. Printed: runs and
seconds of each, their ratio, and per (mixture, seed) the boundary each finds (the smallest
size whose accuracy passes), which must agree where accuracy rises with size.

    python benchmarks/search_vs_grid.py [--mixtures MED,MAX+MED] [--d-model 4,6,8,12,16,24]
        [--seeds 2] [--steps 1500] [--threshold 0.9]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from mechlistops import checkpoint as ckpt
from mechlistops.config import DataConfig, ModelConfig, RunConfig, TrainConfig, parse_ops
from mechlistops.search import run_search
from mechlistops.sweep import SweepConfig, run_sweep


def grid_boundaries(sweep: SweepConfig, out: Path, threshold: float) -> dict:
    """Per (mixture, seed): the smallest d_model whose held-out accuracy passes, from the grid."""
    found: dict[tuple[str, int], int | None] = {}
    for m in sorted(sweep.members(), key=lambda m: m.config.model.d_model):
        mixture = "+".join(m.config.data.ops)
        key = (mixture, m.config.train.seed)
        acc = ckpt.read_results(out / m.name)["results"][m.config.data.ops[0]]["accuracy_heldout"]
        found.setdefault(key, None)
        if found[key] is None and acc >= threshold:
            found[key] = m.config.model.d_model
    return found


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mixtures", default="MED,MAX+MED")
    p.add_argument("--d-model", default="4,6,8,12,16,24")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--threshold", type=float, default=0.9)
    args = p.parse_args()
    torch.set_num_threads(1)
    base = RunConfig(
        DataConfig(tree="single", test_size=500),
        ModelConfig(n_heads=2),
        train=TrainConfig(steps=args.steps, eval_interval=args.steps, save_interval=args.steps),
    )
    mixtures = tuple(parse_ops(m.replace("+", ",")) for m in args.mixtures.split(","))
    d_models = tuple(int(d) for d in args.d_model.split(","))
    sweep = SweepConfig(mixtures, d_models, args.seeds, base)
    print(
        f"{len(sweep.members())} grid runs: {args.mixtures} x d_model {args.d_model} x "
        f"{args.seeds} seeds, {args.steps} steps, 2 layers of 2 heads; threshold "
        f"{args.threshold} (held-out)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run_sweep(sweep, Path(tmp) / "grid", workers=1, progress=False, engine="processes")
        grid_s = time.perf_counter() - t0
        grid = grid_boundaries(sweep, Path(tmp) / "grid", args.threshold)
        t0 = time.perf_counter()
        found = run_search(sweep, Path(tmp) / "bisect", args.threshold, workers=1)
        bisect_s = time.perf_counter() - t0
    runs = sum(r.runs for r in found)
    n = len(sweep.members())
    print(f"grid:   {n:3d} runs in {grid_s:7.1f} s")
    print(
        f"bisect: {runs:3d} runs in {bisect_s:7.1f} s   ({n / runs:.2f}x fewer runs, "
        f"{grid_s / bisect_s:.2f}x less time)"
    )
    print("boundary (smallest passing d_model) per mixture and seed, grid | bisect:")
    agree = 0
    for r in found:
        g = grid[(r.mixture, r.seed)]
        agree += g == r.boundary_d_model
        flag = "" if r.monotone else "  (bisection flagged: not monotone)"
        print(f"  {r.mixture:>8} seed {r.seed}: {g} | {r.boundary_d_model}{flag}")
    print(f"same boundary in {agree} of {len(found)} searches")


if __name__ == "__main__":
    main()
