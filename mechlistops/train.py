"""The training loop: the step plan (phases, learning-rate schedule, when to evaluate, snapshot
and save), one run's bookkeeping, and the loop driver that both trainers share.

Context / design:
- `drive` is the one training loop. A `Stepper` takes one optimisation step for the runs it
  holds and hands a run's weights back when its bookkeeping needs them; `train` steps one run
  (`_Alone`), `mechlistops.ensemble` steps many stacked runs. Everything else (phases, the
  schedule, evaluation, snapshots, resume state, progress) is decided here, once.
- Speed comes from `forward.fast_logits` (the last block only at scored positions) on batches
  trimmed to their longest row; weights stay the HookedTransformer's own Parameters.
- Determinism: batch `s` of a phase depends only on (data seed, phase, s) (see `TrainStream`),
  and the learning rate is a pure function of the step, so the resume state is just weights,
  AdamW moments, RNG state and the step. A run killed at any moment and resumed ends with the
  same weights as one never interrupted (on CPU; tests check it).
- A curriculum phase gets a fresh AdamW and schedule: the main phase is then trained exactly as
  it would be from scratch, only from different initial weights.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from mechlistops import checkpoint as ckpt
from mechlistops.config import OPERATORS, RunConfig, TrainConfig
from mechlistops.data import Examples, TrainStream, eval_ops, excluded_hashes
from mechlistops.errors import ConfigError
from mechlistops.evaluate import SetResult, evaluate_sets, loss_fn
from mechlistops.model import (
    build_model,
    count_params,
    hooked_transformer_config_dict,
    resolve_device,
)
from mechlistops.pools import PoolStream, evaluation_data, pool_digest
from mechlistops.tl import HookedTransformer

log = logging.getLogger(__name__)
CURVE_POINTS = 250  # about this many training-curve points per run, however short (metrics.jsonl)
# Steps `drive` may launch before it reads their losses (1: each step's are read before the
# next is launched). Booking is the same either way; on a GPU, reading later lets the device
# run ahead of Python's bookkeeping.
READ_AHEAD = 8


# ----------------------------------------------------------------------------- the step plan
@dataclass(frozen=True)
class Phase:
    index: int
    ops: tuple[str, ...]
    start: int  # global step at which the phase begins
    steps: int


def phases(cfg: RunConfig) -> list[Phase]:
    t = cfg.train
    out = []
    if t.pretrain_steps:
        out.append(Phase(0, t.pretrain_ops, 0, t.pretrain_steps))
    out.append(Phase(len(out), cfg.data.ops, t.pretrain_steps, t.steps))
    return out


def phase_at(plan: list[Phase], step: int) -> Phase:
    """The phase of `phases(cfg)` that global step `step` belongs to."""
    return next(p for p in plan if p.start <= step < p.start + p.steps)


def lr_at(t: TrainConfig, step: int, total: int) -> float:
    """Learning rate at a step within a phase of `total` steps (linear warmup, then decay)."""
    if step < t.warmup_steps:
        return t.lr * (step + 1) / t.warmup_steps
    if t.schedule == "constant":
        return t.lr
    floor = t.lr * t.min_lr_frac
    if t.schedule == "wsd":  # a shorter phase (pretraining) decays over all of it
        start = max(t.warmup_steps, total - t.decay_steps)
        if step < start:
            return t.lr
        return floor + (t.lr - floor) * (1 - (step - start) / max(1, total - start))
    progress = (step - t.warmup_steps) / max(1, total - t.warmup_steps)
    if t.schedule == "linear":
        return floor + (t.lr - floor) * (1 - progress)
    return floor + (t.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def snapshot_steps(t: TrainConfig) -> set[int]:
    """Steps whose weights are kept: 0, powers of two, about `log_snapshots` steps evenly
    spaced in log(step), every save_interval, the last."""
    total = t.total_steps
    steps = {0, total, *range(t.save_interval, total + 1, t.save_interval)}
    if t.log_checkpoints:
        steps |= {2**k for k in range(int(math.log2(max(total, 1))) + 1)}
    if t.log_snapshots and total:
        n = t.log_snapshots
        steps |= {round(total ** (i / max(n - 1, 1))) for i in range(n)}
    if t.pretrain_steps:
        steps.add(t.pretrain_steps)
    return steps


# ----------------------------------------------------------------------------- one step
def decay_groups(model: HookedTransformer) -> tuple[list[str], list[str]]:
    """AdamW's parameter groups, in its order: matrices (weight-decayed), then biases and norm
    gains (not decayed)."""
    named = list(model.named_parameters())
    return [n for n, p in named if p.dim() >= 2], [n for n, p in named if p.dim() < 2]


def make_optimizer(model: HookedTransformer, t: TrainConfig) -> torch.optim.AdamW:
    decay, no_decay = decay_groups(model)
    groups = [
        {"params": [model.get_parameter(n) for n in decay], "weight_decay": t.weight_decay},
        {"params": [model.get_parameter(n) for n in no_decay], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=t.lr, betas=(t.beta1, t.beta2), fused=True)


def train_step(model, opt, batch: Examples, cfg: RunConfig, device) -> Scores:
    """One optimisation step; returns the loss and the batch's accuracy (before the step)."""
    loss, hits = loss_fn(model, batch, cfg, device)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.train.grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
    opt.step()
    return Scores(torch.stack([loss.detach(), hits])[None])


