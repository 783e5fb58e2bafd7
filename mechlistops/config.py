"""Run configuration: one frozen dataclass per concern, stdlib only.

A run is rebuilt from its saved `config.json` alone, so every choice that changes data, model
or training lives here with a default, and every default is recorded in the saved run. Values
derived from other fields (d_mlp = 4 * d_model, the vocabulary size, the context length) are
properties or resolved at build time, never stored defaults that could go stale.

Validation raises `ConfigError` with a message a user can act on; the CLI prints it on one line.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from mechlistops.errors import ConfigError

OPERATORS: tuple[str, ...] = ("MAX", "MIN", "MED", "SUM", "PROD", "NADD", "SSUM")
MEDIAN_RULES = ("listops", "lower")
TREE_KINDS = ("mixed", "single")
ACT_FNS = ("relu", "gelu", "gelu_new", "silu")
NORMALIZATIONS = ("LN", "RMS", None)
SCHEDULES = ("constant", "cosine", "linear")
LOSS_ON = ("answer", "sequence")
TRANSFER = ("all", "embed", "no-embed")
MAX_TRAIN_SIZE = 10_000_000  # expressions per operator's pool


def parse_ops(text: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """'SUM,MAX,MED' -> ('SUM', 'MAX', 'MED'), checking every name."""
    names = text.split(",") if isinstance(text, str) else list(text)
    ops = tuple(name.strip().upper() for name in names if name.strip())
    if not ops:
        raise ConfigError("no operators given (expected e.g. SUM,MAX,MED)")
    for op in ops:
        if op not in OPERATORS:
            raise ConfigError(f"unknown operator {op!r}; known: {', '.join(OPERATORS)}")
    if len(set(ops)) != len(ops):
        raise ConfigError(f"operator listed twice in {','.join(ops)}")
    return ops


@dataclass(frozen=True)
class DataConfig:
    """The ListOps task: which operators, how trees are drawn, and how the split is made."""

    ops: tuple[str, ...] = ("SUM", "MAX", "MED")
    weights: tuple[float, ...] | None = None  # mixture weights per op; None = uniform
    tree: str = "mixed"  # "mixed": every node draws its operator; "single": one per tree
    modulus: int = 10
    min_args: int = 2
    max_args: int = 3
    max_depth: int = 3  # 1 = flat expression [OP a b ]
    branch_prob: float = 0.3  # chance that an argument is a subtree (below max_depth)
    median: str = "listops"  # even count: "listops" = floor of mean of middles; "lower"
    chain_of_thought: bool = False  # targets rewrite one nesting level at a time
    seed: int = 0  # test sets, training stream and the SSUM relabelling
    test_size: int = 1000  # per operator, and for the mixture's own test set
    # Test expressions with at least this many leaves never appear in training. Smaller ones
    # (flat expressions: only n^2 + n^3 per operator exist) may, since holding them out would
    # remove a whole slice of the training distribution; evaluation reports both parts.
    holdout_min_leaves: int = 4
    # Finite training pools (mechlistops.pools): N distinct expressions per operator, cycled in
    # epochs; 0 = a fresh sample stream (no expression seen twice, on average).
    train_size: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "ops", parse_ops(self.ops))
        if self.weights is not None:
            weights = tuple(float(w) for w in self.weights)
            object.__setattr__(self, "weights", weights)
            if len(weights) != len(self.ops):
                raise ConfigError(f"{len(weights)} weights given for {len(self.ops)} operators")
            if any(w < 0 or not math.isfinite(w) for w in weights) or sum(weights) <= 0:
                raise ConfigError("mixture weights must be non-negative with a positive sum")
        if self.tree not in TREE_KINDS:
            raise ConfigError(f"tree must be one of {TREE_KINDS}, got {self.tree!r}")
        if not 2 <= self.modulus <= 36:
            raise ConfigError(f"modulus must be in 2..36, got {self.modulus}")
        if not 1 <= self.min_args <= self.max_args:
            raise ConfigError(
                f"need 1 <= min_args <= max_args, got min_args={self.min_args}, "
                f"max_args={self.max_args}"
            )
        if self.max_args > 8:
            raise ConfigError(f"max_args must be at most 8, got {self.max_args}")
        if not 1 <= self.max_depth <= 6:
            raise ConfigError(f"max_depth must be in 1..6, got {self.max_depth}")
        if self.max_args**self.max_depth > 4096:
            raise ConfigError(
                f"max_args={self.max_args} with max_depth={self.max_depth} allows "
                f"{self.max_args**self.max_depth} leaves per expression; keep it under 4096"
            )
        if not 0.0 <= self.branch_prob <= 1.0:
            raise ConfigError(f"branch_prob must be in [0, 1], got {self.branch_prob}")
        if self.median not in MEDIAN_RULES:
            raise ConfigError(f"median must be one of {MEDIAN_RULES}, got {self.median!r}")
        if self.test_size < 1:
            raise ConfigError(f"test_size must be positive, got {self.test_size}")
        if not 0 <= self.train_size <= MAX_TRAIN_SIZE:
            raise ConfigError(
                f"train_size must be in 1..{MAX_TRAIN_SIZE:,} (0 = a fresh sample stream), "
                f"got {self.train_size}"
            )
        if self.train_size and self.tree != "single":
            raise ConfigError(
                "train_size (a pool per operator) needs single-operator trees (tree 'single')"
            )
        if self.train_size:
            limit = self.distinct_per_op
            if self.train_size > limit:
                raise ConfigError(
                    f"train_size {self.train_size:,} is more than the {limit:,} distinct "
                    "expressions per operator these tree settings allow"
                )

    @property
    def distinct_per_op(self) -> int:
        """How many distinct expressions of one operator these tree settings can produce
        (capped at 10**18)."""
        cap, n, bp = 10**18, self.modulus, self.branch_prob
        arities = range(self.min_args, self.max_args + 1)
        count = min(cap, sum(n**k for k in arities))  # the deepest level: leaves only
        for _ in range(self.max_depth - 1):
            choices = (n if bp < 1 else 0) + (count if bp > 0 else 0)
            count = min(cap, sum(min(cap, choices**k) for k in arities))
        return count

    @property
    def mixture_weights(self) -> tuple[float, ...]:
        """Normalised weights, one per op."""
        raw = self.weights or (1.0,) * len(self.ops)
        total = sum(raw)
        return tuple(w / total for w in raw)


@dataclass(frozen=True)
class ModelConfig:
    """Size of the HookedTransformer; n_ctx and d_vocab follow from the DataConfig."""

    n_layers: int = 2
    d_model: int = 64
    n_heads: int = 4
    d_head: int | None = None  # None = d_model // n_heads
    d_mlp: int | None = None  # None = 4 * d_model
    act_fn: str = "relu"
    normalization: str | None = "LN"
    looped: bool = False  # one block's parameters shared by every layer

    def __post_init__(self) -> None:
        for name in ("n_layers", "d_model", "n_heads"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.d_head is None and self.d_model % self.n_heads:
            raise ConfigError(
                f"d_model={self.d_model} is not divisible by n_heads={self.n_heads} "
                "(pass d_head explicitly or choose sizes that divide)"
            )
        if self.d_head is not None and self.d_head < 1:
            raise ConfigError(f"d_head must be positive, got {self.d_head}")
        if self.d_mlp is not None and self.d_mlp < 1:
            raise ConfigError(f"d_mlp must be positive, got {self.d_mlp}")
        if self.act_fn not in ACT_FNS:
            raise ConfigError(f"act_fn must be one of {ACT_FNS}, got {self.act_fn!r}")
        if self.normalization not in NORMALIZATIONS:
            raise ConfigError(
                f"normalization must be one of LN, RMS, none; got {self.normalization!r}"
            )

    @property
    def d_head_resolved(self) -> int:
        return self.d_head if self.d_head is not None else self.d_model // self.n_heads

    @property
    def d_mlp_resolved(self) -> int:
        return self.d_mlp if self.d_mlp is not None else 4 * self.d_model


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, evaluation and checkpointing of one run."""

    steps: int = 6000
    batch_size: int = 256
    # Sort each group of this many consecutive batches by length (then shuffle the batches), so
    # a batch holds similar lengths and less padding is computed; 0 or 1 turns it off.
    length_buckets: int = 16
    lr: float = 3e-3
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.98
    warmup_steps: int = 100
    schedule: str = "cosine"  # "constant" | "cosine" | "linear" decay after warmup
    min_lr_frac: float = 0.1  # lr at the end of the decay, as a fraction of lr
    grad_clip: float | None = 1.0
    loss_on: str = "answer"  # "answer": generated tokens after '='; "sequence": every token
    seed: int = 0  # model initialisation
    eval_interval: int = 500
    eval_size: int | None = None  # examples per test set at periodic evals; None = all
    save_interval: int = 500  # resumable state and a checkpoint every this many steps
    log_checkpoints: bool = True  # also keep weights at log-spaced steps (1, 2, 4, ...)
    device: str = "auto"  # "auto" = cuda when present, else cpu
    # Curriculum: pretrain on another mixture first (fresh optimizer for the main phase).
    pretrain_ops: tuple[str, ...] = ()
    pretrain_steps: int = 0
    # Transfer: start from another run's final weights.
    init_from: str | None = None
    transfer: str = "all"  # "all" | "embed" (only W_E) | "no-embed" (all but W_E)

    def __post_init__(self) -> None:
        if self.pretrain_ops:
            object.__setattr__(self, "pretrain_ops", parse_ops(self.pretrain_ops))
        else:
            object.__setattr__(self, "pretrain_ops", ())
        for name in ("steps", "batch_size", "eval_interval", "save_interval"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.length_buckets < 0:
            raise ConfigError(f"length_buckets must be non-negative, got {self.length_buckets}")
        if self.pretrain_steps < 0 or self.warmup_steps < 0:
            raise ConfigError("pretrain_steps and warmup_steps must be non-negative")
        if bool(self.pretrain_ops) != (self.pretrain_steps > 0):
            raise ConfigError("pretrain_ops and pretrain_steps must be given together")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr must be a positive number, got {self.lr}")
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be non-negative, got {self.weight_decay}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if self.loss_on not in LOSS_ON:
            raise ConfigError(f"loss_on must be one of {LOSS_ON}, got {self.loss_on!r}")
        if self.transfer not in TRANSFER:
            raise ConfigError(f"transfer must be one of {TRANSFER}, got {self.transfer!r}")
        if self.eval_size is not None and self.eval_size < 1:
            raise ConfigError(f"eval_size must be positive, got {self.eval_size}")
        if not 0.0 <= self.min_lr_frac <= 1.0:
            raise ConfigError(f"min_lr_frac must be in [0, 1], got {self.min_lr_frac}")

    @property
    def total_steps(self) -> int:
        return self.pretrain_steps + self.steps


@dataclass(frozen=True)
class RunConfig:
    """Everything needed to rebuild a run: data, model and training."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return {
            "data": _jsonable(dataclasses.asdict(self.data)),
            "model": _jsonable(dataclasses.asdict(self.model)),
            "train": _jsonable(dataclasses.asdict(self.train)),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        try:
            return cls(
                data=_build(DataConfig, raw.get("data", {})),
                model=_build(ModelConfig, raw.get("model", {})),
                train=_build(TrainConfig, raw.get("train", {})),
            )
        except (TypeError, AttributeError) as exc:
            raise ConfigError(f"config does not describe a mechlistops run: {exc}") from None


def replace(cfg: Any, **changes: Any) -> Any:
    """dataclasses.replace that ignores None values (unset CLI options)."""
    return dataclasses.replace(cfg, **{k: v for k, v in changes.items() if v is not None})


def _build(kind: type, raw: dict[str, Any]) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{kind.__name__} section must be a JSON object")
    known = {f.name for f in dataclasses.fields(kind)}
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"unknown {kind.__name__} fields: {', '.join(sorted(unknown))}")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    return kind(**values)


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
