"""Many runs of one shape trained as one ensemble: parameters stacked along a leading model
dimension, one vmapped forward and backward pass for all of them.

Context / design:
- A sweep holds many runs with the same architecture and step plan that differ in seed,
  mixture, data settings or optimiser hyperparameters (learning rate, weight decay, betas,
  schedule). On a GPU one such run leaves the device idle; K of them stacked fill it.
  `ensemble_key` says which runs can train together.
- Each member keeps its own `RunState` (test sets, data stream, files, metrics, resume
  state), exactly as `train` uses it. Only the weights and the AdamW moments live stacked
  here; at the steps where a member needs its weights (snapshots, evaluation, resume state,
  the end) they are copied into its HookedTransformer and torch AdamW, so its run directory is
  the one `train` would write and either trainer can resume it.
- Each member sees its own batches (its own data seed and mixture); rows are padded to the
  longest in the ensemble, which changes nothing at the scored positions (causal attention).
  Gradient clipping and AdamW are applied per member, written out in tensor ops so the
  hyperparameters can differ by member. A member equals its run trained alone up to float
  rounding (tests hold it to 1e-5 on CPU).
"""

from __future__ import annotations

import json
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import Tensor
from torch.func import vmap
from tqdm.auto import tqdm

from mechlistops.config import RunConfig
from mechlistops.forward import logits_from_params
from mechlistops.model import hooked_transformer_config_dict
from mechlistops.train import RunState, TrainResult, loss_from_logits, loss_inputs

ADAM_EPS = 1e-8  # torch.optim.AdamW's default, as `train.make_optimizer` uses it


def ensemble_key(cfg: RunConfig) -> str | None:
    """Runs with equal keys can train as one ensemble; None: this run must train alone."""
    if cfg.model.looped:  # shared blocks would come apart when stacked by name
        return None
    t = cfg.train
    shape = {
        "model": hooked_transformer_config_dict(cfg.model, cfg.data),
        "steps": [t.pretrain_steps, t.steps],
        "batch_size": t.batch_size,
        "loss": [t.loss_on, cfg.data.chain_of_thought],
        "device": t.device,
    }
    return json.dumps(shape, sort_keys=True, default=str)


def train_ensemble(
    members: list[tuple[RunConfig, str | Path]], progress: bool = True
) -> list[TrainResult]:
    """Train (or resume) every (config, run_dir) together; results in the order given.

    All configs must share one `ensemble_key`. Run directories holding a config resume; members
    resumed at different steps train as separate ensembles.
    """
    keys = {ensemble_key(cfg) for cfg, _ in members}
    if len(keys) != 1 or None in keys:
        raise ValueError("ensemble members must share one ensemble_key (see ensemble_key)")
    runs = [RunState(cfg, d, resume=(Path(d) / "config.json").is_file()) for cfg, d in members]
    by_step: dict[int, list[RunState]] = defaultdict(list)
    for run in runs:
        by_step[run.step].append(run)
    done = {}
    for group in by_step.values():
        for run, result in zip(group, _train_together(group, progress)):
            done[id(run)] = result
    return [done[id(run)] for run in runs]


def _along(values: Tensor, like: Tensor) -> Tensor:
    """(K,) per-member values shaped to broadcast against a stacked (K, ...) tensor."""
    return values.view(-1, *[1] * (like.dim() - 1))


