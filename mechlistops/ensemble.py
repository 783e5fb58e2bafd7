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
  rounding (tests hold it to 1e-5 on CPU; 1e-4 where AdamW grows the rounding to 8e-5).
  AdamW grows it most in weights whose gradient cancels to about its eps (1e-8): there a
  rounding difference becomes a tenth of the learning rate, so the tests compare the two
  trainers with eps 1e-6 in both (tests/conftest.py, wide_adam_eps).
- Finite training pools (`DataConfig.train_size`) are put on the device once per phase, every
  member's in one tensor; a step's batches are then one gather of pool rows there, and only the row
  indices (members x batch) cross from the CPU: the same batches as the streams' own.
- `compile` (off by default): the member forward pass with its loss, and the clipping and
  AdamW update, each through `torch.compile` ("default"; "reduce-overhead" adds CUDA graphs
  on a GPU). Tiny models leave a GPU waiting on Python and kernel launches; compiling fuses
  the many small ops. Batches are then padded to the model's context length, so every step
  has one shape and nothing recompiles. The GPU suite measures whether it pays.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.func import vmap

from mechlistops import checkpoint as ckpt
from mechlistops.config import COMPILE_MODES, RunConfig
from mechlistops.data import ChunkWorkers, Examples
from mechlistops.evaluate import (
    LOSS_FIELDS,
    hits_from_logits,
    loss_from_logits,
    loss_inputs,
    loss_tensors,
)
from mechlistops.forward import logits_from_params
from mechlistops.model import hooked_transformer_config_dict, to_device
from mechlistops.pools import PoolStream
from mechlistops.train import Phase, RunState, Scores, TrainResult, decay_groups, drive

log = logging.getLogger(__name__)
ADAM_EPS = 1e-8  # torch.optim.AdamW's default, as `train.make_optimizer` uses it
# Seconds the training loop waited for the prefetch thread's batches, and steps taken, summed
# over every ensemble in this process, and the seconds of each ensemble's first WARMUP_STEPS
# steps (where compiling happens) (benchmarks/gpu_suite.py reads them: waiting for data is time
# the device sits idle).
TIMINGS = {"data_wait_s": 0.0, "steps": 0, "warmup_s": 0.0}
WARMUP_STEPS = 3


def ensemble_key(cfg: RunConfig) -> str | None:
    """Runs with equal keys can train as one ensemble; None: this run must train alone."""
    t = cfg.train
    shape = {
        "model": hooked_transformer_config_dict(cfg.model, cfg.data),
        "looped": cfg.model.looped,
        "steps": [t.pretrain_steps, t.steps],
        "batch_size": t.batch_size,
        "loss": [t.loss_on, cfg.data.chain_of_thought],
    }
    return json.dumps(shape, sort_keys=True, default=str)


def train_ensemble(
    members: list[tuple[RunConfig, str | Path]],
    progress: bool = True,
    device: str = "auto",
    data_workers: int = 0,
    compile: str = "off",
) -> list[TrainResult]:
    """Train (or resume) every (config, run_dir) together on `device`; results in the order
    given. `data_workers` > 0: the members' training streams are made ahead in that many
    worker processes (`data.ChunkWorkers`; the same batches), else in one thread.
    `compile`: one of COMPILE_MODES (see the module docstring); the same training up to float
    rounding.

    All configs must share one `ensemble_key`. Run directories holding a run resume; members
    resumed at different steps train as separate ensembles.
    """
    if compile not in COMPILE_MODES:
        raise ValueError(f"compile must be one of {COMPILE_MODES}, got {compile!r}")
    keys = {ensemble_key(cfg) for cfg, _ in members}
    if len(keys) != 1 or None in keys:
        raise ValueError("ensemble members must share one ensemble_key (see ensemble_key)")
    runs = [RunState(cfg, d, ckpt.holds_run(d), device) for cfg, d in members]
    by_step: dict[int, list[RunState]] = defaultdict(list)
    for run in runs:
        by_step[run.step].append(run)
    done = {}
    workers = ChunkWorkers(data_workers) if data_workers else None
    try:
        for group in by_step.values():
            if workers:
                for run in group:
                    run.streams = {k: workers.parallel(s) for k, s in run.streams.items()}
            for run, result in zip(group, drive(group, _Stacked(group, compile), progress)):
                done[id(run)] = result
    finally:
        if workers:
            workers.close()
    return [done[id(run)] for run in runs]


