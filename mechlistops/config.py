"""Run configuration: one frozen dataclass per concern, stdlib only.

A run is rebuilt from its saved `config.json` alone, so every choice that changes data, model
or training lives here with a default, and every default is recorded in the saved run. Values
derived from other fields (d_mlp = 4 * d_model, the vocabulary size, the context length) are
properties or resolved at build time, never stored defaults that could go stale.

Validation raises `ConfigError` with a message a user can act on; the CLI prints it on one line.

Each field is a knob written once: its default, its help text and its choices live here (field
metadata, through `knob`), and `mechlistops.cli.options` builds the command-line options from
them. Metadata keys: "help"; "choices" (a tuple defined below); "none" (the word that means
None on the command line: every optional knob has one spelled-out "off" or "auto" value);
"flag" (a command-line name other than --field-name); "shown" (the default as help states
it); "metavar"; "cli": False (recorded, not an option).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from mechlistops.errors import ConfigError

LISTOPS_OPERATORS: tuple[str, ...] = ("MAX", "MIN", "MED", "SUM", "PROD", "NADD", "SSUM")
# The permutation family's operators (mechlistops.groups.PERM_OPS, listed here so that this
# module stays stdlib only; a test holds the two lists equal).
PERM_OPERATORS: tuple[str, ...] = ("PRD", "SGN", "PNT", "CYC", "BLK", "SPRD")
# Every operator, each family's in order: an operator's index here keys its RNG streams and
# its int8 code in the data arrays, so new operators are appended, never inserted.
OPERATORS: tuple[str, ...] = LISTOPS_OPERATORS + PERM_OPERATORS
FAMILIES = {"listops": LISTOPS_OPERATORS, "perm": PERM_OPERATORS}
DEFAULT_OPS = {"listops": ("SUM", "MAX", "MED"), "perm": ("PRD", "SGN", "PNT")}
SUBGROUP_OPERATORS = ("CYC", "BLK")  # operands from a subgroup: single-operator trees only
GROUP_K = (3, 5)  # S_3 .. S_5
MEDIAN_RULES = ("listops", "lower")
TREE_KINDS = ("mixed", "single")
POOL_DRAWS = ("distinct", "sampled")
ACT_FNS = ("relu", "gelu", "gelu_new", "silu")
NORMALIZATIONS = ("LN", "RMS", None)
# How an ensemble compiles its training step (an option of training, like the device: not part
# of a run; mechlistops.ensemble).
COMPILE_MODES = ("off", "default", "reduce-overhead")
SCHEDULES = ("constant", "cosine", "linear", "wsd")
LOSS_ON = ("answer", "sequence")
TRANSFER = ("all", "embed", "no-embed")
MAX_TRAIN_SIZE = 10_000_000  # expressions per operator's pool
MAX_STEPS = 100_000_000
MAX_BATCH_SIZE = 65_536  # examples per step or per evaluation pass (a stream chunk is 64 steps)
MAX_LENGTH_BUCKETS = 1_024  # batches pooled and sorted by length
MODULI = (2, 36)  # smallest and largest modulus: one token per residue, 0-9 then a-z sized
MAX_SEED = 2**32 - 1  # seeds are non-negative (numpy's and torch's generators need that)


def knob(default: Any, help: str, **meta: Any) -> Any:
    """A config field with its command-line help and metadata (see the module docstring)."""
    return field(default=default, metadata={"help": help, **meta})


def family_of(op: str) -> str:
    """The task family an operator belongs to."""
    return next(family for family, ops in FAMILIES.items() if op in ops)


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
    """The task: which family and operators, how trees are drawn, and how the split is made."""

    ops: tuple[str, ...] | None = knob(
        None,
        "operators, e.g. SUM,MAX,MED (perm family: PRD,SGN,...)",
        none="default",
        shown="SUM,MAX,MED; perm: PRD,SGN,PNT",
    )
    family: str = knob(
        "listops",
        "listops: values mod n; perm: products of permutations in S_k",
        choices=tuple(FAMILIES),
    )
    group_k: int = knob(3, "perm family: the elements of S_k, k in 3..5 (6, 24, 120 tokens)")
    weights: tuple[float, ...] | None = knob(
        None, "mixture weights, one per op", none="equal", metavar="W1,W2,..."
    )
    tree: str = knob(
        "mixed", "mixed: every node draws its operator; single: one per tree", choices=TREE_KINDS
    )
    modulus: int = knob(10, "values are residues mod n (2..36)")
    min_args: int = knob(2, "fewest operands per node")
    max_args: int = knob(3, "most operands per node")
    max_depth: int = knob(3, "nesting depth (1 = flat expression [OP a b ])")
    branch_prob: float = knob(0.3, "chance that an operand is a subtree (below max depth)")
    median: str = knob(
        "listops",
        "even-count median: listops = floor of the mean of the middles; lower",
        choices=MEDIAN_RULES,
    )
    chain_of_thought: bool = knob(
        False, "targets rewrite the expression one nesting level at a time", flag="cot"
    )
    seed: int = knob(
        0,
        "seed of the test sets, training data and the SSUM relabelling",
        flag="data-seed",
        shown="the --seed value",
    )
    test_size: int = knob(1000, "examples per test set (per operator, and the mixture's)")
    # Test expressions with at least this many leaves never appear in training. Smaller ones
    # (flat expressions: only n^2 + n^3 per operator exist) may, since holding them out would
    # remove a whole slice of the training distribution; evaluation reports both parts.
    holdout_min_leaves: int = knob(
        4,
        "test expressions with at least this many leaves never train (0: all of them)",
    )
    # Finite training pools (mechlistops.pools): N distinct expressions per operator, cycled in
    # epochs; 0 = a fresh sample stream (no expression seen twice, on average).
    train_size: int = knob(
        0,
        "finite training pool: N distinct expressions per operator, cycled in epochs "
        "(needs --tree single; 0 = a fresh sample stream)",
    )
    # How a pool's N rows are drawn. distinct: N different expressions, so flat ones (few exist)
    # are rarer than in the stream, the more so the larger N; sampled: N draws of the sampler,
    # repeats kept, so the pool has the stream's mix of depths.
    pool_draw: str = knob(
        "distinct",
        "finite pools: distinct = N different expressions; sampled = N draws of the sampler, "
        "repeats kept (the stream's mix of depths)",
        choices=POOL_DRAWS,
    )

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ConfigError(f"family must be one of {tuple(FAMILIES)}, got {self.family!r}")
        ops = DEFAULT_OPS[self.family] if self.ops is None else self.ops
        object.__setattr__(self, "ops", parse_ops(ops))
        if self.weights is not None:
            weights = tuple(float(w) for w in self.weights)
            object.__setattr__(self, "weights", weights)
            if len(weights) != len(self.ops):
                raise ConfigError(f"{len(weights)} weights given for {len(self.ops)} operators")
            if any(w < 0 or not math.isfinite(w) for w in weights) or sum(weights) <= 0:
                raise ConfigError("mixture weights must be non-negative with a positive sum")
        foreign = [op for op in self.ops if op not in FAMILIES[self.family]]
        if foreign:
            raise ConfigError(
                f"{','.join(foreign)} not in the {self.family} family; its operators: "
                f"{', '.join(FAMILIES[self.family])}"
            )
        if not GROUP_K[0] <= self.group_k <= GROUP_K[1]:
            raise ConfigError(
                f"group_k must be in {GROUP_K[0]}..{GROUP_K[1]} (S_k), got {self.group_k}"
            )
        if self.family == "perm" and self.modulus != 10:
            raise ConfigError("modulus belongs to the listops family; perm uses group_k")
        if self.family == "listops" and self.group_k != 3:
            raise ConfigError("group_k belongs to the perm family; listops uses modulus")
        subgroup = [op for op in self.ops if op in SUBGROUP_OPERATORS]
        if subgroup and self.tree != "single":
            raise ConfigError(
                f"{','.join(subgroup)} take operands from a subgroup: they need single-operator "
                "trees (tree 'single')"
            )
        if self.tree not in TREE_KINDS:
            raise ConfigError(f"tree must be one of {TREE_KINDS}, got {self.tree!r}")
        if not MODULI[0] <= self.modulus <= MODULI[1]:
            raise ConfigError(f"modulus must be in {MODULI[0]}..{MODULI[1]}, got {self.modulus}")
        check_seed("data seed", self.seed)
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
        if self.holdout_min_leaves < 0:
            raise ConfigError(
                f"holdout_min_leaves must be 0 or more (0: every test expression is held out), "
                f"got {self.holdout_min_leaves}"
            )
        if not 0.0 <= self.branch_prob <= 1.0:
            raise ConfigError(f"branch_prob must be in [0, 1], got {self.branch_prob}")
        if self.median not in MEDIAN_RULES:
            raise ConfigError(f"median must be one of {MEDIAN_RULES}, got {self.median!r}")
        if not 1 <= self.test_size <= 1_000_000:
            raise ConfigError(f"test_size must be in 1..1,000,000, got {self.test_size}")
        if not 0 <= self.train_size <= MAX_TRAIN_SIZE:
            raise ConfigError(
                f"train_size must be in 1..{MAX_TRAIN_SIZE:,} (0 = a fresh sample stream), "
                f"got {self.train_size}"
            )
        if self.train_size and self.tree != "single":
            raise ConfigError(
                "train_size (a pool per operator) needs single-operator trees (tree 'single')"
            )
        if self.pool_draw not in POOL_DRAWS:
            raise ConfigError(f"pool_draw must be one of {POOL_DRAWS}, got {self.pool_draw!r}")
        if self.pool_draw != "distinct" and not self.train_size:
            raise ConfigError("pool_draw belongs to finite pools: give --train-size too")
        if self.train_size and self.pool_draw == "distinct":
            op = min(self.ops, key=self.distinct)
            if self.train_size > self.distinct(op):
                raise ConfigError(
                    f"train_size {self.train_size:,} is more than the {self.distinct(op):,} "
                    f"distinct {op} expressions these tree settings allow"
                )

    @property
    def n_values(self) -> int:
        """Value tokens: the residues mod n (listops) or the k! elements of S_k (perm)."""
        return self.modulus if self.family == "listops" else math.factorial(self.group_k)

    def leaf_values(self, op: str) -> int:
        """How many values `op`'s operands take: a subgroup operator's are its subgroup's
        (the cyclic subgroup has k elements, the stabiliser of a point (k-1)!)."""
        if op == "CYC":
            return self.group_k
        if op == "BLK":
            return math.factorial(self.group_k - 1)
        return self.n_values

    def distinct(self, op: str) -> int:
        """How many distinct expressions of `op` these tree settings can produce (capped at
        10**18)."""
        cap, n, bp = 10**18, self.leaf_values(op), self.branch_prob
        arities = range(self.min_args, self.max_args + 1)
        count = min(cap, sum(n**k for k in arities))  # the deepest level: leaves only
        for _ in range(self.max_depth - 1):
            choices = (n if bp < 1 else 0) + (count if bp > 0 else 0)
            count = min(cap, sum(min(cap, choices**k) for k in arities))
        return count

    @property
    def training_data(self) -> str:
        """The training data in words: a pool ("3,000 distinct", "30,000 sampled": its size
        and draw) or "fresh stream", then each setting of the task that is not the default
        ("20,000 sampled, 3 operands, mod 11"), so that runs on different tasks are never
        taken for runs on one (transition tables, population analyses)."""
        pool = f"{self.train_size:,} {self.pool_draw}" if self.train_size else "fresh stream"
        return ", ".join([pool, *self._task_words()])

    def _task_words(self) -> list[str]:
        d = DataConfig()
        words = []
        if self.weights is not None and len(set(self.weights)) > 1:
            words.append("weights " + ":".join(f"{w:g}" for w in self.weights))
        if self.tree != d.tree and not self.train_size:  # a pool always has single trees
            words.append("single-operator trees" if self.tree == "single" else "mixed trees")
        if self.family == "perm" and self.group_k != d.group_k:
            words.append(f"S_{self.group_k}")
        if self.modulus != d.modulus:
            words.append(f"mod {self.modulus}")
        if (self.min_args, self.max_args) != (d.min_args, d.max_args):
            args = (
                self.min_args
                if self.min_args == self.max_args
                else "-".join(map(str, (self.min_args, self.max_args)))
            )
            words.append(f"{args} operand{'s' * (self.max_args > 1)}")
        if self.max_depth != d.max_depth:
            words.append(f"depth {self.max_depth}")
        if self.branch_prob != d.branch_prob:
            words.append(f"branching {self.branch_prob:g}")
        if self.median != d.median:
            words.append(f"{self.median} median")
        if self.chain_of_thought:
            words.append("chain of thought")
        if self.holdout_min_leaves == 0:  # every test expression has at least 0 leaves
            words.append("every test expression held out")
        elif self.holdout_min_leaves != d.holdout_min_leaves:
            words.append(f"held out from {self.holdout_min_leaves} leaves")
        return words

    @property
    def mixture_weights(self) -> tuple[float, ...]:
        """Normalised weights, one per op."""
        raw = self.weights or (1.0,) * len(self.ops)
        total = sum(raw)
        return tuple(w / total for w in raw)


def check_seed(name: str, seed: int) -> None:
    if not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"{name} must be in 0..{MAX_SEED:,}, got {seed}")


@dataclass(frozen=True)
class ModelConfig:
    """Size of the HookedTransformer; n_ctx and d_vocab follow from the DataConfig."""

    n_layers: int = knob(2, "transformer blocks (with --looped: applications of one block)")
    d_model: int = knob(64, "residual stream width")
    n_heads: int = knob(4, "attention heads per block")
    d_head: int | None = knob(None, "width of a head (auto = d_model / n_heads)", none="auto")
    d_mlp: int | None = knob(None, "MLP hidden width (auto = 4 * d_model)", none="auto")
    act_fn: str = knob("relu", "MLP activation", choices=ACT_FNS)
    normalization: str | None = knob(
        "LN", "normalisation before each sublayer", choices=NORMALIZATIONS, none="none"
    )
    looped: bool = knob(False, "share one block's parameters across all layers")

    def __post_init__(self) -> None:
        limits = {"n_layers": 64, "d_model": 16384, "n_heads": 1024, "d_head": 16384}
        limits["d_mlp"] = 65536
        for name, most in limits.items():
            value = getattr(self, name)
            if value is not None and not 1 <= value <= most:
                raise ConfigError(f"{name} must be in 1..{most:,}, got {value}")
        if self.d_head is None and self.d_model % self.n_heads:
            raise ConfigError(
                f"d_model={self.d_model} is not divisible by n_heads={self.n_heads} "
                "(pass d_head explicitly or choose sizes that divide)"
            )
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

    steps: int = knob(6000, "optimisation steps (of the main phase)")
    batch_size: int = knob(256, "examples per step")
    # Sort each group of this many consecutive batches by length (then shuffle the batches), so
    # a batch holds similar lengths and less padding is computed.
    length_buckets: int = knob(16, "batches pooled and sorted by length (0 = off)")
    lr: float = knob(3e-3, "peak learning rate (AdamW)")
    weight_decay: float = knob(0.1, "AdamW decoupled weight decay, on matrices only")
    beta1: float = knob(0.9, "AdamW beta1")
    beta2: float = knob(0.98, "AdamW beta2")
    warmup_steps: int = knob(100, "linear warmup steps")
    schedule: str = knob("cosine", "learning rate after warmup", choices=SCHEDULES)
    min_lr_frac: float = knob(0.1, "lr at the end of the decay, as a fraction of lr")
    # wsd (warmup, stable, decay): constant lr, then linear decay to min_lr_frac * lr over the
    # phase's last decay_steps steps: train at a constant rate, then consolidate.
    decay_steps: int = knob(0, "--schedule wsd: steps of linear decay at the end of the phase")
    grad_clip: float = knob(1.0, "clip the gradient norm to this (0 = no clipping)")
    loss_on: str = knob(
        "answer", "answer: the generated tokens after '='; sequence: every token", choices=LOSS_ON
    )
    seed: int = knob(0, "initialisation seed (and the data seed unless --data-seed)")
    eval_interval: int = knob(500, "evaluate every this many steps (and at the end)")
    eval_size: int | None = knob(
        None, "examples per test set at periodic evaluations (all = every one)", none="all"
    )
    eval_batch_size: int = knob(1000, "test examples per forward pass when evaluating")
    save_interval: int = knob(500, "resume state and a checkpoint every this many steps")
    log_checkpoints: bool = knob(True, "also keep weights at log-spaced steps (1, 2, 4, ...)")
    log_snapshots: int = knob(
        0,
        "also keep weights at about N steps spaced evenly in log(step) from 1 to the end, "
        "dense early, as progress-measure studies use (0 = off)",
    )
    # Branching (`mechlistops train --branch-from RUN@STEP`): a kept resume state lets a run be
    # continued from that step with another length or decay, exactly as if trained so.
    keep_states: bool = knob(
        False, "also keep the resume state of every save_interval, to branch the run from"
    )
    # Curriculum: pretrain on another mixture first (fresh optimizer for the main phase).
    pretrain_ops: tuple[str, ...] = knob(
        (), "curriculum: pretrain on these operators first", none="none"
    )
    pretrain_steps: int = knob(0, "curriculum: steps of the pretraining phase")
    # Transfer: start from another run's final weights.
    init_from: str | None = knob(None, "start from another run's final weights", none="none")
    transfer: str = knob(
        "all", "which weights --init-from copies: all, embed (W_E), no-embed", choices=TRANSFER
    )
    # Like-for-like budgets: the main phase lasts until about budget_examples training examples
    # of budget_op (steps = ceil(N / (batch_size * OP's mixture weight)), replacing `steps`).
    budget_op: str | None = knob(
        None, "operator whose training examples set the budget", none="none", choices=OPERATORS
    )
    budget_examples: int = knob(
        0, "train until about N examples of --budget-op (0 = off: --steps decides)"
    )
    # Convergence: stop at an evaluation once every test set reaches stop_accuracy, or once the
    # mean held-out accuracy over the operators has not improved by stop_delta for
    # stop_patience evaluations. The reason and step are recorded in results.json.
    stop_accuracy: float = knob(0.0, "stop once every test set's accuracy reaches this (0 = off)")
    stop_patience: int = knob(
        0, "stop after this many evaluations without held-out improvement (0 = off)"
    )
    stop_delta: float = knob(0.005, "improvement in mean held-out accuracy that counts")
    # How the training stream draws its batches (data.TrainStream, pools.PoolStream): batches
    # come in chunks of `stream_chunk_steps`, each from its own RNG, drawing
    # stream_oversample * rows + stream_extra_rows candidates before filtering held-out
    # expressions. They decide which batches a run sees, so they are recorded; not options.
    stream_chunk_steps: int = knob(64, "batches per stream chunk", cli=False)
    stream_oversample: float = knob(1.05, "candidates drawn per row needed", cli=False)
    stream_extra_rows: int = knob(64, "extra candidates drawn per chunk", cli=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "pretrain_ops", parse_ops(self.pretrain_ops) if self.pretrain_ops else ()
        )
        check_seed("seed", self.seed)
        positive = ("steps", "batch_size", "eval_interval", "eval_batch_size", "save_interval")
        for name in (*positive, "stream_chunk_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("batch_size", "eval_batch_size"):
            if getattr(self, name) > MAX_BATCH_SIZE:
                raise ConfigError(
                    f"{name} must be at most {MAX_BATCH_SIZE:,}, got {getattr(self, name):,}"
                )
        if not (0 <= self.length_buckets <= MAX_LENGTH_BUCKETS) or self.length_buckets == 1:
            raise ConfigError(
                f"length_buckets must be 0 (off) or 2..{MAX_LENGTH_BUCKETS:,}, "
                f"got {self.length_buckets}"
            )
        if max(self.steps, self.pretrain_steps, self.warmup_steps) > MAX_STEPS:
            raise ConfigError(
                f"steps, pretrain_steps and warmup_steps must be at most {MAX_STEPS:,}"
            )
        if self.pretrain_steps < 0 or self.warmup_steps < 0:
            raise ConfigError("pretrain_steps and warmup_steps must be non-negative")
        if self.budget_op is not None and self.budget_op not in OPERATORS:
            raise ConfigError(f"unknown operator {self.budget_op!r}; known: {', '.join(OPERATORS)}")
        if self.budget_examples < 0 or bool(self.budget_op) != (self.budget_examples > 0):
            raise ConfigError(
                "budget_op and budget_examples (a positive count) must be given together"
            )
        if not 0.0 <= self.stop_accuracy <= 1.0:
            raise ConfigError(f"stop_accuracy must be in [0, 1], got {self.stop_accuracy}")
        if not 0 <= self.log_snapshots <= 10_000:
            raise ConfigError(f"log_snapshots must be in 0..10,000, got {self.log_snapshots}")
        if self.stop_patience < 0:
            raise ConfigError(f"stop_patience must be non-negative, got {self.stop_patience}")
        if not (self.stop_delta >= 0 and math.isfinite(self.stop_delta)):
            raise ConfigError(f"stop_delta must be a non-negative number, got {self.stop_delta}")
        if bool(self.pretrain_ops) != (self.pretrain_steps > 0):
            raise ConfigError("pretrain_ops and pretrain_steps must be given together")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr must be a positive number, got {self.lr}")
        for name in ("weight_decay", "grad_clip", "stream_extra_rows"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ConfigError(f"{name} must be a non-negative number, got {value}")
        for name in ("beta1", "beta2"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not (self.stream_oversample >= 1.0 and math.isfinite(self.stream_oversample)):
            raise ConfigError(f"stream_oversample must be >= 1, got {self.stream_oversample}")
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
        if (self.schedule == "wsd") != (self.decay_steps > 0) or self.decay_steps < 0:
            raise ConfigError(
                "schedule wsd needs decay_steps (a positive count), and only wsd takes decay_steps;"
                f" got schedule {self.schedule!r}, decay_steps {self.decay_steps}"
            )
        if self.budget_op is None and self.decay_steps > self.steps:
            raise ConfigError(
                f"decay_steps ({self.decay_steps:,}) must be at most steps ({self.steps:,})"
            )

    @property
    def total_steps(self) -> int:
        return self.pretrain_steps + self.steps


@dataclass(frozen=True)
class RunConfig:
    """Everything needed to rebuild a run: data, model and training."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        t = self.train
        if t.budget_examples:  # the steps of a budget follow from the mixture
            if t.budget_op not in self.data.ops:
                raise ConfigError(
                    f"budget operator {t.budget_op} is not in the mixture {','.join(self.data.ops)}"
                )
            share = self.data.mixture_weights[self.data.ops.index(t.budget_op)]
            if share == 0:
                raise ConfigError(f"budget operator {t.budget_op} has mixture weight 0")
            steps = math.ceil(t.budget_examples / (t.batch_size * share))
            if steps > MAX_STEPS:
                raise ConfigError(
                    f"a budget of {t.budget_examples:,} examples needs {steps:,} steps"
                )
            object.__setattr__(self, "train", dataclasses.replace(t, steps=steps))

    def to_dict(self) -> dict[str, Any]:
        return {
            "data": _jsonable(dataclasses.asdict(self.data)),
            "model": _jsonable(dataclasses.asdict(self.model)),
            "train": _jsonable(dataclasses.asdict(self.train)),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        """The config of `to_dict`'s output, also as saved by earlier versions (see _upgrade)."""
        try:
            return cls(
                data=_build(DataConfig, raw.get("data", {})),
                model=_build(ModelConfig, raw.get("model", {})),
                train=_build(TrainConfig, _upgrade_train(raw.get("train", {}))),
            )
        except (TypeError, AttributeError) as exc:
            raise ConfigError(f"config does not describe a mechlistops run: {exc}") from None


def _upgrade_train(raw: Any) -> Any:
    """A train section as run format 1 saved it, in today's terms: `device` was saved (it is
    now an argument of training, not part of a run), and no clipping was null (now 0)."""
    if not isinstance(raw, dict):
        return raw
    raw = {k: v for k, v in raw.items() if k != "device"}
    if "grad_clip" in raw and raw["grad_clip"] is None:
        raw["grad_clip"] = 0.0
    return raw


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