def _train_together(runs: list[RunState], progress: bool) -> list[TrainResult]:
    template, cfgs = runs[0].model, [r.cfg for r in runs]
    t, device = cfgs[0].train, runs[0].device
    # AdamW's parameter order in `make_optimizer`: matrices (decayed) first, then the rest.
    named = dict(template.named_parameters())
    names = [n for n, p in named.items() if p.dim() >= 2] + [
        n for n, p in named.items() if p.dim() < 2
    ]
    decayed = {n for n in names if named[n].dim() >= 2}
    with torch.no_grad():
        params = {
            n: torch.stack([r.model.get_parameter(n) for r in runs]).requires_grad_() for n in names
        }
        moments = {
            n: [
                torch.stack([_moment(r, n, key) for r in runs]) for key in ("exp_avg", "exp_avg_sq")
            ]
            for n in names
        }
    adam_step = _adam_step(runs[0], names[0])

    def per_member(values: list[float]) -> Tensor:  # one value per member, on the device
        return torch.tensor(values, dtype=torch.float32, device=device)

    hyper = {
        name: per_member([getattr(c.train, name) for c in cfgs])
        for name in ("beta1", "beta2", "weight_decay")
    }
    clip = per_member([c.train.grad_clip or float("inf") for c in cfgs])

    def member_logits(p, tokens, pos):
        return logits_from_params(p, template.cfg, tokens, pos, fused_attention=False)

    forward = {  # scored positions given (the answer), or every position (None)
        True: vmap(member_logits, in_dims=(0, 0, 0)),
        False: vmap(member_logits, in_dims=(0, 0, None)),
    }

    def inputs_at(step: int):
        """The members' batches for one step, padded to one width and stacked on the device."""
        phase = runs[0].phase_at(step)
        batches = [r.batch(phase, step) for r in runs]
        width = max(int(b.lengths.max()) for b in batches)
        parts = [loss_inputs(b, r.cfg, device, width) for b, r in zip(batches, runs)]
        return tuple(None if part[0] is None else torch.stack(part) for part in zip(*parts))

    # The next step's batches are made in a thread while this step computes (numpy and torch
    # release the GIL): on a GPU, data generation on the CPU overlaps the device's work.
    # Each stream is only ever read from that thread, in step order, so batches are unchanged.
    prefetch = ThreadPoolExecutor(1, thread_name_prefix="ensemble-data")
    step = runs[0].step
    lrs = [0.0] * len(runs)
    upcoming = prefetch.submit(inputs_at, step) if step < t.total_steps else None
    bar = tqdm(
        total=t.total_steps,
        initial=step,
        disable=not progress,
        desc=f"ensemble of {len(runs)}",
        dynamic_ncols=True,
    )
    try:
        while step < t.total_steps:
            phase = runs[0].phase_at(step)
            if step == phase.start and step > 0:  # a fresh AdamW for the main phase
                for n in names:
                    for m in moments[n]:
                        m.zero_()
                adam_step = 0
            lrs = [r.lr(phase, step) for r in runs]
            lr = per_member(lrs)
            tokens, pos, targets, mask = upcoming.result()
            if step + 1 < t.total_steps:
                upcoming = prefetch.submit(inputs_at, step + 1)
            logits = forward[pos is not None](params, tokens, pos)
            losses = loss_from_logits(logits, targets, mask)
            grads = torch.autograd.grad(losses.sum(), [params[n] for n in names])
            adam_step += 1
            with torch.no_grad():
                _clip_per_member(grads, clip)
                _adamw(params, moments, names, grads, decayed, lr, hyper, adam_step)
            step += 1
            for k, (run, loss) in enumerate(zip(runs, losses.tolist())):
                if run.due(step):
                    _hand_back(run, k, params, moments, names, adam_step, lrs[k])
                run.record(step, phase, lrs[k], loss)
            bar.update(1)
            if runs[0].evaluates(step):
                bar.set_postfix_str(runs[0].summary() + (" ..." if len(runs) > 1 else ""))
    finally:
        prefetch.shutdown(cancel_futures=True)
    bar.close()
    for k, run in enumerate(runs):
        _hand_back(run, k, params, moments, names, adam_step, lrs[k])
    return [run.finish() for run in runs]


def _moment(run: RunState, name: str, key: str) -> Tensor:
    p = run.model.get_parameter(name)
    state = run.opt.state.get(p, {})
    return state[key].detach().clone() if key in state else torch.zeros_like(p)


def _adam_step(run: RunState, name: str) -> int:
    state = run.opt.state.get(run.model.get_parameter(name), {})
    return int(state["step"]) if "step" in state else 0


def _clip_per_member(grads: tuple[Tensor, ...], clip: Tensor) -> None:
    """`clip_grad_norm_` for each member: scale its gradients to norm <= its clip value."""
    norms = torch.stack([g.flatten(1).norm(dim=1) for g in grads]).norm(dim=0)
    coef = (clip / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(_along(coef, g))


def _adamw(params, moments, names, grads, decayed, lr: Tensor, hyper, step: int) -> None:
    """torch's AdamW update (decoupled weight decay on matrices), with (K,) hyperparameters:
    one value per member."""
    b1, b2 = hyper["beta1"], hyper["beta2"]
    step_size = lr / (1 - b1**step)
    bias2_sqrt = (1 - b2**step).sqrt()
    decay = 1 - lr * hyper["weight_decay"]
    for n, g in zip(names, grads):
        p, (m, v) = params[n], moments[n]
        if n in decayed:
            p.mul_(_along(decay, p))
        m.lerp_(g, _along(1 - b1, p))
        v.mul_(_along(b2, p)).add_(_along(1 - b2, p) * g * g)
        denom = v.sqrt() / _along(bias2_sqrt, p) + ADAM_EPS
        p.sub_(_along(step_size, p) * m / denom)


def _hand_back(run: RunState, k: int, params, moments, names, adam_step: int, lr: float) -> None:
    """Copy member k's weights and AdamW state into its own model and optimizer."""
    with torch.no_grad():
        for n in names:
            p = run.model.get_parameter(n)
            p.copy_(params[n][k])
            m, v = moments[n]
            run.opt.state[p] = {
                "step": torch.tensor(float(adam_step)),
                "exp_avg": m[k].clone(),
                "exp_avg_sq": v[k].clone(),
            }
    for group in run.opt.param_groups:
        group["lr"] = lr
