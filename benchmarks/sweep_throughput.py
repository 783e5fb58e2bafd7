"""Sweep throughput: model-steps/s training a small grid one model at a time, against the sweep
engine, in one process on the same hardware.

  (a) one at a time: `train.train` on each member in turn, in this process (torch's default
      thread count);
  (b) the sweep engine `sweep.run_sweep` with each --engine: "processes" (parallel
      single-thread worker processes, start-up included) and "ensemble" (members of one shape
      as one batched ensemble in this process).
All train the same members (same configs, same steps) into fresh directories, on --device.

    python benchmarks/sweep_throughput.py [--d-model 16,32] [--seeds 2] [--steps 1500]
    # the GPU target: 10 sizes (5k-410k parameters) x 3 seeds x 4 mixtures, 10k steps;
    # the one-at-a-time baseline trains one member per size (the grid's average model)
    python benchmarks/sweep_throughput.py --device cuda --engines ensemble --mixtures 4 \
        --d-model 12,16,24,32,40,48,64,80,96,128 --seeds 3 --steps 10000 --baseline-per-size
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from mechlistops.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from mechlistops.sweep import SweepConfig, run_sweep
from mechlistops.train import train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--d-model", default="16,32")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--n-layers", type=int, default=2)
    p.add_argument("--workers", type=int, default=0, help="sweep processes (0: one per core)")
    p.add_argument("--engines", default="processes,ensemble")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--mixtures", type=int, default=1, help="how many of SUM+MAX+MED, SUM, MAX+MED, SUM+NADD"
    )
    p.add_argument(
        "--baseline-per-size",
        action="store_true",
        help="time one-at-a-time training on one member per size (every size is equally "
        "common in the grid, so its model-steps/s is the grid's), not on every member",
    )
    args = p.parse_args()
    base = RunConfig(
        DataConfig(test_size=200),
        ModelConfig(n_layers=args.n_layers),
        TrainConfig(
            steps=args.steps,
            eval_interval=args.steps,
            save_interval=args.steps,
        ),
    )
    mixtures = (("SUM", "MAX", "MED"), ("SUM",), ("MAX", "MED"), ("SUM", "NADD"))
    sweep = SweepConfig(
        mixtures[: args.mixtures],
        tuple(int(d) for d in args.d_model.split(",")),
        args.seeds,
        base,
    )
    members = sweep.members()
    model_steps = len(members) * args.steps
    print(
        f"{len(members)} models x {args.steps} steps, {args.n_layers} layers, "
        f"d_model {args.d_model}; torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    with tempfile.TemporaryDirectory() as tmp:
        baseline = members
        if args.baseline_per_size:
            baseline = list({m.config.model.d_model: m for m in reversed(members)}.values())
        t0 = time.perf_counter()
        for m in baseline:
            train(m.config, Path(tmp) / "alone" / m.name, progress=False, device=args.device)
        seconds = time.perf_counter() - t0
        alone = len(baseline) * args.steps / seconds
        print(
            f"one at a time:     {alone:8.1f} model-steps/s "
            f"({len(baseline)} models in {seconds:.1f} s)"
        )
        for engine in args.engines.split(","):
            t0 = time.perf_counter()
            workers = 1 if engine == "ensemble" else args.workers
            out = Path(tmp) / engine
            run_sweep(
                sweep, out, workers=workers, progress=False, engine=engine, device=args.device
            )
            seconds = time.perf_counter() - t0
            rate = model_steps / seconds
            print(
                f"engine {engine:<10} {rate:8.1f} model-steps/s, {rate / alone:.2f}x "
                f"({len(members)} models in {seconds:.1f} s)"
            )


if __name__ == "__main__":
    main()
