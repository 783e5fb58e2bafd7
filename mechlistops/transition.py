"""Learning transitions: the smallest model that learns an operation, alone and in a mixture.

For each operator and mixture, final test accuracy against log10(parameter count) over the
sweep's sizes and seeds, summarised (../shared/PAPER.md, "Learning transition"):
- N* (midpoint): the midpoint of a sigmoid acc = lo + (hi - lo) / (1 + exp(-k (x - x0)))
  fitted in x = log10(parameters); reported only when the fit converges and its midpoint lies
  inside the sizes measured, otherwise the reason is given instead of a number;
- N* (threshold), three ways at each threshold (default 0.9, also 0.99): the smallest size
  whose median accuracy over seeds reaches it (`smallest_passing`, the paper's step
  statistic); the medians' crossing, interpolated in log parameters (`crossing`); and the
  size where half the runs pass, from a logistic fit of pass/fail over every run
  (`pass_rate`, for populations whose seeds either learn or do not); "not reached" when no
  size does.
Confidence intervals come from bootstrapping seeds within each size; the ratio N*(alone) /
N*(in mixture) gets its interval from independent bootstraps of the two. The bootstraps run in
parallel processes, each statistic on its own random stream (the midpoint's resamples, a
sigmoid fit each, drawn first and fitted in chunks), so the intervals are the same with any
number of processes.
"""

from __future__ import annotations

import csv
import math
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from scipy.optimize import OptimizeWarning, curve_fit

from mechlistops import checkpoint as ckpt
from mechlistops.atomic import atomic_write
from mechlistops.config import RunConfig, TrainConfig
from mechlistops.errors import ConfigError
from mechlistops.sweep import SWEEP_FILE, finished_runs, load_sweep

GROUPS = ("data", "training")  # runs that differ in these are never pooled into one transition


def varying_groups(frame: pd.DataFrame) -> list[str]:
    """The columns of GROUPS whose values differ between the rows (those to name the rows by)."""
    return [c for c in GROUPS if c in frame.columns and frame[c].nunique() > 1]


# TrainConfig knobs a training label names where a run's value is not the default, and how.
_LABELLED_KNOBS = (
    ("lr", "lr {:g}"),
    ("weight_decay", "weight decay {:g}"),
    ("batch_size", "batch {:,}"),
    ("warmup_steps", "warmup {:,}"),
    ("beta1", "beta1 {:g}"),
    ("beta2", "beta2 {:g}"),
    ("grad_clip", "clip {:g}"),
    ("loss_on", "loss on {}"),
    ("pretrain_steps", "pretrained {:,} steps"),
    ("stop_accuracy", "stopping at accuracy {:g}"),
    ("stop_patience", "stopping after {:,} evaluations without gain"),
    ("stop_delta", "gain {:g}"),  # named only with a patience: without one it is unused
)


def schedule_label(t: TrainConfig) -> str:
    """The main phase's budget and learning-rate curve in words: "6,000 cosine", "6,000
    cosine (to 0)" (a floor other than the default), "28,000 wsd (10,000 decay to 0)" (a wsd
    schedule always names its decay, so that runs of equal steps and different decays are
    never taken for one budget); a budget in examples (--budget-op) by its examples, not the
    steps that follow from each mixture ("25,600 SUM examples, cosine"), so that SUM alone and
    SUM in a mixture with equal SUM examples are compared as one budget."""
    floor = "to 0" if t.min_lr_frac == 0 else f"to {t.min_lr_frac:g}x"
    if t.schedule == "wsd":
        shape = f" ({t.decay_steps:,} decay {floor})"
    elif t.schedule != "constant" and t.min_lr_frac != TrainConfig().min_lr_frac:
        shape = f" ({floor})"
    else:
        shape = ""
    budget = f"{t.budget_examples:,} {t.budget_op} examples," if t.budget_op else f"{t.steps:,}"
    return f"{budget} {t.schedule}{shape}"


def training_label(run_dir: Path, cfg: RunConfig | None = None) -> str:
    """How a run was trained, in words: its schedule (`schedule_label`), then each knob of
    _LABELLED_KNOBS that is not the default ("28,000 wsd (10,000 decay to 0), weight decay
    1"); a run continued from another (init_from) as its source's + its own ("18,000
    constant + 10,000 linear"), naming the weights it copied where not all."""
    t = (cfg or ckpt.load_run_config(run_dir)).train
    default = TrainConfig()
    own = ", ".join(
        [schedule_label(t)]
        + [
            form.format(getattr(t, knob))
            for knob, form in _LABELLED_KNOBS
            if getattr(t, knob) != getattr(default, knob)
            and (knob != "stop_delta" or t.stop_patience)
        ]
    )
    if t.init_from and ckpt.holds_run(Path(t.init_from)):
        if t.transfer != default.transfer:
            own += f", {t.transfer} weights copied"
        return f"{training_label(Path(t.init_from))} + {own}"
    return own


def final_accuracies(paths: Path | list[Path]) -> pd.DataFrame:
    """One row per (finished run, test set) at the end of training: run (its name below the
    path given), mixture (with " after OPS" for a curriculum), data (the training pool in
    words), train_size (0: a fresh stream), training (`training_label`), d_model, seed,
    n_params, op, accuracy, accuracy_heldout, accuracy_pool and memorisation_gap (pool minus
    held-out; None without pools), step."""
    return accuracies_at(paths)


