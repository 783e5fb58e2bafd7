"""The training loop: phases (optional pretraining, then the main mixture), evaluation,
checkpoints and exact resumption.

Context / design:
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

import json
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from mechlistops import checkpoint as ckpt
from mechlistops.config import OPERATORS, RunConfig, TrainConfig
from mechlistops.data import Examples, TrainStream, eval_ops, excluded_hashes
from mechlistops.errors import CheckpointError, ConfigError
from mechlistops.evaluate import SetResult, evaluate_sets
from mechlistops.forward import fast_logits
from mechlistops.listops import Vocab
from mechlistops.model import (
    build_model,
    count_params,
    hooked_transformer_config_dict,
    resolve_device,
)
from mechlistops.pools import PoolStream, evaluation_data, pool_digest

log = logging.getLogger(__name__)


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


def lr_at(t: TrainConfig, step: int, total: int) -> float:
    """Learning rate at a step within a phase of `total` steps (linear warmup, then decay)."""
    if step < t.warmup_steps:
        return t.lr * (step + 1) / t.warmup_steps
    if t.schedule == "constant":
        return t.lr
    progress = (step - t.warmup_steps) / max(1, total - t.warmup_steps)
    floor = t.lr * t.min_lr_frac
    if t.schedule == "linear":
        return floor + (t.lr - floor) * (1 - progress)
    return floor + (t.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def snapshot_steps(t: TrainConfig) -> set[int]:
    """Steps whose weights are kept: 0, log-spaced (1, 2, 4, ...), every save_interval, last."""
    total = t.total_steps
    steps = {0, total, *range(t.save_interval, total + 1, t.save_interval)}
    if t.log_checkpoints:
        steps |= {2**k for k in range(int(math.log2(max(total, 1))) + 1)}
    if t.pretrain_steps:
        steps.add(t.pretrain_steps)
    return steps


def make_optimizer(model: HookedTransformer, t: TrainConfig) -> torch.optim.AdamW:
    # Weight decay on matrices only; biases and norm gains are not decayed.
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": t.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=t.lr, betas=(t.beta1, t.beta2), fused=True)


def loss_inputs(batch: Examples, cfg: RunConfig, device, width: int | None = None):
    """What the loss needs from a batch: tokens (trimmed to `width`, default the longest row),
    the scored positions (None: every position), targets and mask (None: score all)."""
    T = width or int(batch.lengths.max())
    tokens = torch.as_tensor(batch.tokens[:, :T].astype(np.int64), device=device)
    if cfg.train.loss_on == "answer" and not cfg.data.chain_of_thought:
        pos = torch.as_tensor(batch.answer_pos, device=device)[:, None]
        return tokens, pos, torch.as_tensor(batch.answers, device=device)[:, None], None
    pad = torch.full_like(tokens[:, :1], Vocab(cfg.data.modulus).pad)
    targets = torch.cat([tokens[:, 1:], pad], dim=1)  # position p predicts token p + 1
    pos = torch.arange(T, device=device)[None, :]
    lengths = torch.as_tensor(batch.lengths, device=device)[:, None]
    if cfg.train.loss_on == "sequence":
        mask = pos < lengths - 1
    else:  # chain-of-thought: every generated token after the first `=`, up to the answer
        first = torch.as_tensor(batch.prompt_len, device=device)[:, None] - 1
        mask = (pos >= first) & (pos <= lengths - 3)
    return tokens, None, targets, mask


def loss_from_logits(
    logits: Float[Tensor, "*models batch q d_vocab"],
    targets: Int[Tensor, "*models batch q"],
    mask: Bool[Tensor, "*models batch q"] | None,
) -> Float[Tensor, "*models"]:
    """Mean cross-entropy over the scored positions (per model when there is a model dim)."""
    losses = F.cross_entropy(logits.flatten(0, -2), targets.flatten(), reduction="none").view(
        targets.shape
    )
    if mask is None:
        return losses.mean((-2, -1))
    return (losses * mask).sum((-2, -1)) / mask.sum((-2, -1))


def loss_fn(model: HookedTransformer, batch: Examples, cfg: RunConfig, device) -> torch.Tensor:
    """Cross-entropy on the answer (default) or on every next token of the sequence."""
    tokens, pos, targets, mask = loss_inputs(batch, cfg, device)
    return loss_from_logits(fast_logits(model, tokens, pos), targets, mask)


def train_step(model, opt, batch: Examples, cfg: RunConfig, device) -> float:
    """One optimisation step; returns the loss."""
    loss = loss_fn(model, batch, cfg, device)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.train.grad_clip:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
    opt.step()
    return loss.item()


def default_run_name(cfg: RunConfig) -> str:
    ops = "+".join(cfg.data.ops).lower()
    m = cfg.model
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{ops}-L{m.n_layers}-d{m.d_model}-s{cfg.train.seed}-{stamp}"


# ----------------------------------------------------------------------------- state
def save_state(run_dir: Path, model, opt, step: int, extra: dict) -> None:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt_sd = opt.state_dict()
    for idx, st in opt_sd["state"].items():
        for name, v in st.items():
            tensors[f"optim.{idx}.{name}"] = torch.as_tensor(v)
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {"step": step, "param_groups": opt_sd["param_groups"], **extra}
    ckpt.save_tensors(run_dir / ckpt.STATE, tensors, meta)


def load_state(run_dir: Path, model, opt) -> dict:
    tensors, meta = ckpt.load_tensors(run_dir / ckpt.STATE)
    if meta is None or "step" not in meta:
        raise CheckpointError(f"{run_dir / ckpt.STATE}: not a mechlistops resume state")
    model_sd = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    ckpt.load_state_dict_into(model, model_sd, run_dir / ckpt.STATE)
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    groups = [{**g, "betas": tuple(g["betas"])} for g in meta["param_groups"]]
    opt.load_state_dict({"state": state, "param_groups": groups})
    torch.set_rng_state(tensors["rng.torch"])
    return meta


def _read_metrics(path: Path, upto: int) -> list[str]:
    """Complete metric lines up to a step (a kill may have left a partial last line)."""
    if not path.is_file():
        return []
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= upto:
                keep.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return keep


def _append_metrics(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()


# ----------------------------------------------------------------------------- main loop
@dataclass
class TrainResult:
    run_dir: Path
    model: HookedTransformer
    results: dict[str, SetResult]
    n_params: dict[str, int]
    seconds: float


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


class RunState:
    """One run being trained: its model, optimizer, data streams, test sets and bookkeeping.

    `train` drives one of these; `mechlistops.ensemble` drives many, stepping their weights
    together and handing each its own weights back at the steps that need them (`due`), so
    files, metrics and resume state are the same whichever trained the run.
    """

    def __init__(self, cfg: RunConfig, run_dir: str | Path, resume: bool = False):
        run_dir = Path(run_dir)
        self.cfg, self.run_dir, t = cfg, run_dir, cfg.train
        self.device = resolve_device(t.device)
        ht_cfg = hooked_transformer_config_dict(cfg.model, cfg.data)
        if resume:
            if (run_dir / ckpt.RESULTS).is_file():
                raise ConfigError(f"{run_dir}: run already finished (results.json exists)")
        elif (run_dir / ckpt.CONFIG).exists():
            raise ConfigError(
                f"{run_dir} already holds a run; pass --resume {run_dir} or choose another --out"
            )

        self.test_sets, self.pools = evaluation_data(cfg.data, extra_ops=t.pretrain_ops)
        exclude = excluded_hashes(cfg.data, self.test_sets)
        self.model = model = build_model(cfg.model, cfg.data, seed=t.seed, device=self.device)
        if t.init_from and not resume:
            _transfer_init(model, cfg)
        self.n_params = count_params(model)
        self.plan = phases(cfg)
        self.snaps = snapshot_steps(t)

        self.step, self.loss_sum, self.loss_count, elapsed = 0, 0.0, 0, 0.0
        self.examples: Counter[str] = Counter()  # training examples seen, by root operator
        self._batch_ops: dict[int, Counter[str]] = {}  # per step, until `record` books it
        self.opt = make_optimizer(model, t)
        if resume:
            if (run_dir / ckpt.STATE).is_file():
                meta = load_state(run_dir, model, self.opt)
                self.step, self.loss_sum = meta["step"], meta["loss_sum"]
                self.loss_count, elapsed = meta["loss_count"], meta.get("elapsed_s", 0.0)
                self.examples = Counter(meta.get("examples", {}))
            elif ckpt.step_path(run_dir, 0).is_file():  # killed before the first resume state
                initial, _ = ckpt.load_tensors(ckpt.step_path(run_dir, 0))
                ckpt.load_state_dict_into(model, initial, ckpt.step_path(run_dir, 0))
            else:  # killed while setting up: the initial weights are rebuilt from the config
                if t.init_from:
                    _transfer_init(model, cfg)
                ckpt.save_tensors(ckpt.step_path(run_dir, 0), model.state_dict())
            ckpt.write_text(
                run_dir / ckpt.METRICS,
                "".join(x + "\n" for x in _read_metrics(run_dir / ckpt.METRICS, self.step)),
            )
            log.info("resuming %s at step %d", run_dir, self.step)
        else:
            run_dir.mkdir(parents=True, exist_ok=True)
            extra = {"n_params": self.n_params}
            if self.pools:
                extra["pools"] = {
                    op: {"size": len(pool), "sha256_16": pool_digest(pool)}
                    for op, pool in self.pools.items()
                }
            ckpt.save_config(run_dir, cfg, ht_cfg, extra)
            ckpt.save_tensors(ckpt.step_path(run_dir, 0), model.state_dict())

        model.train()
        self.eval_names = eval_ops(cfg.data, t.pretrain_ops)
        self.streams = {
            p.index: PoolStream(
                cfg.data, t.batch_size, self.pools, p.ops, p.index, length_buckets=t.length_buckets
            )
            if self.pools
            else TrainStream(
                cfg.data, t.batch_size, exclude, p.ops, p.index, length_buckets=t.length_buckets
            )
            for p in self.plan
        }
        self.started = time.perf_counter() - elapsed
        self.last_eval: dict[str, SetResult] = {}
        self.metrics: dict = {}

    def phase_at(self, step: int) -> Phase:
        return next(p for p in self.plan if p.start <= step < p.start + p.steps)

    def lr(self, phase: Phase, step: int) -> float:
        return lr_at(self.cfg.train, step - phase.start, phase.steps)

    def batch(self, phase: Phase, step: int) -> Examples:
        batch = self.streams[phase.index].batch(step - phase.start)
        ops, counts = np.unique(batch.root_ops, return_counts=True)
        self._batch_ops[step] = Counter({OPERATORS[o]: int(c) for o, c in zip(ops, counts)})
        return batch

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

    def record(self, step: int, phase: Phase, lr: float, loss: float) -> None:
        """Book one finished step; when `due(step)`, self.model and self.opt hold its weights
        and optimizer state: save snapshots, evaluate, write metrics and the resume state."""
        t = self.cfg.train
        self.step = step
        self.loss_sum += loss
        self.loss_count += 1
        self.examples.update(self._batch_ops.pop(step - 1, {}))
        if step in self.snaps:
            ckpt.save_tensors(ckpt.step_path(self.run_dir, step), self.model.state_dict())
        if self.evaluates(step):
            self.last_eval = evaluate_sets(
                self.model, self.test_sets, self.cfg.data, limit=t.eval_size, pools=self.pools
            )
            self.metrics = {
                "step": step,
                "phase": phase.index,
                "lr": lr,
                "train_loss": self.loss_sum / max(self.loss_count, 1),
                "elapsed_s": round(time.perf_counter() - self.started, 2),
                "examples": dict(self.examples),
                **({"epochs": self.epochs()} if self.pools else {}),
                "eval": {k: v.to_dict() for k, v in self.last_eval.items()},
            }
            _append_metrics(self.run_dir / ckpt.METRICS, self.metrics)
            self.loss_sum, self.loss_count = 0.0, 0
        if self.saves_state(step):
            extra = {
                "loss_sum": self.loss_sum,
                "loss_count": self.loss_count,
                "elapsed_s": time.perf_counter() - self.started,
                "examples": dict(self.examples),
            }
            save_state(self.run_dir, self.model, self.opt, step, extra)

    def summary(self) -> str:
        loss = self.metrics["train_loss"]
        accs = " ".join(f"{op} {self.last_eval[op].accuracy:.2f}" for op in self.eval_names)
        return f"loss {loss:.3f} {accs}"

    def finish(self) -> TrainResult:
        """Final evaluation, final weights and results.json; drops the resume state."""
        t = self.cfg.train
        # The loop always evaluates at the last step; redo it only if eval_size trimmed the sets.
        model = self.model
        results = (
            self.last_eval
            if t.eval_size is None
            else evaluate_sets(model, self.test_sets, self.cfg.data, pools=self.pools)
        )
        seconds = time.perf_counter() - self.started
        ckpt.save_tensors(self.run_dir / ckpt.WEIGHTS, model.state_dict())
        ckpt.write_json(
            self.run_dir / ckpt.RESULTS,
            {
                "step": self.step,
                "seconds": round(seconds, 2),
                "n_params": self.n_params,
                "examples": dict(self.examples),
                **({"epochs": self.epochs()} if self.pools else {}),
                "results": {k: v.to_dict() for k, v in results.items()},
            },
        )
        state = self.run_dir / ckpt.STATE
        if state.exists():
            state.unlink()  # a finished run needs no resume state
        return TrainResult(self.run_dir, model, results, self.n_params, seconds)


def train(
    cfg: RunConfig, run_dir: str | Path, resume: bool = False, progress: bool = True
) -> TrainResult:
    """Train (or resume) a run into `run_dir`; returns the final held-out evaluation."""
    run = RunState(cfg, run_dir, resume)
    t = cfg.train
    bar = tqdm(
        total=t.total_steps,
        initial=run.step,
        disable=not progress,
        desc=run.run_dir.name,
        dynamic_ncols=True,
    )
    step = run.step
    while step < t.total_steps:
        phase = run.phase_at(step)
        if step == phase.start and step > 0:
            run.opt = make_optimizer(run.model, t)  # fresh optimizer for the main phase
        lr = run.lr(phase, step)
        for group in run.opt.param_groups:
            group["lr"] = lr
        loss = train_step(run.model, run.opt, run.batch(phase, step), cfg, run.device)
        step += 1
        run.record(step, phase, lr, loss)
        bar.update(1)
        if run.evaluates(step):
            bar.set_postfix_str(run.summary())
    bar.close()
    return run.finish()
