"""Sweep throughput: model-steps/s training a small grid one model at a time, against the sweep
engine, in one process on the same hardware.

  (a) one at a time: `train.train` on each member in turn, in this process (torch's default
      thread count);
  (b) the sweep engine `sweep.run_sweep` with each --engine: "processes" (parallel
      single-thread worker processes, start-up included) and "ensemble" (members of one shape
      as one batched ensemble in this process).
All train the same members (same configs, same steps) into fresh directories, on --device.

    python benchmarks/sweep_throughput.py [--d-model 16,32] [--seeds 2] [--steps 1500]
    python benchmarks/sweep_throughput.py --device cuda --engines ensemble --mixtures 4 \
        --d-model 8,16,32,64 --seeds 3 --steps 2000
"""

from __future__ import annotations

import argparse
import dataclasses
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
    args = p.parse_args()
    base = RunConfig(
        DataConfig(test_size=200),
        ModelConfig(n_layers=args.n_layers),
        TrainConfig(
            steps=args.steps,
            eval_interval=args.steps,
            save_interval=args.steps,
            device=args.device,
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
        t0 = time.perf_counter()
        for m in members:
            train(dataclasses.replace(m.config), Path(tmp) / "alone" / m.name, progress=False)
        alone = model_steps / (time.perf_counter() - t0)
        print(f"one at a time:     {alone:8.1f} model-steps/s")
        for engine in args.engines.split(","):
            t0 = time.perf_counter()
            workers = 1 if engine == "ensemble" else args.workers
            out = Path(tmp) / engine
            run_sweep(sweep, out, workers=workers, progress=False, engine=engine)
            rate = model_steps / (time.perf_counter() - t0)
            print(f"engine {engine:<10} {rate:8.1f} model-steps/s, {rate / alone:.2f}x")


if __name__ == "__main__":
    main()