def runs_of(paths: list[Path]) -> list[tuple[str, Path, RunConfig]]:
    """(name, run directory, config) of each run the paths give: a sweep's members (finished
    or not, so that a sweep can be read at a step while it trains), or the finished runs a
    run or a folder of runs holds (sweep.finished_runs); named by the path below the one given,
    prefixed by its folder's name when several are given."""
    runs = []
    for p in map(Path, paths):
        prefix = f"{p.name}/" if len(paths) > 1 else ""
        if (p / SWEEP_FILE).is_file():
            runs += [(prefix + m.name, p / m.name, m.config) for m in load_sweep(p).members()]
            continue
        for run in finished_runs([p]):
            name = prefix + (run.relative_to(p).as_posix() if run != p else p.name)
            runs.append((name, run, ckpt.load_run_config(run)))
    return runs


def accuracies_at(
    paths: Path | list[Path], step: int | None = None, examples: tuple[str, int] | None = None
) -> pd.DataFrame:
    """As `final_accuracies`, for the runs of one path or several (sweeps, runs, folders of
    runs), read from each run's evaluations at a point of training: exactly at `step` (it must
    be an evaluation step), or at the first evaluation by which the run had seen `examples` =
    (OP, N) training examples of OP; then `examples_seen` says how many it had (the read is
    exact to within one eval_interval of examples). Runs that never reached the point
    (unfinished, failed) are left out and named in `df.attrs["missing"]`. Neither given: the
    final results."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    tables = [Path(p) for p in paths if is_runs_table(p)]
    if tables and (step is not None or examples is not None):
        raise ConfigError(
            f"{tables[0]}: a runs table holds the accuracies it was written with; reading at a "
            "step or a count of examples needs the runs"
        )
    rows, missing = [], []
    for name, run_dir, cfg in runs_of([p for p in paths if not is_runs_table(p)]):
        if step is None and examples is None:
            saved = ckpt.read_results(run_dir)
            record = None if saved is None else {**saved, "eval": saved["results"]}
        else:
            record = _record_at(run_dir, step, examples)
        if record is None:
            missing.append(name)
            continue
        n_params = ckpt.read_n_params(run_dir)
        mixture = "+".join(cfg.data.ops)
        if cfg.train.pretrain_steps:  # a curriculum: not the mixture alone
            mixture += " after " + "+".join(cfg.train.pretrain_ops)
        training = training_label(run_dir, cfg)
        for op, r in record["eval"].items():
            if op == "mixture":
                continue
            rows.append(
                {
                    "run": name,
                    "mixture": mixture,
                    "data": cfg.data.training_data,
                    "train_size": cfg.data.train_size,
                    "training": training,
                    "d_model": cfg.model.d_model,
                    "seed": cfg.train.seed,
                    "n_params": n_params,
                    "op": op,
                    "accuracy": r["accuracy"],
                    "accuracy_heldout": r["accuracy_heldout"],
                    "accuracy_pool": r.get("accuracy_pool"),
                    "baseline": r.get("baseline"),  # majority-class accuracy of the test set
                    "memorisation_gap": r.get("memorisation_gap"),
                    "step": record["step"],
                    **({"examples_seen": record["examples"][examples[0]]} if examples else {}),
                }
            )
    df = pd.DataFrame(rows)
    if tables:
        df = pd.concat([df, *map(read_runs_table, tables)], ignore_index=True)
        # one run given twice (a table and the folder it was made from, or a table twice):
        # the same name, arm, data, training, size and seed. Runs of two studies laid out alike
        # share names but not their data or training, and both count.
        twice = df[df.duplicated(["run", "op", "mixture", *GROUPS, "n_params", "seed"])]
        if len(twice):
            raise ConfigError(
                f"run {twice.run.iloc[0]} is given twice (in two of the tables and folders given)"
            )
    df.attrs["missing"] = missing  # members unfinished, failed or short of the point
    return df


# The runs table: `accuracies_at`'s rows as CSV, so that transitions can be fitted again (and
# figures drawn) from a small file kept beside the findings, without the run folders. Each
# column and whether a table must have it; the others are empty where absent.
TABLE_COLUMNS = {
    "run": True,
    "op": True,
    "mixture": True,
    "data": False,
    "train_size": False,
    "training": False,
    "d_model": False,
    "seed": True,
    "n_params": True,
    "accuracy": True,
    "accuracy_heldout": False,
    "accuracy_pool": False,
    "baseline": False,
    "memorisation_gap": False,
    "step": False,
}
_TEXT = ("run", "op", "mixture", "data", "training")
_COUNTS = ("train_size", "d_model", "seed", "n_params", "step")
_SHARES = ("accuracy", "accuracy_heldout", "accuracy_pool", "baseline")


def is_runs_table(path) -> bool:
    return Path(path).suffix.lower() == ".csv"


def write_runs_table(df: pd.DataFrame, path: Path | str) -> Path:
    """`accuracies_at`'s rows as a runs table at `path` (atomically)."""
    path = Path(path)
    table = df[[c for c in TABLE_COLUMNS if c in df.columns]]
    atomic_write(path, lambda tmp: table.to_csv(tmp, index=False))
    return path


