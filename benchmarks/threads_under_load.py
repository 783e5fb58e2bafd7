"""Training steps/s when another process holds a core, against a quiet machine.

Each setting trains the default model (`mechlistops train`'s defaults: SUM+MAX+MED, 2 layers,
d_model 64) for --steps steps of `train.train_step` in a fresh child process (the OpenMP wait
policy is read when torch loads), first on a quiet machine and then beside a busy process
that spins on one core:
  torch default  all usable cores as threads, OMP_WAIT_POLICY unset (threads spin)
  passive        all cores, OMP_WAIT_POLICY=PASSIVE (threads sleep at once)
  auto (shipped) `threads.choose()`'s count (the cores free at start) and a spin count of
                 1000 (`threads.WAIT_ENV`): what the command line does
  shipped, 2 thr all cores and the shipped spin count: a run started on a quiet machine
                 when the other process arrives later
  1 thread       one thread
Printed: steps/s per setting, quiet and busy, and busy / quiet-torch-default.

    python benchmarks/threads_under_load.py [--steps 60] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

SETTINGS = {  # name -> (threads: "all" | "auto" | count, wait policy or None)
    "torch default": ("all", None),
    "passive": ("all", "PASSIVE"),
    "auto (shipped)": ("auto", "GOMP_SPINCOUNT=1000"),
    "shipped, 2 thr": ("all", "GOMP_SPINCOUNT=1000"),
    "1 thread": (1, None),
}
EXTRA = {  # settings tried with --extra: libgomp's spin count before a waiting thread sleeps
    "spin 1e4": ("all", "GOMP_SPINCOUNT=10000"),
    "spin 1e5": ("all", "GOMP_SPINCOUNT=100000"),
}


def child(steps: int, threads: str) -> None:
    """Train `steps` steps and print {"steps_per_s", "threads"} (runs in its own process)."""
    import torch

    from mechlistops import threads as th
    from mechlistops.config import RunConfig
    from mechlistops.data import TrainStream, excluded_hashes, make_test_sets
    from mechlistops.model import build_model
    from mechlistops.train import make_optimizer, train_step

    n = (
        th.usable_cores()
        if threads == "all"
        else th.choose(None if threads == "auto" else int(threads)).threads
    )
    torch.set_num_threads(n)
    cfg = RunConfig()
    stream = TrainStream(cfg.data, cfg.train, excluded_hashes(cfg.data, make_test_sets(cfg.data)))
    batches = [stream.batch(s) for s in range(steps + 3)]
    model = build_model(cfg.model, cfg.data, seed=0)
    opt = make_optimizer(model, cfg.train)
    for b in batches[:3]:
        train_step(model, opt, b, cfg, "cpu")
    t0 = time.perf_counter()
    for b in batches[3:]:
        train_step(model, opt, b, cfg, "cpu")
    print(json.dumps({"steps_per_s": steps / (time.perf_counter() - t0), "threads": n}))


def run_setting(name: str, steps: int) -> dict:
    threads, policy = {**SETTINGS, **EXTRA}[name]
    drop = ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    if policy and "=" in policy:
        key, value = policy.split("=")
        env[key] = value
    elif policy:
        env["OMP_WAIT_POLICY"] = policy
    cmd = [sys.executable, __file__, "--child", str(threads), "--steps", str(steps)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--repeats", type=int, default=2, help="best of N per setting")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--extra", action="store_true", help="also libgomp spin counts")
    args = p.parse_args()
    names = list(SETTINGS) + (list(EXTRA) if args.extra else [])
    if args.child:
        child(args.steps, args.child)
        return
    from mechlistops.threads import idle_cores, usable_cores

    print(f"{usable_cores()} usable cores; idle now: {idle_cores():.2f}; {args.steps} steps each")
    results = {}
    for load in ("quiet", "busy"):
        spinner = None
        if load == "busy":
            spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            time.sleep(1.0)
        try:
            for name in names:
                runs = [run_setting(name, args.steps) for _ in range(args.repeats)]
                best = max(runs, key=lambda r: r["steps_per_s"])
                results[(load, name)] = best
        finally:
            if spinner:
                spinner.kill()
                spinner.wait()
    base = results[("quiet", "torch default")]["steps_per_s"]
    print(
        f"{'setting':<15} {'threads q/b':>11} {'quiet steps/s':>14} {'busy steps/s':>13} "
        f"{'busy / quiet default':>21}"
    )
    for name in names:
        q, b = results[("quiet", name)], results[("busy", name)]
        print(
            f"{name:<15} {q['threads']:>5}/{b['threads']:<5} {q['steps_per_s']:>14.1f} "
            f"{b['steps_per_s']:>13.1f} {b['steps_per_s'] / base:>20.2f}x"
        )


if __name__ == "__main__":
    main()