class Scores:
    """One step's (loss, batch accuracy) of each run, on their way to the host: on a GPU the
    copy is queued behind the step (into pinned memory) and `read` waits for that step alone,
    so the loop can launch later steps before it books this one."""

    def __init__(self, values: torch.Tensor):  # [runs, 2]
        self.ready = None
        if values.is_cuda:
            self.values = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
            self.values.copy_(values, non_blocking=True)
            self.ready = torch.cuda.Event()
            self.ready.record()
        else:
            self.values = values

    def read(self) -> list[tuple[float, float]]:
        if self.ready is not None:
            self.ready.synchronize()
        return [(loss, hits) for loss, hits in self.values.tolist()]


def default_run_name(cfg: RunConfig) -> str:
    ops = "+".join(cfg.data.ops).lower()
    m = cfg.model
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{ops}-L{m.n_layers}-d{m.d_model}-s{cfg.train.seed}-{stamp}"


def _transfer_init(model: HookedTransformer, cfg: RunConfig) -> None:
    src = Path(cfg.train.init_from)
    source = ckpt.load_run(src).model.state_dict()
    target = model.state_dict()
    mode = cfg.train.transfer
    names = [n for n in target if n == "embed.W_E"] if mode == "embed" else list(target)
    if mode == "no-embed":
        names = [n for n in names if n != "embed.W_E"]
    for name in names:
        if name not in source or source[name].shape != target[name].shape:
            got = tuple(source[name].shape) if name in source else "missing"
            raise ConfigError(
                f"cannot transfer {name} from {src}: shape {got} vs {tuple(target[name].shape)}"
            )
    model.load_state_dict({**target, **{n: source[n] for n in names}})


# ----------------------------------------------------------------------------- stopping
def mean_heldout(scores: dict[str, dict]) -> float:
    """Mean held-out accuracy over the operators' test sets of one evaluation (as saved)."""
    held = [r["accuracy_heldout"] for k, r in scores.items() if k != "mixture"]
    held = [h for h in held if h is not None]
    return sum(held) / len(held) if held else 0.0