class _Layout:
    """Where each named stacked (K, ...) tensor lies in one (K, P) buffer, name after name along
    P: the weights, the gradients and each AdamW moment of every member are one tensor each, so
    the optimiser is a few whole-buffer ops, not a few per named tensor."""

    def __init__(self, shapes: dict[str, torch.Size]):  # one member's shape of each name
        self.shapes, self.spans, at = shapes, {}, 0
        for name, shape in shapes.items():
            self.spans[name] = (at, at + shape.numel())
            at += shape.numel()
        self.size = at  # P

    def join(self, stacked: dict[str, Tensor]) -> Tensor:
        """(K, P) from {name: (K, ...)}."""
        return torch.cat([stacked[n].reshape(len(stacked[n]), -1) for n in self.shapes], 1)

    def split(self, buffer: Tensor) -> dict[str, Tensor]:
        """{name: (K, ...)}, each a view into `buffer`."""
        return {n: buffer[:, a:b].view(-1, *self.shapes[n]) for n, (a, b) in self.spans.items()}

    def mask(self, names: set[str], device) -> Tensor:
        """(P,) True at the entries of `names`."""
        mask = torch.zeros(self.size, dtype=torch.bool)
        for name in names:
            a, b = self.spans[name]
            mask[a:b] = True
        return mask.to(device)