def read_runs_table(path: Path | str) -> pd.DataFrame:
    """A runs table (`write_runs_table`, or one made by hand with at least run, op, mixture,
    seed, n_params and accuracy), checked: ConfigError naming the problem where it is missing,
    not CSV, or holds a value no run can have (sizes and seeds that are not whole numbers >= 0,
    accuracies outside [0, 1]). A table without data or training says "not stated" there, so
    that its runs are never pooled with runs that state them."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such runs table")
    try:
        df = pd.read_csv(path, dtype={c: str for c in _TEXT}, keep_default_na=False, na_values=[""])
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise ConfigError(f"{path}: not a runs table ({str(e).strip().splitlines()[0]})") from None
    absent = [c for c, required in TABLE_COLUMNS.items() if required and c not in df.columns]
    if absent:
        raise ConfigError(f"{path}: not a runs table (no column {', '.join(absent)})")
    if df.empty:
        raise ConfigError(f"{path}: the runs table has no runs")
    short = _short_row(path)
    if short:
        raise ConfigError(f"{path}: {short}: the table is cut short or malformed")
    for c in GROUPS:
        if c not in df.columns:
            df[c] = "not stated"
    for c in _TEXT:
        if c in df.columns and df[c].isna().any():
            raise ConfigError(f"{path}: column {c} has an empty cell")
    for c in (*_COUNTS, *_SHARES, "memorisation_gap"):
        if c not in df.columns:
            df[c] = None
            continue
        values = pd.to_numeric(df[c], errors="coerce")
        bad = (values.isna() & df[c].notna()) | np.isinf(values)
        if TABLE_COLUMNS[c]:
            bad |= values.isna()
        if c in _COUNTS:
            bad |= (values < 0) | (values > 1e12) | (values.notna() & (values % 1 != 0))
        if c in _SHARES:
            bad |= (values < 0) | (values > 1)
        if bad.any():
            value = df[c][bad].iloc[0]
            shown = repr(value) if isinstance(value, str) else f"{value:g}"
            what = (
                "a whole number >= 0" if c in _COUNTS
                else "an accuracy in [0, 1]" if c in _SHARES
                else "a number"
            )  # fmt: skip
            raise ConfigError(f"{path}: column {c} holds {shown}, not {what}")
        if values.isna().any():  # as accuracies_at leaves what a run does not have: None
            df[c] = values.astype(object).where(values.notna(), None)
        else:
            df[c] = values.astype("int64") if c in _COUNTS else values
    if (df.n_params == 0).any():
        raise ConfigError(f"{path}: column n_params holds 0, not a model size")
    return df[[*TABLE_COLUMNS, *(c for c in df.columns if c not in TABLE_COLUMNS)]]


def _short_row(path: Path) -> str | None:
    """The first row with fewer cells than the header, said in words; None when there is none.
    pandas fills such a row's last cells as empty, and the optional columns may be empty."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = csv.reader(f)
        try:
            width = len(next(rows, []))
            for row in rows:
                if row and len(row) < width:
                    return f"line {rows.line_num} has {len(row)} of the header's {width} cells"
        except csv.Error as e:
            raise ConfigError(f"{path}: not a runs table ({e})") from None
    return None


def _record_at(run_dir: Path, step: int | None, examples: tuple[str, int] | None) -> dict | None:
    for record in ckpt.read_metrics(run_dir):
        if step is not None and record["step"] == step:
            return record
        if examples is not None:
            op, n = examples
            if "examples" not in record:
                raise ConfigError(
                    f"{run_dir}: its metrics do not count training examples (a run older than "
                    "the count); read it --at-step instead"
                )
            if record["examples"].get(op, 0) >= n:
                return record
    return None


def sigmoid(x, lo, hi, k, x0):
    """The transition curve: accuracy at x = log10(parameters)."""
    return lo + (hi - lo) / (1 + np.exp(-k * (x - x0)))


def _sigmoid_jacobian(x, lo, hi, k, x0):
    """d sigmoid / d (lo, hi, k, x0): exact, so a fit needs no finite differences."""
    s = 1 / (1 + np.exp(-k * (x - x0)))
    slope = (hi - lo) * s * (1 - s)
    return np.stack([1 - s, s, slope * (x - x0), -slope * k], axis=1)


@dataclass
class Fit:
    midpoint: float | None  # N* in parameters, or None
    reason: str  # "ok" or why there is no number
    params: tuple[float, ...] | None = None


def fit_transition(n_params: np.ndarray, acc: np.ndarray) -> Fit:
    """Sigmoid in log10(parameters); refuses to extrapolate the midpoint."""
    x, y = np.log10(np.asarray(n_params, float)), np.asarray(acc, float)
    if len(np.unique(x)) < 4:  # four parameters
        return Fit(None, "fewer than 4 sizes")
    if y.max() - y.min() < 0.2:
        return Fit(None, "no transition in range (accuracy flat)")
    p0 = (y.min(), y.max(), 5.0, float(np.median(x)))
    bounds = ([0, 0, 0.1, x.min() - 1], [1, 1, 100, x.max() + 1])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", OptimizeWarning)
            params, _ = curve_fit(
                sigmoid, x, y, p0=p0, bounds=bounds, maxfev=5000, jac=_sigmoid_jacobian
            )
    except (RuntimeError, OptimizeWarning, ValueError):
        return Fit(None, "fit did not converge")
    lo, hi, k, x0 = params
    if hi - lo < 0.2:
        return Fit(None, "no transition in range (fitted step < 0.2)", tuple(params))
    if not x.min() <= x0 <= x.max():
        return Fit(None, "midpoint outside the sizes measured", tuple(params))
    return Fit(float(10**x0), "ok", tuple(params))


def smallest_passing(df: pd.DataFrame, threshold: float) -> float | None:
    """Smallest n_params whose median accuracy over seeds reaches the threshold."""
    med = df.groupby("n_params")["accuracy"].median()
    passing = med[med >= threshold]
    return float(passing.index.min()) if len(passing) else None