class StopRule:
    """TrainConfig's stopping rules, fed one evaluation at a time (scores as saved in
    metrics.jsonl): every test set at stop_accuracy, or no improvement of the mean held-out
    accuracy over the operators by stop_delta in stop_patience evaluations. A pure function of
    the evaluations, so it also replays on saved metrics (what a rule would have saved)."""

    def __init__(self, t: TrainConfig):
        self.t, self.best, self.stale = t, -1.0, 0

    def update(self, scores: dict[str, dict]) -> str | None:
        """Book one evaluation; the reason to stop after it, or None."""
        t = self.t
        mean = mean_heldout(scores)
        if mean > self.best + t.stop_delta:
            self.best, self.stale = mean, 0
        else:
            self.stale += 1
        if t.stop_accuracy and all(r["accuracy"] >= t.stop_accuracy for r in scores.values()):
            return f"every test set reached accuracy {t.stop_accuracy}"
        if t.stop_patience and self.stale >= t.stop_patience:
            return (
                f"mean held-out accuracy did not improve by {t.stop_delta} in "
                f"{t.stop_patience} evaluations"
            )
        return None


# ----------------------------------------------------------------------------- one run
@dataclass
class TrainResult:
    run_dir: Path
    model: HookedTransformer
    results: dict[str, SetResult]
    n_params: dict[str, int]
    seconds: float
    stopped: dict | None = None  # {"step", "reason"} when a stopping rule ended the run early