class _Stacked:
    """The stepper of K runs: weights and AdamW moments stacked in (K, P) buffers (`_Layout`),
    one vmapped forward and backward pass, per-member clipping and AdamW on the buffers."""

    def __init__(self, runs: list[RunState], compile: str = "off"):
        self.runs, template = list(runs), runs[0].model
        self.device = runs[0].device
        cfgs = [r.cfg for r in runs]
        # The optimizer's own groups and order (train.decay_groups).
        decayed, rest = decay_groups(template)
        self.names = decayed + rest
        self.layout = _Layout({n: template.get_parameter(n).shape for n in self.names})
        self.decayed = self.layout.mask(set(decayed), self.device)

        def stacked(value) -> Tensor:  # (K, P): value(run, name) of every member and name
            return self.layout.join(
                {n: torch.stack([value(r, n) for r in runs]) for n in self.names}
            )

        with torch.no_grad():  # the weights, then AdamW's two moments
            self.weights = stacked(lambda r, n: r.model.get_parameter(n))
            self.moments = [stacked(lambda r, n, k=k: _moment(r, n, k)) for k in _MOMENTS]
        self.params = self._params()
        self.adam_step = _adam_step(runs[0], self.names[0])
        self.hyper = {
            name: self._per_member([getattr(c.train, name) for c in cfgs])
            for name in ("beta1", "beta2", "weight_decay")
        }
        self.clip = self._per_member([c.train.grad_clip or float("inf") for c in cfgs])
        self.lrs = [0.0] * len(runs)
        self.calls = 0  # steps taken by this stepper

        # A looped model owns one block's Parameters (under block 0's names, as its AdamW sees
        # them); every other block reads them under its own names, so gradients from every
        # application add up on the one stacked tensor, as they do on the tied Parameters.
        aliases = _shared_names(template) if cfgs[0].model.looped else {}

        def member_logits(p, tokens, pos):
            p = {**p, **{alias: p[name] for alias, name in aliases.items()}}
            return logits_from_params(p, template.cfg, tokens, pos, fused_attention=False)

        forward = {  # scored positions given (the answer), or every position (None)
            True: vmap(member_logits, in_dims=(0, 0, 0)),
            False: vmap(member_logits, in_dims=(0, 0, None)),
        }

        def scores(params, tokens, pos, targets, mask):
            logits = forward[pos is not None](params, tokens, pos)
            return loss_from_logits(logits, targets, mask), hits_from_logits(logits, targets, mask)

        self.eager, self.compile_mode = (scores, _clip_and_adamw), compile
        self.scores, self.update = self.eager
        self.compiled = compile != "off"
        self.width = template.cfg.n_ctx if self.compiled else None  # compiled: one shape
        if self.compiled:
            self._compile()
        # The next step's batches are made in a thread while this step computes (numpy and
        # torch release the GIL): on a GPU, data generation on the CPU overlaps the device's
        # work. Each stream is only ever read from that thread, in step order, so batches are
        # unchanged.
        self.prefetch = ThreadPoolExecutor(1, thread_name_prefix="ensemble-data")
        # Read and written by the prefetch thread alone: each phase's pools on the device
        # (None: some member has no pools in that phase), stacked for the members there were
        # at the start (`slots`), whoever has left since.
        self.members = tuple(runs)
        self.slots = {id(run): k for k, run in enumerate(runs)}
        self.device_pools: dict[int, DevicePools | None] = {}
        self.total = cfgs[0].train.total_steps
        start = runs[0].step
        self.upcoming = self._submit(start) if start < self.total else None

    def _params(self) -> dict[str, Tensor]:
        """The forward pass's inputs: each name's (K, ...) view into the weights, a leaf of its
        own for autograd (the weights change under them, in place, between steps)."""
        return {n: v.requires_grad_() for n, v in self.layout.split(self.weights).items()}

    def _per_member(self, values: list[float]) -> Tensor:  # one value per member, on the device
        return to_device(values, self.device, torch.float32)

    def _submit(self, step: int):
        """Make one step's inputs in the prefetch thread, for the members live now."""
        return self.prefetch.submit(self._inputs_at, step, tuple(self.runs))

    def _inputs_at(self, step: int, runs: tuple[RunState, ...]):
        """The members' batches for one step, padded to one width and stacked on the device."""
        phase = runs[0].phase_at(step)
        if phase.index not in self.device_pools:
            self.device_pools[phase.index] = DevicePools.of(self.members, phase, self.device)
        pools = self.device_pools[phase.index]
        if pools is not None:
            rows = [r.pool_rows(phase, step) for r in runs]
            slots = [self.slots[id(r)] for r in runs]
            return runs, pools.inputs(slots, rows, runs[0].cfg, self.width)
        batches = [r.batch(phase, step) for r in runs]
        return runs, stacked_inputs(batches, runs[0].cfg, self.device, self.width)

    def _inputs(self):
        """This step's prefetched inputs, without the rows of members that have since left."""
        waited = time.perf_counter()
        made_for, inputs = self.upcoming.result()
        TIMINGS["data_wait_s"] += time.perf_counter() - waited
        if list(made_for) == self.runs:
            return inputs
        rows = to_device([made_for.index(r) for r in self.runs], self.device)
        return tuple(None if x is None else x[rows] for x in inputs)

    def new_phase(self) -> None:  # a fresh AdamW for the main phase
        for m in self.moments:
            m.zero_()
        self.adam_step = 0

    def step(self, step: int, phase: Phase, lrs: list[float]) -> Scores:
        started = time.perf_counter()
        TIMINGS["steps"] += 1
        self.lrs = lrs
        tokens, pos, targets, mask = self._inputs()
        if step + 1 < self.total:
            self.upcoming = self._submit(step + 1)
        losses, hits = self.scores(self.params, tokens, pos, targets, mask)
        grads = torch.autograd.grad(losses.sum(), [self.params[n] for n in self.names])
        grad = self.layout.join(dict(zip(self.names, grads)))  # (K, P)
        self.adam_step += 1
        # compiled: the step count as a tensor, so a new value is new data, not a new graph
        adam_step = self._per_member([self.adam_step])[0] if self.compiled else self.adam_step
        with torch.no_grad():
            self.update(
                self.weights,
                self.moments,
                grad,
                self.decayed,
                self._per_member(lrs),
                self.hyper,
                self.clip,
                adam_step,
            )
        scores = Scores(torch.stack([losses.detach(), hits], 1))
        self.calls += 1
        if self.calls <= WARMUP_STEPS:
            TIMINGS["warmup_s"] += time.perf_counter() - started
        return scores

    def hand_back(self, k: int) -> None:
        """Copy member k's weights and AdamW state into its own model and optimizer."""
        run = self.runs[k]
        m, v = (self.layout.split(x) for x in self.moments)
        with torch.no_grad():
            for n in self.names:
                p = run.model.get_parameter(n)
                p.copy_(self.params[n][k])
                run.opt.state[p] = {
                    "step": torch.tensor(float(self.adam_step)),
                    "exp_avg": m[n][k].clone(),
                    "exp_avg_sq": v[n][k].clone(),
                }
        for group in run.opt.param_groups:
            group["lr"] = self.lrs[k]

    def drop(self, k: int) -> None:
        """Member k has stopped: unstack it from the weights, moments and hyperparameters."""
        keep = torch.tensor([i for i in range(len(self.runs)) if i != k], device=self.device)
        self.weights = self.weights[keep]
        self.moments = [m[keep] for m in self.moments]
        self.params = self._params()
        self.hyper = {name: v[keep] for name, v in self.hyper.items()}
        self.clip = self.clip[keep]
        del self.runs[k], self.lrs[k]
        if self.compiled:  # new tensors, one member fewer: compiled afresh
            self._compile()

    def _compile(self) -> None:
        """Compile the step for the members there are now. Weights and moments keep their
        storage from step to step (updated in place): marked so, CUDA graphs read and write
        them where they are instead of copying them."""
        torch._dynamo.reset()  # this ensemble's own graphs, and a fresh recompile count
        mode = None if self.compile_mode == "default" else self.compile_mode
        self.scores, self.update = (torch.compile(f, mode=mode) for f in self.eager)
        for t in (self.weights, *self.moments, *self.params.values()):
            torch._dynamo.mark_static_address(t)

    def close(self) -> None:
        self.prefetch.shutdown(cancel_futures=True)


