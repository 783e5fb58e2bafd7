"""Sweeps: a grid of mixtures x model sizes x seeds, every member an ordinary run directory.

    sweeps/<name>/
      sweep.json                     the grid and the base config
      <mixture>_d<d_model>_s<seed>/  a run directory (load_run, every analysis work on it)

Resumable: finished members (results.json present) are skipped, interrupted ones resume from
their last state. On a GPU, members of one shape train together as a batched ensemble
(`mechlistops.ensemble`); on CPU they train in parallel single-thread worker processes (two
1-thread processes beat one 2-thread process for models this small; see docs/sweeps.md).
Tasks run locally or as Ray tasks on a cluster (`--launcher ray`); the run directories and
results are the same either way.
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from mechlistops import checkpoint as ckpt
from mechlistops.atomic import write_json
from mechlistops.config import RunConfig, parse_ops
from mechlistops.errors import ConfigError, MechlistopsError

SWEEP_FILE = "sweep.json"


@dataclass(frozen=True)
class Member:
    name: str
    config: RunConfig


@dataclass(frozen=True)
class SweepConfig:
    mixtures: tuple[tuple[str, ...], ...]
    d_models: tuple[int, ...]
    seeds: int
    base: RunConfig  # everything else (steps, n_layers, n_heads, lr, curriculum, ...)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mixtures", tuple(parse_ops(m) for m in self.mixtures))
        if not self.mixtures or not self.d_models or self.seeds < 1:
            raise ConfigError("a sweep needs at least one mixture, one d_model and one seed")
        self.members()  # every member's config is valid: fail before training anything

    def members(self) -> list[Member]:
        out = []
        for mixture in self.mixtures:
            for d_model in self.d_models:
                for seed in range(self.seeds):
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

    def to_dict(self) -> dict:
        return {
            "mixtures": [list(m) for m in self.mixtures],
            "d_models": list(self.d_models),
            "seeds": self.seeds,
            "base": self.base.to_dict(),
        }

    @classmethod
    def from_dict(cls, raw: dict) -> SweepConfig:
        return cls(
            tuple(tuple(m) for m in raw["mixtures"]),
            tuple(raw["d_models"]),
            raw["seeds"],
            RunConfig.from_dict(raw["base"]),
        )


ENGINES = ("auto", "ensemble", "processes")
LAUNCHERS = ("local", "ray")


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


def train_task(task: list[tuple[dict, str]], progress: bool = False, device: str = "auto") -> None:
    """Train (or resume) one task's members (config dict, run directory): alone, or as one
    ensemble. Runs in this process, a worker process or a Ray task."""
    from mechlistops.ensemble import train_ensemble
    from mechlistops.train import train

    members = [(RunConfig.from_dict(cfg), Path(run_dir)) for cfg, run_dir in task]
    if len(members) == 1:
        cfg, run_dir = members[0]
        train(cfg, run_dir, resume=ckpt.holds_run(run_dir), progress=progress, device=device)
    else:
        train_ensemble(members, progress=progress, device=device)


def _worker_init(parent: int) -> None:
    """A worker trains on one thread, and dies with the process that started it: without
    this, a sweep killed with SIGKILL leaves its workers training on, orphaned."""
    import torch

    torch.set_num_threads(1)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: SIGKILL me when my parent dies
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)


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
) -> Path:
    """Train every unfinished member into out/<member>; returns `out`.

    engine: see `plan_tasks`. launcher "local": tasks in this process (workers=1) or in
    parallel single-thread worker processes (workers>1; 0 = one per CPU core on CPU, one on
    a GPU); "ray": every task a Ray task on the cluster at `address` (None: a local Ray),
    one GPU per task where the cluster has GPUs. `out` must then be on a filesystem every
    Ray node sees. `device`: where members train ("auto": cuda when present).
    """
    if launcher not in LAUNCHERS:
        raise ConfigError(f"launcher must be one of {LAUNCHERS}, got {launcher!r}")
    if workers < 0 or max_models < 0:
        raise ConfigError("--workers and --max-models must be >= 0 (0: the default)")
    out = open_sweep_dir(sweep, out)
    todo = [m for m in sweep.members() if not ckpt.is_finished(out / m.name)]
    tasks = [
        [(m.config.to_dict(), str(out / m.name)) for m in task]
        for task in plan_tasks(todo, engine, max_models, device)
    ]
    bar = tqdm(
        total=len(sweep.members()),
        initial=len(sweep.members()) - len(todo),
        desc="runs",
        disable=not progress,
    )
    if launcher == "ray":
        _launch_ray(tasks, address, bar, device)
    else:
        if not workers:
            on_gpu = any(len(t) > 1 for t in tasks)  # ensembles: one process owns the device
            workers = 1 if on_gpu else os.cpu_count() or 1
        alone = workers == 1 or len(tasks) <= 1
        calls = [(task, progress and alone, device) for task in tasks]
        run_local(train_task, calls, workers, lambda i, _: bar.update(len(tasks[i])))
    bar.close()
    return out


def open_sweep_dir(sweep: SweepConfig, out: Path) -> Path:
    """The sweep directory for `sweep`: made with its sweep.json, or checked to hold it."""
    out = Path(out)
    saved = out / SWEEP_FILE
    if saved.is_file():
        if load_sweep(out) != sweep:
            raise ConfigError(f"{out} holds a different sweep; choose another --out")
    else:
        write_json(saved, sweep.to_dict())
    return out


def run_local(fn, calls: list[tuple], workers: int, on_done) -> None:
    """fn(*call) for every call: here, one after another (workers 1, or a single call), or in
    parallel single-thread worker processes; on_done(index, result) as each one finishes."""
    if workers == 1 or len(calls) <= 1:
        for i, call in enumerate(calls):
            on_done(i, fn(*call))
        return
    # spawn, not fork: forking a process whose torch thread pool runs can deadlock.
    ctx = multiprocessing.get_context("spawn")
    init = (_worker_init, (os.getpid(),))
    with ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=init[0], initargs=init[1]
    ) as pool:
        futures = {pool.submit(fn, *call): i for i, call in enumerate(calls)}
        for future in as_completed(futures):
            on_done(futures[future], future.result())


def _launch_ray(tasks: list, address: str | None, bar, device: str) -> None:
    try:
        import ray
    except ImportError:
        raise ConfigError("--launcher ray needs Ray: pip install 'mechlistops[ray]'") from None
    if not ray.is_initialized():
        try:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = address or "a local Ray instance"
            raise ConfigError(f"cannot connect to {where}: {exc}") from None
    gpus = ray.cluster_resources().get("GPU", 0)
    remote = ray.remote(train_task).options(num_gpus=1 if gpus else 0, num_cpus=1)
    pending = {remote.remote(task, False, device): len(task) for task in tasks}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            try:
                ray.get(ref)
            except ray.exceptions.RayTaskError as exc:
                # a task's own error (a bad config, a corrupted run directory) reads as if
                # it had been raised here
                if isinstance(getattr(exc, "cause", None), MechlistopsError):
                    raise exc.cause from None
                raise
            bar.update(pending.pop(ref))


def load_sweep(path: Path) -> SweepConfig:
    saved = Path(path) / SWEEP_FILE
    if not saved.is_file():
        raise ConfigError(f"{path}: not a sweep directory (no {SWEEP_FILE})")
    try:
        return SweepConfig.from_dict(json.loads(saved.read_text()))
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(f"{saved}: corrupted sweep file ({exc})") from None