class RunState:
    """One run being trained: its model, optimizer, data streams, test sets and bookkeeping.

    `drive` steps one or many of these; at the steps where a run needs its weights (`due`),
    its stepper has put them into `model` and `opt`, so files, metrics and resume state are the
    same whichever trainer stepped the run.
    """

    def __init__(
        self, cfg: RunConfig, run_dir: str | Path, resume: bool = False, device: str = "auto"
    ):
        self.cfg, self.run_dir, t = cfg, Path(run_dir), cfg.train
        self.device = resolve_device(device)
        self.test_sets, self.pools = evaluation_data(cfg.data, extra_ops=t.pretrain_ops)
        self.model = build_model(cfg.model, cfg.data, seed=t.seed, device=self.device)
        self.n_params = count_params(self.model)
        self.plan, self.snaps = phases(cfg), snapshot_steps(t)
        self.opt = make_optimizer(self.model, t)
        self.step, self.loss_sum, self.loss_count = 0, 0.0, 0
        # The training curve between evaluations: the mean loss and batch accuracy of every
        # `curve_every` steps, written with the next metrics line ("train_curve": [[step, loss,
        # accuracy], ...]), so a short run still has a few hundred points of training loss and
        # accuracy where it has only a few evaluations.
        self.curve_every = max(1, t.total_steps // CURVE_POINTS)
        self.curve: list[list] = []
        self.curve_sum, self.curve_hits, self.curve_count = 0.0, 0.0, 0
        self.examples: Counter[str] = Counter()  # training examples seen, by root operator
        self._batch_ops: dict[int, Counter[str]] = {}  # per step, until `record` books it
        self.stopped: dict | None = None  # {"step", "reason"} once a stopping rule fired
        self.stop_rule = StopRule(t)
        if not resume:
            self._initial_weights()  # a transfer that cannot work fails before any write
        self.lock = ckpt.claim_run(self.run_dir, new=not resume)  # before anything is written
        try:
            elapsed = self._resume() if resume else self._create()
        except BaseException:
            self.lock.release(abandon=True)
            raise
        self.model.train()
        self.eval_names = eval_ops(cfg.data, t.pretrain_ops)
        exclude = excluded_hashes(cfg.data, self.test_sets)
        self.streams = {
            p.index: PoolStream(cfg.data, t, self.pools, p.ops, p.index)
            if self.pools
            else TrainStream(cfg.data, t, exclude, p.ops, p.index)
            for p in self.plan
        }
        self.started = time.perf_counter() - elapsed
        self.last_eval: dict[str, SetResult] = {}
        self._evaluated_at: int | None = None  # the step of last_eval
        self.metrics: dict = {}

    def _initial_weights(self) -> None:
        if self.cfg.train.init_from:
            _transfer_init(self.model, self.cfg)

    def _create(self) -> float:
        extra = {"n_params": self.n_params}
        if self.pools:
            extra["pools"] = {
                op: {"size": len(pool), "sha256_16": pool_digest(pool)}
                for op, pool in self.pools.items()
            }
        ht_cfg = hooked_transformer_config_dict(self.cfg.model, self.cfg.data)
        ckpt.create_run(self.run_dir, self.cfg, ht_cfg, extra, self.model.state_dict())
        return 0.0

    def _resume(self) -> float:
        point = ckpt.resume_point(self.run_dir, self.model, self.opt, self.cfg.train.total_steps)
        if not point.has_weights:  # killed while setting up: rebuild the initial weights
            self._initial_weights()
            ckpt.save_snapshot(self.run_dir, 0, self.model.state_dict())
        self.step = point.step
        self.loss_sum = point.meta.get("loss_sum", 0.0)
        self.loss_count = point.meta.get("loss_count", 0)
        self.curve = point.meta.get("curve", [])
        self.curve_sum = point.meta.get("curve_sum", 0.0)
        self.curve_hits = point.meta.get("curve_hits", 0.0)
        self.curve_count = point.meta.get("curve_count", 0)
        self.examples = Counter(point.meta.get("examples", {}))
        for record in ckpt.read_metrics(self.run_dir):  # the patience count so far
            self.stop_rule.update(record["eval"])
        log.info("resuming %s at step %d", self.run_dir, self.step)
        self._check_platform(point.meta)
        return point.meta.get("elapsed_s", 0.0)

    def _check_platform(self, meta: dict) -> None:
        """The device, torch's build, and on CPU its kernels and thread count set the order
        and rounding of torch's sums: a run resumed on another platform matches an
        uninterrupted one up to float rounding only; say so. States written before the
        platform was recorded carry the thread count alone."""
        saved = meta.get("platform", {"threads": meta.get("threads")})
        change = ckpt.platform_change(saved, ckpt.platform_facts(self.device))
        if change is None:
            return
        was, now, match = change
        log.warning(
            "%s trained with %s and resumes with %s: its weights will match an uninterrupted "
            "run's up to float rounding, not bit for bit%s",
            self.run_dir,
            was,
            now,
            f" ({match} to match)" if match else "",
        )

    def phase_at(self, step: int) -> Phase:
        return phase_at(self.plan, step)

    def lr(self, phase: Phase, step: int) -> float:
        return lr_at(self.cfg.train, step - phase.start, phase.steps)

    def batch(self, phase: Phase, step: int) -> Examples:
        batch = self.streams[phase.index].batch(step - phase.start)
        self._book(step, batch.root_ops)
        return batch

    def pool_rows(self, phase: Phase, step: int) -> np.ndarray:
        """Batch `step` as rows of its phase's joined pools (`PoolStream.rows`)."""
        stream = self.streams[phase.index]
        rows = stream.rows(step - phase.start)
        self._book(step, stream.root_ops[rows])
        return rows

    def _book(self, step: int, root_ops: np.ndarray) -> None:  # counted into `examples`
        counts = np.bincount(root_ops, minlength=len(OPERATORS))
        self._batch_ops[step] = Counter({OPERATORS[o]: int(c) for o, c in enumerate(counts) if c})

    def epochs(self) -> dict[str, float]:
        """Passes over each operator's pool so far (empty with a fresh stream)."""
        return {op: round(self.examples[op] / len(p), 3) for op, p in self.pools.items()}

    def evaluates(self, step: int) -> bool:
        """Whether `record` evaluates after `step` steps (every eval_interval, and the last)."""
        t = self.cfg.train
        return step % t.eval_interval == 0 or step == t.total_steps

    def saves_state(self, step: int) -> bool:
        t = self.cfg.train
        return step % t.save_interval == 0 and step < t.total_steps

    def due(self, step: int) -> bool:
        """Whether `record` needs the model's weights after `step` steps."""
        return step in self.snaps or self.evaluates(step) or self.saves_state(step)

    def record(self, step: int, phase: Phase, lr: float, loss: float, hits: float) -> None:
        """Book one finished step; when `due(step)`, self.model and self.opt hold its weights
        and optimizer state: save snapshots, evaluate, write metrics and the resume state."""
        self.step = step
        self.loss_sum += loss
        self.loss_count += 1
        self.curve_sum += loss
        self.curve_hits += hits
        self.curve_count += 1
        if step % self.curve_every == 0 or self.evaluates(step) or not math.isfinite(loss):
            n = self.curve_count
            self.curve.append([step, round(self.curve_sum / n, 5), round(self.curve_hits / n, 5)])
            self.curve_sum, self.curve_hits, self.curve_count = 0.0, 0.0, 0
        self.examples.update(self._batch_ops.pop(step - 1, {}))
        if not math.isfinite(loss):  # diverged: nothing after this step means anything
            self.stopped = {"step": step, "reason": f"diverged: training loss {loss}"}
            return
        if step in self.snaps:
            ckpt.save_snapshot(self.run_dir, step, self.model.state_dict())
        if self.evaluates(step):
            self._evaluate(step, phase, lr, self.cfg.train.eval_size)
        if self.saves_state(step):
            extra = {
                "loss_sum": self.loss_sum,
                "loss_count": self.loss_count,
                "curve": self.curve,
                "curve_sum": self.curve_sum,
                "curve_hits": self.curve_hits,
                "curve_count": self.curve_count,
                "elapsed_s": time.perf_counter() - self.started,
                "examples": dict(self.examples),
                "platform": ckpt.platform_facts(self.device),  # the rounding (_check_platform)
            }
            t = self.cfg.train
            ckpt.save_state(self.run_dir, self.model, self.opt, step, extra, keep=t.keep_states)

    def _score(self, limit: int | None) -> dict[str, SetResult]:
        t = self.cfg.train
        return evaluate_sets(
            self.model, self.test_sets, self.cfg.data, limit, self.pools, t.eval_batch_size
        )

    def _evaluate(self, step: int, phase: Phase, lr: float, limit: int | None) -> None:
        """Score the test sets (their first `limit` rows), write the metrics line, and apply
        the stopping rules (only the last phase stops early)."""
        self.last_eval = self._score(limit)
        self._evaluated_at = step
        self.metrics = {
            "step": step,
            "phase": phase.index,
            "lr": lr,
            "train_loss": self.loss_sum / max(self.loss_count, 1),
            "train_curve": self.curve,
            "elapsed_s": round(time.perf_counter() - self.started, 2),
            "examples": dict(self.examples),
            **({"epochs": self.epochs()} if self.pools else {}),
            "eval": {k: v.to_dict() for k, v in self.last_eval.items()},
        }
        reason = self.stop_rule.update(self.metrics["eval"])
        if reason and not self.stopped and phase.index == self.plan[-1].index:
            self.stopped = {"step": step, "reason": reason}
        if self.stopped:
            self.metrics["stop"] = self.stopped["reason"]
        ckpt.append_metrics(self.run_dir, self.metrics)
        self.loss_sum, self.loss_count, self.curve = 0.0, 0, []

    def summary(self) -> str:
        loss = self.metrics["train_loss"]
        accs = " ".join(f"{op} {self.last_eval[op].accuracy:.2f}" for op in self.eval_names)
        return f"loss {loss:.3f} {accs}"

    def finish(self) -> TrainResult:
        """Final evaluation, final weights and results.json; drops the resume state."""
        # The loop evaluates at the last step (and at a stop); redo it if eval_size trimmed the
        # sets, or if the run stopped between evaluations (it diverged).
        results = self.last_eval
        if self._evaluated_at != self.step:  # its last metrics line: where it stopped
            phase = self.phase_at(self.step - 1)
            self._evaluate(self.step, phase, self.lr(phase, self.step - 1), None)
            results = self.last_eval
        elif self.cfg.train.eval_size is not None:
            results = self._score(None)
        seconds = time.perf_counter() - self.started
        ckpt.save_final(
            self.run_dir,
            self.model.state_dict(),
            {
                "step": self.step,
                "seconds": round(seconds, 2),
                "n_params": self.n_params,
                "examples": dict(self.examples),
                **({"epochs": self.epochs()} if self.pools else {}),
                "stopped": self.stopped,
                "results": {k: v.to_dict() for k, v in results.items()},
                "platform": ckpt.platform_facts(self.device),  # where it finished
            },
        )
        self.lock.release()
        return TrainResult(self.run_dir, self.model, results, self.n_params, seconds, self.stopped)


# ----------------------------------------------------------------------------- the loop
class Stepper(Protocol):
    """How a trainer takes steps for the runs it holds (in `drive`'s order)."""

    def new_phase(self) -> None:
        """A phase other than the first begins: fresh optimizer state."""

    def step(self, step: int, phase: Phase, lrs: list[float]) -> Scores:
        """One optimisation step of every run at these learning rates; their losses and
        batch accuracies (read when the loop books the step)."""

    def hand_back(self, k: int) -> None:
        """Put run k's current weights and optimizer state into its model and optimizer."""

    def drop(self, k: int) -> None:
        """Run k has stopped: step only the others from now on (k shifts the later ones)."""

    def close(self) -> None: ...


def drive(runs: list[RunState], stepper: Stepper, progress: bool = True) -> list[TrainResult]:
    """Train runs that stand at the same step and share one step plan to the end, or until
    each stops by its stopping rules (a stopped run leaves, the rest go on).

    Steps are booked (their losses read, then `RunState.record`) in order, up to READ_AHEAD
    steps after they were launched, and always at once after a step some run needs the weights
    of (`due`) and at the end: the device is not waited for every step, and every run is
    booked exactly as if it were read at once. A run that diverges between bookings is stopped
    at the step where its loss first went non-finite; its weights, NaN from that step on, may
    have taken a few more steps before it leaves."""
    total, step = runs[0].cfg.train.total_steps, runs[0].step
    desc = runs[0].run_dir.name if len(runs) == 1 else f"ensemble of {len(runs)}"
    bar = tqdm(total=total, initial=step, disable=not progress, desc=desc, dynamic_ncols=True)
    live, results = list(runs), {}  # the stepper's k-th run is live[k]
    pending: list[tuple[int, Phase, list[float], Scores]] = []  # launched, not yet booked

    def book(due: list[bool]) -> None:  # due[k]: live[k] needs its weights after `step`
        for done, phase, lrs, scores in pending:
            for k, (run, (loss, hits)) in enumerate(zip(live, scores.read())):
                if run.stopped:  # diverged at an earlier step of this booking
                    continue
                if done == step and due[k]:
                    stepper.hand_back(k)
                run.record(done, phase, lrs[k], loss, hits)
        pending.clear()
        for k in reversed(range(len(live))):
            if live[k].stopped:
                stepper.hand_back(k)
                run = live.pop(k)
                results[id(run)] = run.finish()
                stepper.drop(k)

    try:
        while step < total and live:
            phase = live[0].phase_at(step)
            if step == phase.start and step > 0:
                stepper.new_phase()
            lrs = [run.lr(phase, step) for run in live]
            scores = stepper.step(step, phase, lrs)
            step += 1
            pending.append((step, phase, lrs, scores))
            due = [run.due(step) for run in live]
            if len(pending) >= READ_AHEAD or step == total or any(due):
                book(due)
            bar.update(1)
            if runs[0].evaluates(step):
                bar.set_postfix_str(runs[0].summary() + (" ..." if len(runs) > 1 else ""))
    except BaseException:
        for run in runs:  # an interrupted run can be resumed at once, by this process too
            run.lock.release()
        raise
    finally:
        stepper.close()
    bar.close()
    for k, run in enumerate(live):
        stepper.hand_back(k)
        results[id(run)] = run.finish()
    return [results[id(run)] for run in runs]


class _Alone:
    """The stepper of one run: its own HookedTransformer and torch AdamW."""

    def __init__(self, run: RunState):
        self.run = run

    def new_phase(self) -> None:
        self.run.opt = make_optimizer(self.run.model, self.run.cfg.train)

    def step(self, step: int, phase: Phase, lrs: list[float]) -> list[tuple[float, float]]:
        run = self.run
        for group in run.opt.param_groups:
            group["lr"] = lrs[0]
        return train_step(run.model, run.opt, run.batch(phase, step), run.cfg, run.device)

    def hand_back(self, k: int) -> None:  # the weights never left the model
        pass

    def drop(self, k: int) -> None:  # the loop ends with its only run
        pass

    def close(self) -> None:
        pass


# Training settings a branch may change: they decide how long the run goes on, how its
# learning rate ends and what it records, never what happened before the branch point (the
# learning rate up to there is checked step by step).
BRANCH_MAY_CHANGE = frozenset(
    {
        "steps",
        "budget_op",
        "budget_examples",
        "schedule",
        "min_lr_frac",
        "decay_steps",
        "eval_interval",
        "eval_size",
        "eval_batch_size",
        "save_interval",
        "log_checkpoints",
        "log_snapshots",
        "keep_states",
        "stop_accuracy",
        "stop_patience",
        "stop_delta",
    }
)


def check_branch(parent: RunConfig, cfg: RunConfig, step: int) -> None:
    """ConfigError unless a run of `cfg` trained from scratch would take the parent's first
    `step` steps exactly: the same data, model and optimisation (only BRANCH_MAY_CHANGE
    differ), the same phase and learning rate at every step before `step`, and steps left."""
    changed = [
        f"{section}.{f.name}"
        for section in ("data", "model", "train")
        for f in dataclasses.fields(getattr(cfg, section))
        if getattr(getattr(parent, section), f.name) != getattr(getattr(cfg, section), f.name)
        and not (section == "train" and f.name in BRANCH_MAY_CHANGE)
    ]
    if changed:
        raise ConfigError(
            "a branch trains like its parent up to the branch point; it cannot change "
            + ", ".join(changed)
        )
    if step >= cfg.train.total_steps:
        raise ConfigError(
            f"branch point {step} is not before the branch's last step "
            f"({cfg.train.total_steps}); give more --steps"
        )
    plans = phases(parent), phases(cfg)  # the same phase starts: pretraining cannot change
    for s in range(step):  # the learning rate of every step before the branch point
        a, b = phase_at(plans[0], s), phase_at(plans[1], s)
        lr_a = lr_at(parent.train, s - a.start, a.steps)
        lr_b = lr_at(cfg.train, s - b.start, b.steps)
        if lr_a != lr_b:
            raise ConfigError(
                f"the branch's learning rate differs from its parent's from step {s} "
                f"({lr_b:.3g} where the parent had {lr_a:.3g}); branch at step {s} or earlier"
            )


def branch(parent_dir: str | Path, step: int, cfg: RunConfig, run_dir: str | Path) -> None:
    """Make `run_dir` continue the run in `parent_dir` from its kept resume state at `step`
    under `cfg`, exactly as a run of `cfg` trained from scratch would go on (same weights, bit
    for bit, on the same platform); `train(cfg, run_dir, resume=True)` then trains it."""
    raw = ckpt.read_config(parent_dir)
    check_branch(ckpt.load_run_config(parent_dir, raw), cfg, step)
    extra = {k: raw[k] for k in ("n_params", "pools") if k in raw}
    ht_cfg = hooked_transformer_config_dict(cfg.model, cfg.data)
    ckpt.branch_run(Path(parent_dir), step, Path(run_dir), cfg, ht_cfg, extra)


def train(
    cfg: RunConfig,
    run_dir: str | Path,
    resume: bool = False,
    progress: bool = True,
    device: str = "auto",
) -> TrainResult:
    """Train (or resume) a run into `run_dir` on `device` ("auto": cuda when present)."""
    run = RunState(cfg, run_dir, resume, device)
    return drive([run], _Alone(run), progress)[0]