def stacked_inputs(batches: list[Examples], cfg: RunConfig, device, width: int | None = None):
    """`loss_inputs` of each member's batch (made on the host), padded to `width` (default: the
    longest row of any batch) and stacked along a leading member dim on `device`."""
    width = width or max(int(b.lengths.max()) for b in batches)
    parts = [loss_inputs(b, cfg, device, width) for b in batches]
    return tuple(None if part[0] is None else torch.stack(part) for part in zip(*parts))


class DevicePools:
    """Every member's training pools for one phase on the device: each member's pools joined
    (`PoolStream.rows` index them), padded to the longest member's with copies of its first
    row (never indexed), one member after another; tokens in one tensor (uint8, as the pools
    hold them), the other LOSS_FIELDS in another (int32). A step's batches are one gather from
    each, widened to the int64 that `loss_inputs` gives."""

    def __init__(self, streams: list[PoolStream], device):
        self.n = max(len(s.lengths) for s in streams)  # rows per member
        padded = []
        for s in streams:  # a member's rows, then copies of its first row up to n
            size = len(s.lengths)
            padded.append(s.take(np.r_[np.arange(size), np.zeros(self.n - size, int)]))
        every = Examples.concat(padded)
        meta = np.stack([getattr(every, name) for name in LOSS_FIELDS[1:]], 1).astype(np.int32)
        self.tokens = torch.as_tensor(every.tokens, device=device)
        self.meta = torch.as_tensor(meta, device=device)
        self.lengths = every.lengths  # on the CPU: a step's width without a device sync
        self.device = device

    @staticmethod
    def of(runs: tuple[RunState, ...], phase: Phase, device) -> DevicePools | None:
        """The members' pools in `phase`, or None if some member trains from a fresh stream."""
        streams = [r.streams[phase.index] for r in runs]
        if not all(isinstance(s, PoolStream) for s in streams):
            return None
        try:
            return DevicePools(streams, device)
        except torch.OutOfMemoryError:  # pools too large for the device: batches from the host
            log.warning("the members' pools do not fit on %s: batches are made on the host", device)
            return None

    def inputs(self, slots: list[int], rows: list, cfg: RunConfig, width: int | None):
        """`stacked_inputs`, gathered here: member `slots[i]`'s batch is its pool's `rows[i]`,
        padded to `width` (default: the longest row of any batch)."""
        flat = np.stack(rows) + np.asarray(slots)[:, None] * self.n  # (members, batch)
        width = width or int(self.lengths[flat].max())
        index = to_device(flat.ravel(), self.device)
        meta = self.meta.index_select(0, index).long().view(*flat.shape, -1)
        fields = {name: meta[..., i] for i, name in enumerate(LOSS_FIELDS[1:])}
        tokens = self.tokens[:, :width].index_select(0, index).long()
        fields["tokens"] = tokens.view(*flat.shape, width)
        return loss_tensors(fields, cfg, width)


_MOMENTS = ("exp_avg", "exp_avg_sq")


def _shared_names(model) -> dict[str, str]:
    """{name a tied Parameter also has: the name it is stacked under} (looped blocks)."""
    first: dict[int, str] = {}
    aliases = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in first:
            aliases[name] = first[id(p)]
        else:
            first[id(p)] = name
    return aliases


def _moment(run: RunState, name: str, key: str) -> Tensor:
    p = run.model.get_parameter(name)
    state = run.opt.state.get(p, {})
    return state[key].detach().clone() if key in state else torch.zeros_like(p)


def _adam_step(run: RunState, name: str) -> int:
    state = run.opt.state.get(run.model.get_parameter(name), {})
    return int(state["step"]) if "step" in state else 0


def _clip_and_adamw(weights, moments, grad, decayed, lr, hyper, clip, step) -> None:
    """One optimiser step of every member, on (K, P) buffers with (K,) hyperparameters: each
    member's gradient clipped to its norm (`clip_grad_norm_`), then torch's AdamW update
    (decoupled weight decay where `decayed`, the matrices). Compiled as one function. The new
    values are computed out of place and copied in at the end: updated in place step by step,
    the buffers trip an inductor bug on CPU (pytorch/pytorch#196570); the values are the same."""
    grad = grad * (clip / (grad.norm(dim=1) + 1e-6)).clamp(max=1.0)[:, None]
    b1, b2 = hyper["beta1"][:, None], hyper["beta2"][:, None]
    lr = lr[:, None]
    step_size = lr / (1 - b1**step)
    bias2_sqrt = (1 - b2**step).sqrt()
    m, v = moments
    decayed_weights = weights * torch.where(decayed, 1 - lr * hyper["weight_decay"][:, None], 1.0)
    new_m = torch.lerp(m, grad, 1 - b1)
    new_v = v * b2 + (1 - b2) * grad * grad
    denom = new_v.sqrt() / bias2_sqrt + ADAM_EPS
    weights.copy_(decayed_weights - step_size * new_m / denom)
    m.copy_(new_m)
    v.copy_(new_v)
