"""Training steps/s: the simplest HookedTransformer loop against the mechlistops trainer.

Both train the same HookedTransformer (same initial weights) on the same batches (the trainer's
own stream, trimmed to each batch's longest row; measured without and with the trainer's
default length bucketing, both variants getting identical batches in each row) in one process,
interleaved in rounds so that machine drift hits both alike:
  (a) baseline: logits = model(tokens); cross-entropy at the answer position; AdamW.
  (b) mechlistops: `train.train_step` (fast forward that runs the last block at the answer
      position only, decoupled weight decay groups, gradient clipping, AdamW).
The trainer's model stays a plain HookedTransformer: its state dict is loaded into a fresh one
and the logits compared at the end.

    python benchmarks/train_throughput.py [--layers 1 2] [--d-model 64] [--steps 40] [--rounds 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

from mechlistops.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from mechlistops.data import TrainStream, excluded_hashes, make_test_sets
from mechlistops.evaluate import to_tensors
from mechlistops.model import build_model, hooked_transformer_config_dict, make_hooked_transformer
from mechlistops.train import make_optimizer, train_step


def baseline_step(model, opt, batch) -> float:
    tokens, pos, answers = to_tensors(batch, "cpu")
    logits = model(tokens)[torch.arange(len(pos)), pos]
    loss = F.cross_entropy(logits, answers)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()


def measure(
    n_layers: int, d_model: int, steps: int, rounds: int, batch_size: int, buckets: int
) -> dict:
    cfg = RunConfig(
        DataConfig(),
        ModelConfig(n_layers=n_layers, d_model=d_model),
        TrainConfig(batch_size=batch_size, length_buckets=buckets),
    )
    exclude = excluded_hashes(cfg.data, make_test_sets(cfg.data))
    stream = TrainStream(cfg.data, cfg.train, exclude)
    batches = [stream.batch(s) for s in range(steps * rounds + 5)]
    base = build_model(cfg.model, cfg.data, seed=0)
    fast = build_model(cfg.model, cfg.data, seed=0)
    base_opt = torch.optim.AdamW(base.parameters(), lr=cfg.train.lr)
    fast_opt = make_optimizer(fast, cfg.train)
    for b in batches[:5]:  # warm up both
        baseline_step(base, base_opt, b)
        train_step(fast, fast_opt, b, cfg, "cpu")
    times = {"baseline": 0.0, "mechlistops": 0.0}
    for r in range(rounds):
        chunk = batches[5 + r * steps : 5 + (r + 1) * steps]
        t0 = time.perf_counter()
        for b in chunk:
            baseline_step(base, base_opt, b)
        t1 = time.perf_counter()
        for b in chunk:
            train_step(fast, fast_opt, b, cfg, "cpu")
        t2 = time.perf_counter()
        times["baseline"] += t1 - t0
        times["mechlistops"] += t2 - t1
    # the trained model is still a plain HookedTransformer state dict
    plain = make_hooked_transformer(hooked_transformer_config_dict(cfg.model, cfg.data))
    plain.load_state_dict(fast.state_dict())
    tokens, _, _ = to_tensors(batches[0], "cpu")
    assert torch.allclose(plain(tokens), fast(tokens))
    n = steps * rounds
    mean_len = float(np.mean([b.lengths.max() for b in batches]))
    return {
        "layers": n_layers,
        "d_model": d_model,
        "batch": batch_size,
        "tokens": mean_len,
        "baseline": n / times["baseline"],
        "mechlistops": n / times["mechlistops"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--layers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--steps", type=int, default=40, help="steps per round and variant")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument(
        "--length-buckets",
        type=int,
        nargs="+",
        default=[0, 16],
        help="stream settings to measure (0 = plain; 16 = the trainer's default)",
    )
    args = p.parse_args()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"batch {args.batch_size}, d_model {args.d_model}"
    )
    print(
        f"{'buckets':>7} {'layers':>6} {'batch len':>9} {'baseline steps/s':>17} "
        f"{'mechlistops steps/s':>20} {'ratio':>6}"
    )
    for buckets in args.length_buckets:
        for n_layers in args.layers:
            r = measure(n_layers, args.d_model, args.steps, args.rounds, args.batch_size, buckets)
            print(
                f"{buckets:>7} {r['layers']:>6} {r['tokens']:>9.1f} {r['baseline']:>17.1f} "
                f"{r['mechlistops']:>20.1f} {r['mechlistops'] / r['baseline']:>5.2f}x"
            )


if __name__ == "__main__":
    main()
