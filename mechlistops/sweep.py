"""Sweeps: a grid of mixtures x model sizes x seeds, every member an ordinary run directory.

    sweeps/<name>/
      sweep.json                     the grid and the base config
      <mixture>_d<d_model>_s<seed>/  a run directory (load_run, every analysis work on it)

Resumable: finished members (results.json present) are skipped, interrupted ones resume from
their last state. On a GPU, members of one shape train together as a batched ensemble
(`mechlistops.ensemble`); on CPU they train in parallel single-thread worker processes (two
1-thread processes beat one 2-thread process for models this small; see docs/sweeps.md).
Tasks run locally, as Ray tasks on a cluster (`--launcher ray`) or as a SLURM array job
(`--launcher slurm`, `mechlistops.launch`); the run directories and results are the same
either way. A member that fails does not stop the others.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from mechlistops import checkpoint as ckpt
from mechlistops import launch
from mechlistops.atomic import check_writable_dir, write_json
from mechlistops.config import COMPILE_MODES, RunConfig, parse_ops
from mechlistops.errors import ConfigError, MechlistopsError, first_line
from mechlistops.launch import SlurmOptions

SWEEP_FILE = "sweep.json"
FAILURES_FILE = "failures.json"
MAX_SEEDS = 1000  # seeds in one sweep
MAX_SEED = 2**31 - 1  # numpy's and torch's seeds take it


@dataclass(frozen=True)
class Member:
    name: str
    config: RunConfig


@dataclass(frozen=True)
class SweepConfig:
    mixtures: tuple[tuple[str, ...], ...]
    d_models: tuple[int, ...]
    seeds: tuple[int, ...]  # the data and init seeds; an int N means 0..N-1
    base: RunConfig  # everything else (steps, n_layers, n_heads, lr, curriculum, ...)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mixtures", tuple(parse_ops(m) for m in self.mixtures))
        object.__setattr__(self, "seeds", _seed_tuple(self.seeds))
        object.__setattr__(self, "d_models", tuple(self.d_models))
        if not self.mixtures or not self.d_models or not self.seeds:
            raise ConfigError("a sweep needs at least one mixture, one d_model and one seed")
        for what, values in (("mixture", self.mixtures), ("d_model", self.d_models),
                             ("seed", self.seeds)):  # fmt: skip
            twice = [v for v in values if values.count(v) > 1]
            if twice:
                v = "+".join(twice[0]) if what == "mixture" else twice[0]
                raise ConfigError(f"a sweep names each {what} once: {v} given twice")
        self.members()  # every member's config is valid: fail before training anything

    def members(self) -> list[Member]:
        out = []
        for mixture in self.mixtures:
            for d_model in self.d_models:
                for seed in self.seeds:
                    try:
                        cfg = RunConfig(
                            dataclasses.replace(self.base.data, ops=mixture, seed=seed),
                            dataclasses.replace(self.base.model, d_model=d_model),
                            dataclasses.replace(self.base.train, seed=seed),
                        )
                    except ConfigError as exc:
                        raise ConfigError(f"d_model={d_model}: {exc}") from None
                    name = f"{'+'.join(mixture).lower()}_d{d_model}_s{seed}"
                    out.append(Member(name, cfg))
        return out

    def covers(self, other: SweepConfig) -> bool:
        """Whether this sweep holds every member of `other`: the same base, and each of its
        mixtures, sizes and seeds among this one's (a grown sweep covers what it grew from)."""
        return (
            self.base == other.base
            and set(other.mixtures) <= set(self.mixtures)
            and set(other.d_models) <= set(self.d_models)
            and set(other.seeds) <= set(self.seeds)
        )

    def to_dict(self) -> dict:
        contiguous = self.seeds == tuple(range(len(self.seeds)))
        return {
            "mixtures": [list(m) for m in self.mixtures],
            "d_models": list(self.d_models),
            "seeds": len(self.seeds) if contiguous else list(self.seeds),  # N: 0..N-1
            "base": self.base.to_dict(),
        }

    @classmethod
    def from_dict(cls, raw: dict) -> SweepConfig:
        seeds = raw["seeds"]
        return cls(
            tuple(tuple(m) for m in raw["mixtures"]),
            tuple(raw["d_models"]),
            seeds if isinstance(seeds, int) else tuple(seeds),
            RunConfig.from_dict(raw["base"]),
        )


