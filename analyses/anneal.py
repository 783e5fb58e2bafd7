# %% [markdown]
# # Anneal: continue finished runs with the learning rate decaying to zero
# Each run given (or every finished member of a sweep directory) is continued from its final
# weights with its own data, model and training settings, for --steps more steps, the learning
# rate rising over 100 steps and then decaying linearly to 0 with a fresh AdamW. The continued
# runs are ordinary runs (OUT/<run name>), so `mechlistops eval`, `transition`-style reads and
# every analysis open them; an interrupted anneal resumes. Used for stage 4 of
# docs/findings.md: a constant learning rate leaves SUM's held-out accuracy swinging, and the
# decay shows what the weights can do. For new runs, `--schedule wsd --decay-steps N` does the
# same in one run (constant lr, then the decay; one AdamW throughout): stage 5 measured it
# within 0.04 of this continuation, seed by seed.
# Run: `python analyses/anneal.py OUT RUN_OR_SWEEP [...] [--steps 10000] [--workers 2]`.

# %%
import argparse
import dataclasses
from pathlib import Path

from mechlistops import checkpoint as ckpt
from mechlistops.analysis.common import script_errors
from mechlistops.sweep import finished_runs, run_local


def anneal(src: str, out: str, steps: int) -> str:
    """Continue run `src` into `out` with the learning rate decaying linearly to 0."""
    import torch

    from mechlistops.train import train

    torch.set_num_threads(1)
    cfg = ckpt.load_run_config(Path(src))
    t = dataclasses.replace(
        cfg.train,
        steps=steps,
        schedule="linear",
        min_lr_frac=0.0,
        warmup_steps=min(100, steps // 10),
        eval_interval=max(1, steps // 20),
        save_interval=max(1, steps // 2),
        pretrain_ops=(),
        pretrain_steps=0,
        init_from=str(src),
        transfer="all",
    )
    if ckpt.is_finished(Path(out)):
        return out
    train(dataclasses.replace(cfg, train=t), out, resume=ckpt.holds_run(Path(out)), progress=False)
    return out


# %%
if __name__ == "__main__":
    p = argparse.ArgumentParser(description="continue runs with the learning rate decaying to 0")
    p.add_argument("out", type=Path)
    p.add_argument("runs", type=Path, nargs="+", help="runs, or sweeps (their finished members)")
    p.add_argument("--steps", type=int, default=10_000)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    with script_errors("anneal"):
        runs = finished_runs(args.runs)
    calls = [(str(r), str(args.out / r.name), args.steps) for r in runs]

    def done(i, out):
        results = ckpt.read_results(Path(out))["results"]
        accs = ", ".join(f"{k} {v['accuracy_heldout']:.2f}" for k, v in results.items())
        print(f"{runs[i]} -> {out}: held-out {accs}", flush=True)

    def failed(i, reason):
        print(f"{runs[i]}: FAILED {reason}", flush=True)

    run_local(anneal, calls, args.workers, done, failed)
