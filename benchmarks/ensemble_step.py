"""What one training step costs: torch ops dispatched and wall time, an ensemble's step against
one model's, in this process.

On a GPU, models this small are bound by the host: each torch op is a kernel launch and some
microseconds of Python and dispatch, whatever the tensor sizes. The number of ops per step is
therefore the cost that carries over from a CPU to a GPU, and it does not depend on the
machine's load; the times are for this machine. Two shapes: the overhead-bound floor (batch 2,
d_model 8, 2 layers: almost no arithmetic) and the GPU suite's study (12 members, d_model 16,
one single-head block applied twice, pools of 300). Each step is timed to the end of its work
(its losses read); the median over the steps after the first 10, best of --repeats trainings.

    python benchmarks/ensemble_step.py [--device cpu] [--steps 60] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_suite import _config  # noqa: E402

from mechlistops import ensemble, train  # noqa: E402

POOL = {"tree": "single", "train_size": 300, "min_args": 3}
SHAPES = {  # name: (members, d_model, config overrides)
    "floor: d_model 8, 2 layers, batch 2": (2, 8, {"train": {"batch_size": 2}}),
    "study: d_model 16, looped single head, pools": (
        12,
        16,
        {"data": POOL, "model": {"looped": True, "n_heads": 1}},
    ),
}


class _CountOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        return func(*args, **(kwargs or {}))


class _Probe:
    """Wraps a stepper class's `step`: counts the ops of one step, or times every step."""

    def __init__(self, cls):
        self.cls, self.step = cls, cls.step
        self.count, self.ops, self.seconds = False, 0, []
        probe = self

        def step(stepper, *args):
            if probe.count:
                with _CountOps() as counter:
                    scores = probe.step(stepper, *args)
                probe.ops = counter.ops
                return scores
            started = time.perf_counter()
            scores = probe.step(stepper, *args)
            scores.read()  # the step's work done, on any device
            probe.seconds.append(time.perf_counter() - started)
            return scores

        cls.step = step

    def measure(self, fit, steps: int, repeats: int) -> tuple[int, float]:
        """(ops in one step, median seconds per step) of `fit(folder)`."""
        with tempfile.TemporaryDirectory() as tmp:
            self.count = True
            fit(Path(tmp) / "count")
            self.count = False
            best = []
            for r in range(repeats):
                self.seconds = []
                fit(Path(tmp) / f"r{r}")
                best.append(statistics.median(self.seconds[min(10, steps // 2) :]))
        return self.ops, min(best)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    alone, stacked = _Probe(train._Alone), _Probe(ensemble._Stacked)
    print(f"torch {torch.__version__}, {args.device}, 1 thread; ops and median ms per step")
    for name, (k, d, over) in SHAPES.items():
        cfgs = [_config(d, args.steps, seed=s, **over) for s in range(k)]

        def one(folder, cfg=cfgs[0]):
            train.train(cfg, folder, progress=False, device=args.device)

        def many(folder, cfgs=cfgs):
            members = [(c, folder / f"m{i}") for i, c in enumerate(cfgs)]
            ensemble.train_ensemble(members, False, args.device)

        ops1, s1 = alone.measure(one, args.steps, args.repeats)
        opsk, sk = stacked.measure(many, args.steps, args.repeats)
        print(f"{name}")
        print(f"  one model:          {ops1:5d} ops  {s1 * 1e3:7.2f} ms")
        print(
            f"  ensemble of {k:2d}:     {opsk:5d} ops  {sk * 1e3:7.2f} ms   "
            f"{opsk / ops1:.2f}x the ops, {k * s1 / sk:.2f}x the model-steps/s"
        )


if __name__ == "__main__":
    main()
