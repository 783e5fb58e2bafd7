"""Sweep tasks on a cluster: Ray tasks, or one SLURM array job through submitit.

Each launcher takes the sweep's tasks (lists of (config dict, run directory)) and reports each
task back as done or failed with a one-line reason; `sweep.run_sweep` owns everything else
(which members to train, the progress bar, failures.json). Both need the sweep directory on a
filesystem every node sees. Ray and submitit are optional extras (`mechlistops[ray]`,
`mechlistops[slurm]`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mechlistops.errors import ConfigError, first_line

SLURM_EXECUTORS = ("slurm", "local")
SLURM_LOGS = "slurm"  # under the sweep directory: submitit's pickles and each task's logs


@dataclass(frozen=True)
class SlurmOptions:
    """What each array task asks SLURM for. executor "local" runs the same array on this
    machine with submitit's local executor (no cluster needed: how the tests run it)."""

    partition: str | None = None
    time_min: int = 240
    gpus: int = 0  # per task
    cpus: int = 1  # per task
    mem_gb: float | None = None
    parallelism: int = 64  # array tasks running at once
    executor: str = "slurm"

    def __post_init__(self) -> None:
        if self.executor not in SLURM_EXECUTORS:
            raise ConfigError(f"slurm executor must be one of {SLURM_EXECUTORS}")
        if not 1 <= self.time_min <= 60 * 24 * 30:
            raise ConfigError(f"--slurm-time must be 1..43,200 minutes, got {self.time_min}")
        if not (0 <= self.gpus <= 64 and 1 <= self.cpus <= 1024 and self.parallelism >= 1):
            raise ConfigError("--slurm-gpus 0..64, --slurm-cpus 1..1024, --slurm-parallelism >= 1")
        if self.mem_gb is not None and not 0 < self.mem_gb <= 65536:
            raise ConfigError(f"--slurm-mem-gb must be in (0, 65536], got {self.mem_gb}")


_NEEDS = {"ray": ("ray", "ray"), "slurm": ("submitit", "slurm")}


def check_available(launcher: str, slurm: SlurmOptions | None = None) -> None:
    """ConfigError, before anything is written, when the launcher's package is missing (or,
    for SLURM, the cluster's commands)."""
    import importlib.util
    import shutil

    if launcher in _NEEDS:
        module, extra = _NEEDS[launcher]
        if importlib.util.find_spec(module) is None:
            raise ConfigError(
                f"--launcher {launcher} needs {module}: pip install 'mechlistops[{extra}]'"
            )
    on_cluster = launcher == "slurm" and (slurm or SlurmOptions()).executor == "slurm"
    if on_cluster and (shutil.which("sbatch") is None or shutil.which("srun") is None):
        raise ConfigError(
            "--launcher slurm: no SLURM here (sbatch/srun not found); run it on the "
            "cluster's login node, or --slurm-executor local to run the array here"
        )


def guarded_task(task: list, progress: bool, device: str, compile: str = "off") -> str | None:
    """`sweep.train_task`, returning its one-line failure reason (None: trained) instead of
    raising: what a cluster job hands back is then the reason, not a log to parse."""
    from mechlistops.sweep import failure_reason, train_task

    try:
        train_task(task, progress, device, compile=compile)
    except Exception as exc:
        return failure_reason(exc)
    return None


def slurm_array(
    tasks: list,
    out: Path,
    device: str,
    options: SlurmOptions,
    on_done,
    on_failed,
    compile: str = "off",
) -> None:
    """Every task one element of a SLURM array job; waits for all of them."""
    try:
        import submitit
    except ImportError:
        raise ConfigError(
            "--launcher slurm needs submitit: pip install 'mechlistops[slurm]'"
        ) from None
    if not tasks:
        return
    folder = Path(out) / SLURM_LOGS / "%j"
    try:
        executor = submitit.AutoExecutor(folder=folder, cluster=options.executor)
    except RuntimeError as exc:  # no sbatch on this machine
        raise ConfigError(f"cannot submit to SLURM here: {exc}") from None
    params = {
        "name": f"mechlistops-{Path(out).name}",
        "timeout_min": options.time_min,
        "gpus_per_node": options.gpus,
        "cpus_per_task": options.cpus,
        "slurm_array_parallelism": options.parallelism,
    }
    if options.partition:
        params["slurm_partition"] = options.partition
    if options.mem_gb:
        params["mem_gb"] = options.mem_gb
    executor.update_parameters(**params)
    n = len(tasks)
    jobs = executor.map_array(guarded_task, tasks, [False] * n, [device] * n, [compile] * n)
    for i, job in enumerate(jobs):
        try:
            reason = job.result()
        except Exception as exc:  # killed: time limit, out of memory, node failure
            reason = f"SLURM job {job.job_id} did not finish ({first_line(exc)})"
        _report(i, reason, on_done, on_failed)


def ray_tasks(
    tasks: list, address: str | None, device: str, on_done, on_failed, compile: str = "off"
) -> None:
    """Every task a Ray task on the cluster at `address` (None: a local Ray), one GPU each
    where the cluster has GPUs."""
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
    remote = ray.remote(guarded_task).options(num_gpus=1 if gpus else 0, num_cpus=1)
    pending = {remote.remote(task, False, device, compile): i for i, task in enumerate(tasks)}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            i = pending.pop(ref)
            try:
                reason = ray.get(ref)
            except ray.exceptions.RayError as exc:  # the worker died
                reason = f"Ray task did not finish ({first_line(exc)})"
            _report(i, reason, on_done, on_failed)


def _report(i: int, reason: str | None, on_done, on_failed) -> None:
    """A task's outcome to the launcher's caller: None is success, text a failure's reason."""
    if reason is None:
        on_done(i, None)
    else:
        on_failed(i, reason)