def parse_seeds(text: str) -> tuple[int, ...]:
    """Seeds as the command line gives them: "N" is 0..N-1; otherwise a comma-separated list
    of seeds and inclusive ranges, e.g. "5-17" or "0,3,8-9". ConfigError when malformed."""
    text = text.strip()
    if text.isdigit():
        return _seed_tuple(int(text))
    seeds: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        lo, dash, hi = part.partition("-")
        if not lo.isdigit() or (dash and not hi.isdigit()):
            raise ConfigError(
                f"expected N (seeds 0..N-1) or seeds and ranges such as 5-17 or 0,3,8-9, "
                f"got {text!r}"
            )
        first, last = int(lo), int(hi) if dash else int(lo)
        if last < first:
            raise ConfigError(f"the range {part} runs backwards")
        if len(seeds) + last - first + 1 > MAX_SEEDS:  # before making a range that long
            raise ConfigError(f"at most {MAX_SEEDS:,} seeds in one sweep")
        seeds += range(first, last + 1)
    return _seed_tuple(seeds)


def _seed_tuple(seeds) -> tuple[int, ...]:
    """A sweep's seeds from an int N (0..N-1) or a sequence of seeds; ConfigError for anything
    else (a sweep file is read through here: no float, no bool, no billion seeds)."""

    def whole(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if whole(seeds):
        if not 1 <= seeds <= MAX_SEEDS:
            raise ConfigError(f"a sweep runs 1..{MAX_SEEDS:,} seeds, got {seeds:,}")
        return tuple(range(seeds))
    if not isinstance(seeds, (list, tuple)) or not all(whole(v) for v in seeds):
        raise ConfigError(f"seeds must be a number N or a list of whole numbers, got {seeds!r:.60}")
    if len(seeds) > MAX_SEEDS:
        raise ConfigError(f"at most {MAX_SEEDS:,} seeds in one sweep, got {len(seeds):,}")
    if seeds and not 0 <= min(seeds) <= max(seeds) <= MAX_SEED:
        raise ConfigError(f"seeds are 0..{MAX_SEED:,}, got {min(seeds)}..{max(seeds)}")
    return tuple(seeds)


def _differences(saved: dict, given: dict, where: str = "") -> list[str]:
    """'key: A there, B here' for every leaf where two sweep files differ."""
    out = []
    for key in sorted(set(saved) | set(given)):
        a, b = saved.get(key), given.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{where}{key}.")
        elif a != b:
            out.append(f"{where}{key}: {json.dumps(a)} there, {json.dumps(b)} here")
    return out


ENGINES = ("auto", "ensemble", "processes")
LAUNCHERS = ("local", "ray", "slurm")


def plan_tasks(
    members: list[Member], engine: str = "auto", max_models: int = 0, device: str = "auto"
) -> list[list[Member]]:
    """Group members into tasks. "ensemble": members sharing an `ensemble_key` train together
    (at most `max_models` per task; 0 = no limit); "processes": one member per task; "auto":
    ensembles on a GPU (`device`), one member per task on CPU."""
    from mechlistops.ensemble import ensemble_key
    from mechlistops.model import resolve_device

    if engine not in ENGINES:
        raise ConfigError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "auto" and members:
        cuda = resolve_device(device).type == "cuda"
        engine = "ensemble" if cuda else "processes"
    if engine == "processes":
        return [[m] for m in members]
    groups: dict[str, list[Member]] = {}
    for m in members:
        key = ensemble_key(m.config)
        groups.setdefault(m.name if key is None else key, []).append(m)
    size = max_models or len(members) or 1
    return [g[i : i + size] for g in groups.values() for i in range(0, len(g), size)]


def train_task(
    task: list[tuple[dict, str]],
    progress: bool = False,
    device: str = "auto",
    data_workers: int = 0,
    compile: str = "off",
) -> None:
    """Train (or resume) one task's members (config dict, run directory): alone, or as one
    ensemble (its batches made by `data_workers` processes, if any; `compile`: see
    `ensemble.train_ensemble`). Runs in this process, a worker process or a Ray task."""
    from mechlistops.ensemble import train_ensemble
    from mechlistops.train import train

    members = [(RunConfig.from_dict(cfg), Path(run_dir)) for cfg, run_dir in task]
    if len(members) == 1:
        cfg, run_dir = members[0]
        train(cfg, run_dir, resume=ckpt.holds_run(run_dir), progress=progress, device=device)
    else:
        train_ensemble(members, progress, device, data_workers, compile)


def _worker_init(parent: int) -> None:
    """A worker trains on one thread, and dies with the process that started it."""
    import torch

    from mechlistops.threads import die_with_parent

    torch.set_num_threads(1)
    die_with_parent(parent)


def run_sweep(
    sweep: SweepConfig,
    out: Path,
    workers: int = 0,
    progress: bool = True,
    engine: str = "auto",
    max_models: int = 0,
    launcher: str = "local",
    address: str | None = None,
    device: str = "auto",
    slurm: SlurmOptions | None = None,
    data_workers: int = 0,
    compile: str = "off",
) -> SweepOutcome:
    """Train every unfinished member into out/<member>. A member that fails (bad data, out of
    memory, a damaged run directory) does not stop the others: the outcome lists it with its
    one-line reason (also in out/failures.json) and a rerun retries it.

    engine: see `plan_tasks`. launcher "local": tasks in this process (workers=1) or in
    parallel single-thread worker processes (workers>1; 0 = one per CPU core on CPU, one on
    a GPU); "ray": every task a Ray task on the cluster at `address` (None: a local Ray),
    one GPU per task where the cluster has GPUs. `out` must then be on a filesystem every
    Ray node sees. "slurm": the tasks as one SLURM array job through submitit (`slurm`: its
    partition, time, GPUs; logs under out/slurm/); `out` must be on a shared filesystem.
    `device`: where members train ("auto": cuda when present). `data_workers`: processes that
    make each ensemble's batches ahead (local launcher; 0: the ensemble's own thread).
    `compile`: how ensembles compile their step (`config.COMPILE_MODES`; "off": eager).
    """
    if launcher not in LAUNCHERS:
        raise ConfigError(f"launcher must be one of {LAUNCHERS}, got {launcher!r}")
    if workers < 0 or max_models < 0 or data_workers < 0:
        raise ConfigError(
            "--workers, --max-models and --data-workers must be >= 0 (0: the default)"
        )
    if compile not in COMPILE_MODES:
        raise ConfigError(f"compile must be one of {COMPILE_MODES}, got {compile!r}")
    launch.check_available(launcher, slurm)
    out, saved = open_sweep_dir(sweep, out)
    todo = [m for m in sweep.members() if not ckpt.is_finished(out / m.name)]
    planned = plan_tasks(todo, engine, max_models, device)
    tasks = [[(m.config.to_dict(), str(out / m.name)) for m in task] for task in planned]
    bar = tqdm(
        total=len(sweep.members()),
        initial=len(sweep.members()) - len(todo),
        desc="runs",
        disable=not progress,
    )
    failed: dict[str, str] = {}

    def on_done(i: int, _) -> None:
        bar.update(len(tasks[i]))

    def on_failed(i: int, reason: str) -> None:
        failed.update({m.name: reason for m in planned[i]})
        bar.update(len(tasks[i]))

    if launcher == "ray":
        launch.ray_tasks(tasks, address, device, on_done, on_failed, compile)
    elif launcher == "slurm":
        launch.slurm_array(tasks, out, device, slurm or SlurmOptions(), on_done, on_failed, compile)
    else:
        if not workers:
            on_gpu = any(len(t) > 1 for t in tasks)  # ensembles: one process owns the device
            workers = 1 if on_gpu else os.cpu_count() or 1
        alone = workers == 1 or len(tasks) <= 1
        calls = [(task, progress and alone, device, data_workers, compile) for task in tasks]
        run_local(train_task, calls, workers, on_done, on_failed)
    bar.close()
    diverged = {}
    for m in sweep.members():
        if m.name in failed:
            continue
        try:
            results = ckpt.read_results(out / m.name)
        except MechlistopsError as exc:  # a damaged results.json: say so, do not stop here
            failed[m.name] = first_line(exc)
            continue
        reason = str(((results or {}).get("stopped") or {}).get("reason", ""))
        if reason.startswith("diverged"):
            diverged[m.name] = reason
    record_failures(out, failed)
    return SweepOutcome(out, failed, diverged, saved)


@dataclass
class SweepOutcome:
    out: Path  # the sweep directory
    failed: dict[str, str]  # member -> one-line reason; unfinished, a rerun retries them
    diverged: dict[str, str]  # member -> reason: finished, but stopped when its loss diverged
    saved_before: int | None = None  # members the directory's sweep had (None: a new sweep)


def record_failures(out: Path, failed: dict[str, str]) -> None:
    """out/failures.json lists the members that failed on the last pass (gone when none)."""
    path = Path(out) / FAILURES_FILE
    if failed:
        write_json(path, failed)
    else:
        path.unlink(missing_ok=True)


def open_sweep_dir(sweep: SweepConfig, out: Path) -> tuple[Path, int | None]:
    """The sweep directory for `sweep`: made with its sweep.json, or checked to hold it; and
    how many members the sweep saved there had (None: none was). A sweep that covers the
    saved one (the same base; more mixtures, sizes or seeds) grows it: sweep.json becomes the
    larger grid and the members already trained stay as they are. Any other difference is a
    ConfigError that names it."""
    out = check_writable_dir(out, "sweep directory")
    saved = out / SWEEP_FILE
    before = load_sweep(out) if saved.is_file() else None
    if before is None and out.is_dir() and any(not p.name.endswith(".tmp") for p in out.iterdir()):
        raise ConfigError(
            f"{out} is a directory that is not empty and holds no sweep; choose a new or "
            "empty --out"
        )
    if before is not None:
        if before == sweep:
            return out, len(sweep.members())
        if not sweep.covers(before):
            diff = _differences(*({**x.to_dict(), "seeds": list(x.seeds)} for x in (before, sweep)))
            shown = "; ".join(diff[:3]) + ("; ..." if len(diff) > 3 else "")
            raise ConfigError(
                f"{out} holds a different sweep ({shown}); choose another --out, or give a "
                "grid that contains it to grow it"
            )
    write_json(saved, sweep.to_dict())
    return out, None if before is None else len(before.members())


def branch_sweep(
    parent_dir: Path, step: int, sweep: SweepConfig, out: Path, progress: bool = True
) -> None:
    """Make `out` the sweep `sweep` whose members continue, one by one, the parent sweep's
    members of the same name from their resume states kept at `step` (`train.branch`), so
    that `run_sweep(sweep, out)` trains only the steps after it and ends as that sweep
    trained from scratch would. Every member must be in the parent sweep, have kept a state
    at `step` and pass `train.check_branch`: all checked before anything is written. A
    member already in `out` (a rerun) stays as it is."""
    from mechlistops.train import branch, check_branch

    parent_dir = Path(parent_dir)
    theirs = {m.name for m in load_sweep(parent_dir).members()}
    members = sweep.members()
    absent = [m.name for m in members if m.name not in theirs]
    if absent:
        raise ConfigError(
            f"{parent_dir}: the parent sweep has no member {absent[0]}"
            + (f" (nor {len(absent) - 1} more)" if len(absent) > 1 else "")
            + "; a branch takes the parent's grid or part of it"
        )
    todo = [m for m in members if not ckpt.holds_run(Path(out) / m.name)]
    lacking = [m.name for m in todo if step not in ckpt.kept_states(parent_dir / m.name)]
    if lacking:
        shown = ", ".join(lacking[:3]) + (", ..." if len(lacking) > 3 else "")
        kept = ckpt.kept_states(parent_dir / lacking[0])
        where = f"kept: {', '.join(map(str, kept))}" if kept else "it kept none (--keep-states)"
        raise ConfigError(
            f"{parent_dir}: no resume state kept at step {step} in {len(lacking)} of "
            f"{len(todo)} members ({shown}; {lacking[0]}: {where})"
        )
    for m in todo:  # the parent's saved config: what it trained, not what its grid implies
        try:
            check_branch(ckpt.load_run_config(parent_dir / m.name), m.config, step)
        except ConfigError as exc:
            raise ConfigError(f"{m.name}: {first_line(exc)}") from None
    out, _ = open_sweep_dir(sweep, out)
    for m in tqdm(todo, desc="branching", disable=not progress or len(todo) < 2):
        branch(parent_dir / m.name, step, m.config, out / m.name)


def failure_reason(exc: BaseException) -> str:
    """One line for a member that failed: our own errors say it all, others name their type."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return "out of memory"
    text = first_line(exc)
    return text if isinstance(exc, MechlistopsError) else f"{type(exc).__name__}: {text}"


def run_local(fn, calls: list[tuple], workers: int, on_done, on_failed) -> None:
    """fn(*call) for every call: here, one after another (workers 1, or a single call), or in
    parallel single-thread worker processes; on_done(index, result) as each one finishes,
    on_failed(index, reason) for one that raised (the others go on)."""
    if workers == 1 or len(calls) <= 1:
        for i, call in enumerate(calls):
            try:
                result = fn(*call)
            except Exception as exc:
                on_failed(i, failure_reason(exc))
            else:
                on_done(i, result)
        return
    # spawn, not fork: forking a process whose torch thread pool runs can deadlock.
    ctx = multiprocessing.get_context("spawn")
    init = (_worker_init, (os.getpid(),))
    with ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=init[0], initargs=init[1]
    ) as pool:
        futures = {pool.submit(fn, *call): i for i, call in enumerate(calls)}
        for future in as_completed(futures):
            try:
                result = future.result()
            except BrokenProcessPool:  # a worker was killed (the OOM killer, a signal)
                on_failed(futures[future], "its worker process died (killed, or out of memory)")
            except Exception as exc:
                on_failed(futures[future], failure_reason(exc))
            else:
                on_done(futures[future], result)


def load_sweep(path: Path) -> SweepConfig:
    saved = Path(path) / SWEEP_FILE
    if not saved.is_file():
        raise ConfigError(f"{path}: not a sweep directory (no {SWEEP_FILE})")
    try:
        return SweepConfig.from_dict(json.loads(saved.read_text()))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{saved}: corrupted sweep file ({first_line(exc)})") from None
    except ConfigError as exc:  # it parses, but what it holds cannot be a sweep
        raise ConfigError(f"{saved}: {first_line(exc)}") from None


def finished_runs(paths: list[Path]) -> list[Path]:
    """The finished runs that analyses of many runs read, from the paths given: a finished run
    as given; a sweep's finished members in the sweep's order; any other folder's finished
    runs and sweeps below it, at any depth, by name (runs trained one by one into folders, e.g.
    scan/alone/..., scan/joint/...; linked folders are not followed). Unfinished members are
    left out, so a sweep can be read while it trains; a path that does not exist, or a run
    named directly that has not finished, is a ConfigError."""
    runs: list[Path] = []
    for p in map(Path, paths):
        if ckpt.is_finished(p):
            runs.append(p)
        elif ckpt.holds_run(p):
            raise ConfigError(f"{p}: the run has not finished (no {ckpt.RESULTS})")
        else:
            check_run_paths([p])
            runs += _runs_below(p)
    return runs


def check_run_paths(paths: list[Path]) -> None:
    """A ConfigError naming the first path that is not a folder (a run, a sweep or a folder of
    them), before a command does work that needs them."""
    for p in map(Path, paths):
        if p.is_dir():
            continue
        what = "is neither a run nor a folder of runs" if p.exists() else "no such run or folder"
        raise ConfigError(f"{p}: {what}")


def _runs_below(folder: Path) -> list[Path]:
    """A folder's finished runs: a sweep's members in its order, else the finished runs among
    its subfolders and below them, by name (an unfinished run is skipped, not entered)."""
    if (folder / SWEEP_FILE).is_file():
        return [
            folder / m.name
            for m in load_sweep(folder).members()
            if ckpt.is_finished(folder / m.name)
        ]
    runs: list[Path] = []
    for d in sorted(d for d in folder.iterdir() if d.is_dir()):
        if ckpt.is_finished(d):
            runs.append(d)
        elif not ckpt.holds_run(d) and not d.is_symlink():
            runs += _runs_below(d)
    return runs