def crossing(df: pd.DataFrame, threshold: float) -> float | None:
    """Where the median over seeds first reaches the threshold, interpolated linearly in
    log10(parameters) between the smallest passing size and the size below it: within
    (that size, `smallest_passing`], and unlike it not held to the sizes run, so a median a
    hundredth either side of the threshold moves it a little, not a whole size step. The
    smallest size when that already passes (an upper bound, as for `smallest_passing`);
    None when no size passes."""
    med = df.groupby("n_params")["accuracy"].median().sort_index()
    values = med.to_numpy()
    passing = np.flatnonzero(values >= threshold)
    if not len(passing):
        return None
    j = int(passing[0])
    if j == 0:
        return float(med.index[0])
    x0, x1 = np.log10(float(med.index[j - 1])), np.log10(float(med.index[j]))
    frac = (threshold - values[j - 1]) / (values[j] - values[j - 1])
    return float(min(10 ** (x0 + frac * (x1 - x0)), med.index[j]))  # no rounding past it


def separation(df: pd.DataFrame, threshold: float) -> tuple[float, float] | None:
    """(the largest size with a run below `threshold`, the smallest with a run at or above it)
    where the runs separate at it: none passes below the second, none fails above the first.
    The logistic fit of `pass_rate` then has no finite slope, and its half point is read from
    the gap (its geometric middle; the tied size itself when one size has both, whatever its
    share). None where the runs overlap, or all pass, or none do."""
    n = df["n_params"].to_numpy(float)
    passed = df["accuracy"].to_numpy(float) >= threshold
    if passed.all() or not passed.any():
        return None
    below, above = float(n[~passed].max()), float(n[passed].min())
    return (below, above) if below <= above else None


def pass_rate(
    df: pd.DataFrame, threshold: float, rng: np.random.Generator | None = None
) -> float | None:
    """Where half the runs pass the threshold: the share of runs with accuracy >= threshold,
    fitted as a logistic function of log10(parameters) over every run at every size, at its
    0.5 point. Where seeds near the transition either learn or do not (a bimodal population,
    as SUM alone's often is), a median jumps between the two modes, so `crossing` moves with
    the two sizes beside it and their few seeds; this reads the same question (at which size
    does the typical seed pass) from all of them. Fitted by maximum likelihood; where the
    runs separate (none passes below some size, all pass from it on) there is no finite
    maximum, and N* is the geometric middle of the gap (the limit of the fit as its
    regularisation vanishes; the tied size itself when one size has both), or with `rng` (the
    bootstrap's) a size drawn log-uniformly across it, so that an interval spans what the runs
    cannot decide instead of collapsing onto the middle. The smallest size
    when the half point lies at or below it (an upper bound, as for `crossing`); None when no
    run passes, when the share falls with size, or when the half point lies past the largest
    size run (not reached)."""
    n = df["n_params"].to_numpy(float)
    passed = df["accuracy"].to_numpy(float) >= threshold
    if not passed.any():
        return None
    if passed.all():
        return float(n.min())
    if n[passed].max() <= n[~passed].min():  # all pass up to a size, all fail from it on
        return None  # the share falls with size (and the fit has no maximum)
    gap = separation(df, threshold)
    if gap:  # separated: all fail up to `below`, all pass from `above` on
        below, above = gap
        where = 0.5 if rng is None else rng.uniform()
        half = float(below ** (1 - where) * above**where)  # the tied size when they are equal
    else:
        x = np.log10(n)
        b0, b1 = logistic_fit(x - x.mean(), passed.astype(float))
        if b1 <= 0:
            return None  # no rise with size
        log_half = x.mean() - b0 / b1  # a nearly flat fit puts it far out: compare in logs
        if log_half > np.log10(n.max()):
            return None  # past the largest size (a separated gap never is)
        half = float(10**log_half)
    return max(half, float(n.min()))


def logistic_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Maximum-likelihood (intercept, slope) of P(y = 1) = 1 / (1 + exp(-(b0 + b1 x))), by
    Newton's method with step halving. It exists where the outcomes overlap in x (not all 0
    up to some x and all 1 from there, nor the reverse); `pass_rate` checks that first."""
    X = np.column_stack([np.ones_like(x), x])

    def loglik(b):
        z = X @ b
        return float(np.sum(y * z - np.logaddexp(0, z)))

    b = np.array([np.log(y.mean() / (1 - y.mean())), 0.0])
    for _ in range(100):
        p = 1 / (1 + np.exp(-(X @ b)))
        hessian = X.T @ (X * (p * (1 - p))[:, None]) + 1e-12 * np.eye(2)  # p may round to 0, 1
        step = np.linalg.solve(hessian, X.T @ (y - p))
        base, t = loglik(b), 1.0
        while loglik(b + t * step) < base - 1e-12 and t > 1e-6:
            t /= 2
        b = b + t * step
        if np.abs(t * step).max() < 1e-10:
            break
    return float(b[0]), float(b[1])


# N* at a threshold, three ways (the columns of `transitions` are named by these keys)
STATISTICS = {"smallest": smallest_passing, "crossing": crossing, "passrate": pass_rate}


def _rng(seed: int, *key) -> np.random.Generator:
    """The resampling stream of one group and statistic: its interval depends on its own runs
    and `seed`, not on which other groups or thresholds are fitted beside it."""
    return np.random.default_rng([seed, zlib.crc32("\x1f".join(map(str, key)).encode())])


def _by_size(df: pd.DataFrame) -> tuple[list[np.ndarray], np.ndarray]:
    """The accuracies of each size, smallest first, and a resample's sizes column."""
    groups = [g["accuracy"].to_numpy() for _, g in df.groupby("n_params")]
    sizes = sorted(df["n_params"].unique())
    return groups, np.concatenate([[s] * len(g) for s, g in zip(sizes, groups)])


def _resample(groups: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Seeds resampled with replacement within each size."""
    return np.concatenate([rng.choice(g, len(g)) for g in groups])


def _bootstrap(df: pd.DataFrame, stat, n: int, rng: np.random.Generator) -> np.ndarray:
    """Statistic over resamples of seeds within each size; NaN where it is undefined. A
    statistic may draw from `rng` too (`pass_rate` does), between the resamples' draws."""
    groups, params = _by_size(df)
    out = np.full(n, np.nan)
    for i in range(n):
        value = stat(pd.DataFrame({"n_params": params, "accuracy": _resample(groups, rng)}))
        out[i] = np.nan if value is None else value
    return out


def resampled_ci(df: pd.DataFrame, stat, n: int, rng: np.random.Generator):
    """The 95% interval of `stat` (a frame of n_params and accuracy -> a value or None) over
    `n` resamples of the runs within each size, as `transitions` gives its N*; None where
    fewer than half the resamples have a value."""
    return _ci(_bootstrap(df, stat, n, rng))


def _threshold_bootstrap(
    df: pd.DataFrame, kind: str, t: float, n: int, rng: np.random.Generator
) -> np.ndarray:
    """`_bootstrap` of STATISTICS[kind] at threshold t (one task of `transitions`)."""
    if kind == "passrate":  # a resample that separates draws N* in its gap
        return _bootstrap(df, lambda d: pass_rate(d, t, rng), n, rng)
    stat = STATISTICS[kind]
    return _bootstrap(df, lambda d: stat(d, t), n, rng)


def _midpoint_resamples(df: pd.DataFrame, n: int, rng: np.random.Generator):
    """The sizes and `n` resampled accuracies `_bootstrap` would draw (the fit draws
    nothing), so that their sigmoid fits can be spread over processes."""
    groups, params = _by_size(df)
    return params, [_resample(groups, rng) for _ in range(n)]


def _midpoints(params: np.ndarray, draws: list[np.ndarray]) -> np.ndarray:
    fits = (fit_transition(params, acc).midpoint for acc in draws)
    return np.array([np.nan if m is None else m for m in fits], dtype=float)


def _ci(samples: np.ndarray, min_defined: float = 0.5) -> tuple[float, float] | None:
    """95% percentile interval, or None when the statistic is undefined in too many resamples."""
    ok = samples[np.isfinite(samples)]
    if len(ok) < min_defined * len(samples):
        return None
    return float(np.percentile(ok, 2.5)), float(np.percentile(ok, 97.5))


PARALLEL_RESAMPLES = 200  # from here on `transitions` bootstraps in one process per core


def transitions(
    df: pd.DataFrame,
    thresholds=(0.9, 0.99),
    n_boot: int = 1000,
    seed: int = 0,
    n_jobs: int | None = None,
) -> pd.DataFrame:
    """One row per (op, mixture), and per training data and training where `df` has those
    columns (runs that differ in them are never pooled): N* by sigmoid midpoint, and by each
    threshold as the smallest size whose median passes (`smallest_T`), as the median's
    interpolated crossing (`crossing_T`) and as the size where half the runs pass
    (`passrate_T`), with 95% CIs, and the ratio to the op alone on the same data and training,
    where the runs have the op alone; `ratio_KEY_side` says where one N* sits on its
    smallest size run, so that the ratio is a bound ("at most", "at least", "neither"). Where
    the mixture reaches a threshold and the op alone does not, `ratio_smallest_T_bound` (and
    `ratio_crossing_T_bound`, `ratio_passrate_T_bound`) is the lower bound that leaves: the op
    alone's largest size over the mixture's N*.
    `n_jobs`: processes for the bootstraps (joblib's: -1, one per core; 1, none; default: one
    per core from PARALLEL_RESAMPLES resamples on, where starting them pays)."""
    if n_jobs is None:
        n_jobs = -1 if n_boot >= PARALLEL_RESAMPLES else 1
    keys = ["op", "mixture", *(c for c in GROUPS if c in df.columns)]
    rows, tasks, chunks = [], {}, []
    for values, g in df.groupby(keys, sort=False):
        fit = fit_transition(g["n_params"], g["accuracy"])
        row = {
            **dict(zip(keys, values)),
            "n_runs": len(g),
            "largest": float(g["n_params"].max()),
            "smallest_run": float(g["n_params"].min()),
            "midpoint": fit.midpoint,
            "midpoint_note": fit.reason,
            # the fitted rise: a midpoint of a rise that levels off low is no "learned" size
            "rise": [float(fit.params[0]), float(fit.params[1])] if fit.midpoint else None,
            # the sigmoid (lo, hi, k, x0 in log10 parameters), for figures
            "sigmoid": [float(v) for v in fit.params] if fit.midpoint else None,
        }
        row["midpoint_ci"] = None  # the intervals once every bootstrap is in
        if fit.midpoint:  # its resamples' fits in chunks, the bulk of the time
            params, draws = _midpoint_resamples(g, n_boot, _rng(seed, *values, "midpoint"))
            step = -(-n_boot // 32)
            key = (*values, "midpoint")
            chunks += [(key, params, draws[i : i + step]) for i in range(0, n_boot, step)]
        for kind, stat in STATISTICS.items():
            for t in thresholds:
                row[f"{kind}_{t}"] = stat(g, t)
                row[f"{kind}_{t}_ci"] = None
                if kind == "passrate":  # read from a gap, not a fitted slope
                    row[f"passrate_{t}_gap"] = separation(g, t)
                # smallest_T's stream is keyed by the threshold alone, as before crossings were
                rng = _rng(seed, *values, *([kind] if kind != "smallest" else []), t)
                tasks[(*values, f"{kind}_{t}")] = (g, kind, t, n_boot, rng)
        rows.append(row)
    results = Parallel(n_jobs=n_jobs)(
        [delayed(_midpoints)(params, part) for _, params, part in chunks]
        + [delayed(_threshold_bootstrap)(*task) for task in tasks.values()]
    )
    boots = {}
    for (key, _, _), part in zip(chunks, results):
        boots[key] = np.concatenate([boots.get(key, np.empty(0)), part])
    boots.update(zip(tasks, results[len(chunks) :]))
    for row in rows:
        values = tuple(row[k] for k in keys)
        row["midpoint_ci"] = _ci(boots.setdefault((*values, "midpoint"), np.full(n_boot, np.nan)))
        for key in statistic_keys(thresholds):
            row[f"{key}_ci"] = _ci(boots[(*values, key)])
    out = pd.DataFrame(rows)
    # Ratio N*(op alone) / N*(op in this mixture), with an interval from the two bootstraps.
    for key in ["midpoint", *statistic_keys(thresholds)]:
        ratios, cis, bounds, sides = [], [], [], []
        for _, r in out.iterrows():
            mine_key = tuple(r[k] for k in keys)
            alone_key = (r["op"], r["op"], *mine_key[2:])
            alone = out[(out[keys] == pd.Series(dict(zip(keys, alone_key)))).all(axis=1)]
            a = alone[key].iloc[0] if len(alone) else None
            mine = r[key]
            reached = not (mine is None or _isnan(mine))
            sides.append(None)
            known = reached and a is not None and not _isnan(a)
            if known and key != "midpoint" and r["mixture"] != r["op"]:
                # an N* at its group's smallest size run is only an upper bound (crossing_text)
                top = _at_smallest_run(alone.iloc[0], key)
                sides[-1] = {(True, False): "at most", (False, True): "at least"}.get(
                    (top, _at_smallest_run(r, key)), "neither" if top else None
                )
            if not known:
                ratios.append(None)
                cis.append(None)
                never = len(alone) > 0 and (a is None or _isnan(a))  # alone never reaches it
                bound = reached and key != "midpoint" and never and r["mixture"] != r["op"]
                bounds.append(alone["largest"].iloc[0] / mine if bound else None)
                continue
            ratios.append(a / mine)
            bounds.append(None)
            with np.errstate(divide="ignore", invalid="ignore"):
                cis.append(_ci(boots[(*alone_key, key)] / boots[(*mine_key, key)]))
        out[f"ratio_{key}"] = ratios
        out[f"ratio_{key}_ci"] = cis
        if key != "midpoint":
            out[f"ratio_{key}_bound"] = bounds
            out[f"ratio_{key}_side"] = sides
    return out


def _at_smallest_run(row, key: str) -> bool:
    """Whether a `transitions` row's N* by `key` sits on its smallest size run, so that it is
    only an upper bound (nothing smaller was run); a pass-rate N* read from a gap is not. The
    one rule for both: `crossing_text` says "at most this", the ratios "at most"/"at least"."""
    gap = row.get(f"{key}_gap")
    return row[key] == row["smallest_run"] and (gap is None or _isnan(gap))  # None, NaN: no


def pass_share(accuracy, threshold: float) -> tuple[int, int, float, float]:
    """How many of the runs' `accuracy` reach `threshold`, of how many, and the 95% Wilson
    interval of that share (scipy's `binomtest`)."""
    from scipy.stats import binomtest

    acc = np.asarray(accuracy, float)
    passed = int((acc >= threshold).sum())
    ci = binomtest(passed, len(acc)).proportion_ci(method="wilson")
    return passed, len(acc), float(ci.low), float(ci.high)


def size_table(df: pd.DataFrame, thresholds) -> pd.DataFrame:
    """The cells behind `transitions`' statistics, one row per op, mixture (data and training
    where the runs carry them) and size: the runs, their median, lowest and highest accuracy,
    and at each threshold T how many runs reach it (passed_T) and that share with its 95%
    Wilson interval (share_T, share_T_low, share_T_high), the shares `pass_rate` fits."""
    keys = ["op", "mixture", *(c for c in GROUPS if c in df.columns), "n_params"]
    rows = []
    for values, g in df.groupby(keys, sort=False, dropna=False):
        acc = g["accuracy"].to_numpy(float)
        row = {**dict(zip(keys, values)), "runs": len(acc), "median": float(np.median(acc))}
        row |= {"min": float(acc.min()), "max": float(acc.max())}
        for t in thresholds:
            passed, n, low, high = pass_share(acc, t)
            row |= {f"passed_{t}": passed, f"share_{t}": passed / n}
            row |= {f"share_{t}_low": low, f"share_{t}_high": high}
        rows.append(row)
    return pd.DataFrame(rows).sort_values(keys, kind="stable", ignore_index=True)


def _fisher(a: dict, b: dict, t) -> dict:
    """The runs of two `size_table` rows reaching threshold `t` (passed_a, runs_a, passed_b,
    runs_b) and Fisher's exact test (two-sided) between the two shares (p)."""
    from scipy.stats import fisher_exact

    table = [[a[f"passed_{t}"], a["runs"] - a[f"passed_{t}"]]]
    table.append([b[f"passed_{t}"], b["runs"] - b[f"passed_{t}"]])
    row = {"passed_a": a[f"passed_{t}"], "runs_a": a["runs"]}
    row |= {"passed_b": b[f"passed_{t}"], "runs_b": b["runs"]}
    return row | {"p": float(fisher_exact(table).pvalue)}


def _fisher_text(t, between: str) -> str:
    """A `_fisher` row (a named tuple) as text: '2 of 6 -> 4 of 4, p = 0.076'."""
    return f"{t.passed_a} of {t.runs_a} {between} {t.passed_b} of {t.runs_b}, p = {t.p:.2g}"


def share_tests(cells: pd.DataFrame, thresholds) -> pd.DataFrame:
    """Fisher's exact test (two-sided) of the runs reaching each threshold between two cells
    of `size_table` at the same size that differ in one thing: a mixture against its op
    alone on the same data and training, or one mixture on two data or two trainings. One
    row per pair, size and threshold: op, n_params, threshold, `differs` (the column they
    differ in), `a` and `b` (its two values; for a mixture, the mixture and then the op
    alone), the shared values (mixture, data, training; the differing one empty), passed_a,
    runs_a, passed_b, runs_b and p."""
    factors = ["mixture", *(c for c in GROUPS if c in cells.columns)]
    rows = []
    for (op, n_params), at in cells.groupby(["op", "n_params"], sort=True):
        records = at.to_dict(orient="records")
        for i, first in enumerate(records):
            for second in records[i + 1 :]:
                differs = [f for f in factors if first[f] != second[f]]
                if len(differs) != 1:
                    continue
                a, b = first, second
                if differs == ["mixture"]:  # the comparison a ratio makes: with the op alone
                    if op not in (a["mixture"], b["mixture"]):
                        continue
                    if a["mixture"] == op:
                        a, b = b, a
                for t in thresholds:
                    row = {"op": op, "n_params": n_params, "threshold": t}
                    row |= {"differs": differs[0], "a": a[differs[0]], "b": b[differs[0]]}
                    row |= {f: (None if f == differs[0] else a[f]) for f in factors}
                    rows.append(row | _fisher(a, b, t))
    columns = ["op", "n_params", "threshold", "differs", "a", "b", *factors]
    columns += ["passed_a", "runs_a", "passed_b", "runs_b", "p"]
    return pd.DataFrame(rows, columns=columns)


def step_tests(cells: pd.DataFrame, thresholds) -> pd.DataFrame:
    """Fisher's exact test (two-sided) of the runs reaching each threshold between each size
    of a cell of `size_table` (one op, mixture, data and training) and the next size run: where
    a population's share of learners steps up, and where it falls again. One row per step and
    threshold: op, mixture, data, training (where the cells carry them), threshold, size_a and
    size_b (the smaller first), passed_a, runs_a, passed_b, runs_b and p."""
    keys = ["op", "mixture", *(c for c in GROUPS if c in cells.columns)]
    rows = []
    for values, g in cells.groupby(keys, sort=False, dropna=False):
        sizes = g.sort_values("n_params").to_dict(orient="records")
        for a, b in zip(sizes, sizes[1:]):
            for t in thresholds:
                row = dict(zip(keys, values)) | {"threshold": t}
                row |= {"size_a": a["n_params"], "size_b": b["n_params"]}
                rows.append(row | _fisher(a, b, t))
    columns = [*keys, "threshold", "size_a", "size_b", "passed_a", "runs_a", "passed_b", "runs_b"]
    return pd.DataFrame(rows, columns=[*columns, "p"])


def statistic_keys(thresholds) -> list[str]:
    """The threshold statistics of `transitions`, as its columns name them."""
    return [f"{kind}_{t}" for kind in STATISTICS for t in thresholds]


def _isnan(v) -> bool:
    return isinstance(v, float) and math.isnan(v)


def ratio_table(fits: pd.DataFrame, accuracy: pd.DataFrame) -> pd.DataFrame:
    """The ratios of `transitions` (`fits`, from the runs in `accuracy`) one per row: op,
    mixture, data, train_size (0: a fresh stream), training, statistic ("smallest",
    "crossing" or "midpoint"), threshold ("0.9", ...; None for the midpoint), ratio with
    ci_low and ci_high, or the lower bound where the op alone never reaches the threshold;
    side: "at most" where the op alone's N* sits on its smallest size run, "at least" where
    the mixture's does, "neither" where both do, else None. Only mixtures whose op alone was
    trained on the same data and in the same way have rows; the threshold statistics come
    first, the midpoint last."""
    groups = [c for c in GROUPS if c in fits.columns]
    pools = "data" in groups and "train_size" in accuracy.columns
    sizes = accuracy.groupby("data").train_size.first() if pools else None
    records = fits.to_dict(orient="records")
    alone = {tuple(r[c] for c in ["op", *groups]) for r in records if r["mixture"] == r["op"]}
    keys = [k.removeprefix("ratio_") for k in fits.columns if k.startswith("ratio_")]
    keys = [k for k in keys if not k.endswith(("_ci", "_bound", "_side"))]
    keys = sorted(keys, key="midpoint".__eq__)
    rows = []
    for r in records:
        if r["mixture"] == r["op"] or tuple(r[c] for c in ["op", *groups]) not in alone:
            continue
        for key in keys:
            ratio, ci, bound = r[f"ratio_{key}"], r[f"ratio_{key}_ci"], r.get(f"ratio_{key}_bound")
            known = ratio is not None and not pd.isna(ratio)
            rows.append(
                {
                    "op": r["op"],
                    "mixture": r["mixture"],
                    **{c: r[c] for c in groups},
                    "train_size": int(sizes[r["data"]]) if sizes is not None else 0,
                    "statistic": key.partition("_")[0],
                    "threshold": key.partition("_")[2] or None,
                    "ratio": ratio if known else None,
                    "ci_low": ci[0] if known and ci else None,
                    "ci_high": ci[1] if known and ci else None,
                    "bound": bound if bound is not None and not pd.isna(bound) else None,
                    "side": r.get(f"ratio_{key}_side") if known else None,
                }
            )
    columns = ["op", "mixture", *groups, "train_size", "statistic", "threshold"]
    return pd.DataFrame(rows, columns=[*columns, "ratio", "ci_low", "ci_high", "bound", "side"])


def size_text(value, ci) -> str:
    """A size of a `transitions` row as text: '1,718 [1,150, 3,142]'; 'not reached'."""
    if value is None or pd.isna(value):
        return "not reached"
    return f"{value:,.0f}" + (f" [{ci[0]:,.0f}, {ci[1]:,.0f}]" if ci else "")


def crossing_text(row: dict, threshold, kind: str = "crossing") -> str:
    """The crossing of `threshold` of a `transitions` row (or its `kind`: "passrate") as text,
    '1,897 [1,614, 2,397]', saying so where the group's smallest size run already passes
    (`_at_smallest_run`): nothing below to interpolate to, so the crossing is only an upper bound;
    and, for "passrate", where the runs separate (`separation`), so that the half point is read
    from the gap rather than from a fitted slope."""
    value = row[f"{kind}_{threshold}"]
    text = size_text(value, row[f"{kind}_{threshold}_ci"])
    gap = row.get(f"{kind}_{threshold}_gap") if value is not None and not _isnan(value) else None
    if gap is not None and not _isnan(gap):  # read from the gap, even at the smallest size
        if gap[0] == gap[1]:  # no slope to fit: the one size with both outcomes, whatever share
            return text + f" (the runs separate at {gap[0]:,.0f}, the one size with both outcomes)"
        return text + f" (the runs separate between {gap[0]:,.0f} and {gap[1]:,.0f}: their middle)"
    if _at_smallest_run(row, f"{kind}_{threshold}"):
        text += " (passed at the smallest size run: at most this)"
    return text


def share_test_lines(tests: pd.DataFrame, named=("data", "training")) -> list[str]:
    """`share_tests` as text, one line per pair of cells and threshold, its sizes in a row:
    'SUM in SUM+MAX+MED against SUM alone, 12,500 sampled: 3,167: 10 of 10 against 4 of 10,
    p = 0.011'. Of the values the pair shares, those of `named` columns are given (the
    mixture always)."""
    pair = ["op", "threshold", "differs", "a", "b", *(c for c in GROUPS if c in tests.columns)]
    lines = []
    tests = tests.sort_values("threshold", kind="stable")  # each threshold's lines together
    for key, g in tests.groupby([*pair, "mixture"], sort=False, dropna=False):
        r = dict(zip([*pair, "mixture"], key))
        shared = "".join(f", {r[c]}" for c in GROUPS if c in named and c != r["differs"])
        if r["differs"] == "mixture":
            head = f"{r['op']} in {r['a']} against {r['op']} alone{shared}"
        else:
            arm = "alone" if r["mixture"] == r["op"] else f"in {r['mixture']}"
            head = f"{r['op']} {arm}{shared}: {r['a']} against {r['b']}"
        cells = "; ".join(
            f"{t.n_params:,.0f}: {_fisher_text(t, 'against')}" for t in g.itertuples()
        )
        lines.append(f"at {r['threshold']}: {head}: {cells}")
    return lines


def step_test_lines(tests: pd.DataFrame, named=("data", "training")) -> list[str]:
    """`step_tests` as text, one line per cell and threshold, its steps in a row: 'at 0.9: SUM
    alone, 12,500 sampled: 9,767 -> 16,087: 2 of 6 -> 4 of 4, p = 0.076; ...'. Of the cell's
    values, the op, its mixture and those of `named` columns are given. A cell whose runs all
    pass, or all fail, at every size has nothing that steps and no line."""
    keys = ["op", "mixture", *(c for c in GROUPS if c in tests.columns)]
    lines = []
    tests = tests.sort_values("threshold", kind="stable")  # each threshold's lines together
    for values, g in tests.groupby(["threshold", *keys], sort=False, dropna=False):
        passed = pd.concat([g.passed_a / g.runs_a, g.passed_b / g.runs_b])
        if passed.eq(0).all() or passed.eq(1).all():
            continue
        r = dict(zip(["threshold", *keys], values))
        arm = "alone" if r["mixture"] == r["op"] else f"in {r['mixture']}"
        shared = "".join(f", {r[c]}" for c in GROUPS if c in named and c in r)
        steps = "; ".join(
            f"{t.size_a:,.0f} -> {t.size_b:,.0f}: {_fisher_text(t, '->')}" for t in g.itertuples()
        )
        lines.append(f"at {r['threshold']}: {r['op']} {arm}{shared}: {steps}")
    return lines


def ratio_text(row: dict, key: str, digits: int = 2) -> str | None:
    """N*(op alone) / N*(here) of a `transitions` row (`key`: "midpoint", "smallest_T",
    "crossing_T" or "passrate_T") as text: '5.66x [1.58, 9.33]', or 'at least 4.00x (SUM
    alone never reaches it)' where only the bound exists; None for the op alone, or where
    there is neither."""
    if row["mixture"] == row["op"]:
        return None
    value, ci, bound = row[f"ratio_{key}"], row[f"ratio_{key}_ci"], row.get(f"ratio_{key}_bound")
    if value is not None and not pd.isna(value):
        band = f" [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]" if ci else " (interval undefined)"
        side = row.get(f"ratio_{key}_side")
        if side in ("at most", "at least"):  # one N* sat on its smallest size run
            whose = f"{row['op']} alone's" if side == "at most" else "this mixture's"
            return f"{side} {value:.{digits}f}x{band} ({whose} N* is at its smallest size run)"
        if side == "neither":
            return f"{value:.{digits}f}x{band} (both N* at their smallest size run: no bound)"
        return f"{value:.{digits}f}x{band}"
    if bound is not None and not pd.isna(bound):
        return f"at least {bound:.{digits}f}x ({row['op']} alone never reaches it)"
    return None
