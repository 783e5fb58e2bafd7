"""The GPU suite: one command that checks, measures and runs a study inside a short window.

GPU time comes in windows of about 15 minutes, machine start-up included, on a machine that
starts bare, with no network. This script does all of it in one call and writes everything it
measures into --out (suite.json: the figures; suite.log: what happened; study.md: the study's
transition table; study.log: its command's output; study_runs_stepN.csv: the study's runs
tables, every accuracy read at each read step, which `mechlistops transition` fits off the
machine), a few small files, while the study's run directories go to --scratch (a temporary
folder by default):

0. set-up: installs the wheels of benchmarks/fetch_wheels.py from --wheels when TransformerLens
   is missing (before anything imports it);
1. correctness on the device: an ensemble member against the same run trained alone (max
   |weight difference|; fp32, TF32 off), and a run interrupted halfway and resumed against the
   run never interrupted;
2. throughput: model-steps/s of the ensemble engine against one model at a time, in this
   process, at 3 sizes, and the fraction of ensemble time spent waiting for batches (the
   device idle), with batches made in the ensemble's thread and by --data-workers processes
   (the sweep and the study below use the processes); at the smallest size also with every
   step's losses read before the next is launched (train.READ_AHEAD = 1; by default the loop
   reads ahead of the device); then, at the smallest size, the ensemble compiled (each
   --compile-modes mode: its warm-up seconds, its steady model-steps/s, booked every step too
   when a second warm-up fits, and its weights against the eager ensemble's). The fastest
   mode that pays for itself over
   10,000 steps is used below; none pays: eager;
   2b. concurrency: the same eager ensemble in PROCESSES processes at once against one
   (aggregate model-steps/s: whether other processes fill the time one leaves the device
   idle); 2c. feed: the study's batches, 12 finite-pool streams' inputs made on the host
   against gathered from pools held on the device (the ensemble's way), in ensemble steps/s;
3. the 120-run sweep (10 sizes x 3 seeds x 4 mixtures x 10,000 steps): a probe at a fraction
   of the steps (eager, one process), extrapolated eager, compiled (the measured warm-up and
   speed-up) and in PROCESSES processes (the measured speed-up); the whole sweep, timed, the
   fastest way, when its extrapolation fits what is left of the budget;
4. with the time left, the paper-like study: a size sweep on a finite training pool per
   operator (--study-pool, --study-pool-draw; by default the sampled pool of 10,000 of
   docs/findings.md stage 9, where about a fifth of SUM alone's runs learn at 4,950
   parameters and a quarter at 9,718-16,022, on one CPU machine: stage 9r),
   exactly 3 operands, one single-head block applied twice; SUM alone and SUM+MAX+MED,
   --study-seeds seeds a size (12: near its transition SUM alone is bimodal, and 3 seeds a size
   misread a share of learners, findings stages 9p-9r; an ensemble's members cost the
   device little);
   18,000 constant-lr steps then 10,000 of linear decay to 0, `--schedule wsd`: the
   `mechlistops sweep` command, every size at once in parallel processes, stopped at the
   deadline; the table reads SUM held-out accuracy before and after the decay, from whatever
   evaluations the runs reached.

Every stage that trains also reports the GPU's busy fraction (nvidia-smi's utilization.gpu,
sampled every 0.2 s while it runs), where nvidia-smi exists.

    python benchmarks/gpu_suite.py --out OUT [--device cuda] [--budget-s 480]
    python benchmarks/gpu_suite.py --out OUT --device cpu --tiny     # the same, in a minute

Every stage is timed against the --budget-s deadline and skipped (and said so) when it would
not fit, so the script always returns its figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MIXTURES_120 = (("SUM",), ("MAX",), ("MED",), ("SUM", "MAX", "MED"))
SIZES_120 = (12, 16, 24, 32, 40, 48, 64, 80, 96, 128)  # about 5k to 410k parameters
PROCESSES = 4  # ensembles trained at once, one per process, in the concurrency check


class Suite:
    """The output folder, the log and the deadline."""

    def __init__(self, out: Path, budget_s: float):
        self.out = out
        self.out.mkdir(parents=True, exist_ok=True)
        self.start = time.perf_counter()
        self.deadline = self.start + budget_s
        self.figures: dict = {}
        self.log_path = out / "suite.log"
        self.data_workers = 0  # processes making each ensemble's batches (main sets it)
        self.compile_modes: tuple[str, ...] = ()  # measured in throughput (main sets them)
        self.compile = "off"  # the mode the 120-run sweep uses (throughput picks it)
        self.study_compile = "off"  # the mode the study uses: also checked on its models
        self.study_reserve_s = 0.0  # seconds the 120-run sweep leaves to the study (main)
        self.scratch = out  # where the study's run directories go (main sets it)
        self.study_pool = (10_000, "sampled")  # the study's pool size and draw (main sets it)
        self.study_seeds = 12  # the study's seeds per size and mixture (main sets it)

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    def log(self, text: str) -> None:
        line = f"[{time.perf_counter() - self.start:7.1f}s] {text}"
        print(line, flush=True)
        with open(self.log_path, "a") as f:
            f.write(line + "\n")

    def save(self) -> None:
        self.figures["elapsed_s"] = round(time.perf_counter() - self.start, 1)
        (self.out / "suite.json").write_text(json.dumps(self.figures, indent=2, default=str))


def install_wheels(wheels: Path, suite: Suite) -> None:
    """When TransformerLens is not importable, pip install the folder's wheels into a folder of
    their own (the machine's Python environment may be read-only, and is left as it was) and put
    it first on this process's path and on PYTHONPATH (for the study's processes)."""
    import importlib
    import importlib.util

    if importlib.util.find_spec("transformer_lens") is not None:
        suite.figures["setup"] = "transformer-lens already installed"
        return
    found = sorted(str(p) for p in wheels.glob("*.whl"))
    if not found:
        raise SystemExit(f"transformer-lens is missing and {wheels} has no wheels")
    t = time.perf_counter()
    site = tempfile.mkdtemp(prefix="mechlistops-site-")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-index", "--no-deps", "--no-compile"]
        + ["--no-cache-dir", "-q", "--target", site, *found],
        check=True,
    )
    sys.path.insert(0, site)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [site, os.environ.get("PYTHONPATH")]))
    importlib.invalidate_caches()
    suite.figures["setup"] = (
        f"installed {len(found)} wheels into {site} in {time.perf_counter() - t:.1f}s"
    )
    suite.log(suite.figures["setup"])


class Busy:
    """The GPU's busy fraction while a block runs: nvidia-smi's utilization.gpu (the share of
    time a kernel was running) sampled every 0.2 s; `fraction` None where there is no
    nvidia-smi (a CPU run)."""

    def __init__(self, device):
        import shutil

        self.cmd = None
        if device.type == "cuda" and shutil.which("nvidia-smi"):
            index = device.index if device.index is not None else 0
            visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
            if index < len(visible) and visible[index].strip():  # nvidia-smi's own numbering
                index = visible[index].strip()
            self.cmd = [
                "nvidia-smi",
                f"--id={index}",
                "--query-gpu=utilization.gpu",
                "--format=csv,noheader,nounits",
                "-lms",
                "200",
            ]
        self.samples: list[float] = []

    def __enter__(self) -> Busy:
        if self.cmd:
            self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, text=True)
        return self

    def __exit__(self, *exc) -> None:
        if self.cmd:
            self.proc.terminate()
            out, _ = self.proc.communicate(timeout=10)
            self.samples = parse_utilisation(out)

    @property
    def fraction(self) -> float | None:
        return sum(self.samples) / len(self.samples) / 100 if self.samples else None


def parse_utilisation(text: str) -> list[float]:
    """nvidia-smi's utilization.gpu lines (percent), skipping anything else it printed."""
    return [float(x) for x in text.split() if x.replace(".", "", 1).isdigit()]


def device_facts(device) -> dict:
    import torch

    facts = {"device": str(device), "torch": torch.__version__}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        facts.update(name=props.name, memory_gib=round(props.total_memory / 2**30, 1))
    else:
        facts.update(name="cpu", threads=torch.get_num_threads())
    return facts


def _config(d_model: int, steps: int, seed: int = 0, ops=("SUM", "MAX", "MED"), **over):
    from mechlistops.config import DataConfig, ModelConfig, RunConfig, TrainConfig

    data = {"ops": ops, "seed": seed, "test_size": 200, **over.pop("data", {})}
    model = {"d_model": d_model, "n_layers": 2, "n_heads": 4 if d_model % 4 == 0 else 1}
    model.update(over.pop("model", {}))
    train = {
        "steps": steps,
        "seed": seed,
        "eval_interval": steps,
        "save_interval": steps,
        "log_checkpoints": False,
        "warmup_steps": min(100, steps // 4),
    }
    train.update(over.pop("train", {}))
    return RunConfig(DataConfig(**data), ModelConfig(**model), TrainConfig(**train))


# Largest |weight difference| allowed between two trainings that should agree up to float
# rounding (ensemble member vs alone, resumed vs not, compiled vs eager).
TOLERANCE = 1e-4


def _max_diff(xs, ys) -> float:
    """Largest |difference| over the weights of paired trained runs (not buffers such as masks;
    not b_K, whose gradient is exactly zero so AdamW turns float noise into updates:
    docs/sweeps.md)."""
    diffs = []
    for x, y in zip(xs, ys):
        a, b = x.model.state_dict(), y.model.state_dict()
        diffs += [
            float((a[k] - b[k]).abs().max())
            for k in a
            if a[k].is_floating_point() and not k.endswith("attn.b_K") and "IGNORE" not in k
        ]
    return max(diffs)


def correctness(suite: Suite, device, tiny: bool) -> None:
    """Ensemble member vs alone, and resume vs uninterrupted, on the device."""
    import torch

    from mechlistops.ensemble import train_ensemble
    from mechlistops.train import RunState, train

    steps = 20 if tiny else 200
    cfgs = [_config(16, steps, seed=s) for s in range(3)]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        together = train_ensemble(
            [(c, tmp / f"e{k}") for k, c in enumerate(cfgs)], progress=False, device=str(device)
        )
        alone = [
            train(c, tmp / f"a{k}", progress=False, device=str(device)) for k, c in enumerate(cfgs)
        ]
        diff = _max_diff(alone, together)

        class Stop(Exception):
            pass

        record = RunState.record

        def stop_halfway(self, step, *args):
            record(self, step, *args)
            if step == steps // 2:
                raise Stop

        cfg = _config(16, steps, seed=5, train={"save_interval": steps // 4})
        reference = train(cfg, tmp / "ref", progress=False, device=str(device))
        RunState.record = stop_halfway
        try:
            train(cfg, tmp / "cut", progress=False, device=str(device))
        except Stop:
            pass
        finally:
            RunState.record = record
        resumed = train(cfg, tmp / "cut", resume=True, progress=False, device=str(device))
        resume_diff = _max_diff([reference], [resumed])
    suite.figures["correctness"] = {
        "ensemble_vs_alone_max_abs_weight_diff": diff,
        "resume_vs_uninterrupted_max_abs_weight_diff": resume_diff,
        "tolerance": TOLERANCE,
        "steps": steps,
        "passed": diff <= TOLERANCE and resume_diff <= TOLERANCE,
        "seconds": round(time.perf_counter() - t, 1),
    }
    torch.cuda.empty_cache() if device.type == "cuda" else None
    suite.log(f"correctness: {suite.figures['correctness']}")


def _timed_ensemble(cfgs, folder: Path, device, data_workers: int, compile: str = "off"):
    """Train `cfgs` as one ensemble: seconds, the fraction of them spent waiting for batches,
    the seconds of the first steps (compiling, when compiled; ensemble.WARMUP_STEPS), and the
    results."""
    from mechlistops import ensemble
    from mechlistops.ensemble import train_ensemble

    before = dict(ensemble.TIMINGS)
    t = time.perf_counter()
    members = [(c, folder / f"m{i}") for i, c in enumerate(cfgs)]
    results = train_ensemble(members, False, str(device), data_workers, compile)
    seconds = time.perf_counter() - t
    wait = (ensemble.TIMINGS["data_wait_s"] - before["data_wait_s"]) / seconds
    return seconds, wait, ensemble.TIMINGS["warmup_s"] - before["warmup_s"], results


@contextmanager
def booked_every_step():
    """Training inside reads every step's losses before it launches the next
    (train.READ_AHEAD = 1), as the loop did before it read ahead."""
    from mechlistops import train

    ahead, train.READ_AHEAD = train.READ_AHEAD, 1
    try:
        yield
    finally:
        train.READ_AHEAD = ahead


def _throughput_shape(tiny: bool) -> tuple[tuple[int, ...], int, int]:
    """The throughput stage's d_models, members per ensemble and steps."""
    return ((8, 16), 3, 20) if tiny else ((16, 64, 128), 24, 300)


def throughput(suite: Suite, device, tiny: bool) -> None:
    """Model-steps/s: K members as one ensemble against one run at a time, at 3 sizes."""
    from mechlistops.ensemble import WARMUP_STEPS
    from mechlistops.train import train

    sizes, k, steps = _throughput_shape(tiny)
    rows, compiled = [], []
    for d in sizes:
        cfgs = [_config(d, steps, seed=s) for s in range(k)]
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            with Busy(device) as busy:
                ens_s, wait, ens_warm, eager = _timed_ensemble(cfgs, tmp / "e", device, 0)
            fed_s, fed_wait, _, _ = _timed_ensemble(cfgs, tmp / "f", device, suite.data_workers)
            t = time.perf_counter()
            train(cfgs[0], tmp / "alone", progress=False, device=str(device))
            alone_s = time.perf_counter() - t
            eager_steady = k * (steps - WARMUP_STEPS) / (ens_s - ens_warm)
            if d == sizes[0]:  # what reading ahead of the device gives, eager
                with booked_every_step():
                    sync_s, _, sync_warm, _ = _timed_ensemble(cfgs, tmp / "sync", device, 0)
                every_step = k * (steps - WARMUP_STEPS) / (sync_s - sync_warm)
            for mode in suite.compile_modes if d == sizes[0] else ():
                try:
                    c_s, _, c_warm, results = _timed_ensemble(cfgs, tmp / mode, device, 0, mode)
                except Exception as exc:  # a mode that fails here is not used below
                    compiled.append({"mode": mode, "error": f"{type(exc).__name__}: {exc}"})
                    suite.log(f"throughput: compile {mode} FAILED {compiled[-1]['error']}")
                    continue
                steady = k * (steps - WARMUP_STEPS) / (c_s - c_warm)
                c_every_step = None  # compiled again, so only when its warm-up fits
                if suite.left() > suite.study_reserve_s + 2 * c_warm:
                    try:
                        with booked_every_step():
                            sync = _timed_ensemble(cfgs, tmp / f"{mode}-s", device, 0, mode)
                        c_every_step = k * (steps - WARMUP_STEPS) / (sync[0] - sync[2])
                    except Exception as exc:
                        c_every_step = f"{type(exc).__name__}: {str(exc)[:300]}"
                compiled.append(
                    {
                        "mode": mode,
                        "d_model": d,
                        "members": k,
                        "steps": steps,
                        "warmup_s": c_warm,
                        "model_steps_per_s": k * steps / c_s,
                        "steady_model_steps_per_s": steady,
                        "eager_steady_model_steps_per_s": eager_steady,
                        "steady_speedup": steady / eager_steady,
                        # the same, every step's losses read before the next is launched
                        "steady_model_steps_per_s_booked_every_step": c_every_step,
                        "seconds_saved_per_10000_steps": k * 10_000 / eager_steady
                        - (c_warm + k * 10_000 / steady),
                        "max_abs_weight_diff_vs_eager": _max_diff(eager, results),
                        # the study's models (looped, pools) compile apart: checked apart
                        "looped": _looped_check(mode, tmp / f"looped-{mode}", device),
                    }
                )
                suite.log(f"throughput: compiled {compiled[-1]}")
        row = {
            "d_model": d,
            "members": k,
            "steps": steps,
            "ensemble_model_steps_per_s": k * steps / ens_s,
            "alone_model_steps_per_s": steps / alone_s,
            "ratio": (k * steps / ens_s) / (steps / alone_s),
            # steady eager speed reading ahead (train.READ_AHEAD) and booking every step
            "steady_model_steps_per_s": eager_steady,
            "steady_model_steps_per_s_booked_every_step": every_step if d == sizes[0] else None,
            "ensemble_data_wait_fraction": wait,
            # the same ensemble, its batches made by worker processes (--data-workers)
            "data_workers": suite.data_workers,
            "fed_model_steps_per_s": k * steps / fed_s,
            "fed_ratio": (k * steps / fed_s) / (steps / alone_s),
            "fed_data_wait_fraction": fed_wait,
            "gpu_busy_fraction": busy.fraction,  # the eager ensemble, thread-fed
        }
        rows.append(row)
        suite.log(f"throughput: {row}")
    suite.figures["throughput"] = rows
    suite.figures["compiled"] = compiled
    suite.compile = pick_compile(compiled)
    chosen = [r for r in compiled if r["mode"] == suite.compile]
    looped_ok = chosen and "error" not in chosen[0].get("looped", {"error": "not checked"})
    suite.study_compile = suite.compile if looped_ok else "off"
    suite.figures["compile_used"] = {"sweep": suite.compile, "study": suite.study_compile}
    suite.log(f"throughput: compile used: {suite.figures['compile_used']}")


def concurrency_stage(suite: Suite, device, tiny: bool) -> None:
    """The throughput stage's eager ensemble at its smallest size, in PROCESSES processes at
    once against one."""
    sizes, k, steps = _throughput_shape(tiny)
    cfgs = [_config(sizes[0], steps, seed=s) for s in range(k)]
    with tempfile.TemporaryDirectory() as tmp, Busy(device) as busy:
        processes = 2 if tiny else PROCESSES
        conc = concurrency(cfgs, Path(tmp), device, processes, max(60.0, suite.left() / 4))
    suite.figures["concurrency"] = {**conc, "gpu_busy_fraction": busy.fraction}
    suite.log(f"concurrency: {suite.figures['concurrency']}")


def feed_stage(suite: Suite, device, tiny: bool) -> None:
    """The study's batches (finite pools): made on the host against gathered on the device."""
    from data_throughput import pool_feed  # beside this script

    feed = pool_feed(64 if tiny else 1024, str(device), pool=300 if tiny else 3000)
    suite.figures["pool_feed_steps_per_s"] = feed
    suite.log(f"feed: 12 pool streams, ensemble steps/s: {feed}")


def _ensemble_at_barrier(cfgs, folder: str, device: str, barrier, spans) -> None:
    """Train `cfgs` as one ensemble (one thread) once every process of the concurrency check
    is ready; put its wall-clock (start, end) on `spans`."""
    import torch

    from mechlistops.ensemble import train_ensemble

    torch.set_num_threads(1)
    members = [(c, Path(folder) / f"m{i}") for i, c in enumerate(cfgs)]
    barrier.wait()
    start = time.time()
    train_ensemble(members, False, device)
    spans.put((start, time.time()))


def concurrency(cfgs, folder: Path, device, processes: int, timeout_s: float) -> dict:
    """Model-steps/s of `processes` copies of one ensemble trained at once, each in its own
    process, against one copy in one process, timed the same way (from a barrier every process
    reaches after starting up): whether the time one process leaves the device idle (Python,
    kernel launches) is filled by the others."""
    import multiprocessing
    import queue

    ctx = multiprocessing.get_context("spawn")
    model_steps = len(cfgs) * cfgs[0].train.total_steps
    deadline = time.perf_counter() + timeout_s

    def rate(n: int) -> float:
        barrier, spans = ctx.Barrier(n), ctx.Queue()
        procs = [
            ctx.Process(
                target=_ensemble_at_barrier,
                args=(cfgs, str(folder / f"p{n}-{i}"), str(device), barrier, spans),
            )
            for i in range(n)
        ]
        for proc in procs:
            proc.start()
        got = []
        try:
            while len(got) < n:
                try:
                    got.append(spans.get(timeout=1.0))
                except queue.Empty:
                    failed = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
                    if failed or time.perf_counter() > deadline:
                        raise RuntimeError(
                            f"concurrency check: {n} processes did not finish "
                            f"(exit codes {[p.exitcode for p in procs]})"
                        ) from None
        finally:
            for proc in procs:
                if len(got) < n:
                    proc.kill()
                proc.join()
        return n * model_steps / (max(e for _, e in got) - min(s for s, _ in got))

    one, many = rate(1), rate(processes)
    return {
        "processes": processes,
        "members": len(cfgs),
        "steps": cfgs[0].train.total_steps,
        "one_process_model_steps_per_s": one,
        "together_model_steps_per_s": many,
        "speedup": many / one,
    }


def _looped_check(mode: str, folder: Path, device) -> dict:
    """The study's kind of model (one single-head block applied twice, pools) trained 10 steps
    compiled and eager: {"max_abs_weight_diff_vs_eager": x} or {"error": why}."""
    from mechlistops.ensemble import train_ensemble

    pool = {"tree": "single", "train_size": 300, "min_args": 3}
    cfgs = [_config(8, 10, s, data=pool, model={"looped": True, "n_heads": 1}) for s in range(2)]
    runs = {}
    try:
        for m in ("off", mode):
            members = [(c, folder / m / f"m{i}") for i, c in enumerate(cfgs)]
            runs[m] = train_ensemble(members, False, str(device), 0, m)
    except Exception as exc:  # a backend that fails here is the finding
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"}
    diff = _max_diff(runs["off"], runs[mode])
    if diff > TOLERANCE:
        return {"error": f"weights differ from eager by {diff:.2e} > {TOLERANCE}"}
    return {"max_abs_weight_diff_vs_eager": diff}


def pick_compile(compiled: list[dict]) -> str:
    """The compile mode that saves the most time over 10,000 steps with weights within
    TOLERANCE of eager; "off" when none saves any."""
    good = [
        r
        for r in compiled
        if "error" not in r
        and r["seconds_saved_per_10000_steps"] > 0
        and r["max_abs_weight_diff_vs_eager"] <= TOLERANCE
    ]
    return max(good, key=lambda r: r["seconds_saved_per_10000_steps"])["mode"] if good else "off"


def sweep_120(suite: Suite, device, tiny: bool) -> None:
    """The 120-run sweep: a probe at a fraction of the steps, extrapolated; in full when the
    extrapolation fits the time left."""
    from mechlistops import ensemble
    from mechlistops.ensemble import ensemble_key
    from mechlistops.sweep import SweepConfig, run_sweep

    sizes = (8, 12) if tiny else SIZES_120
    seeds = 1 if tiny else 3
    full_steps = 40 if tiny else 10_000
    probe_steps = 10 if tiny else 200

    def sweep_of(steps: int) -> SweepConfig:
        return SweepConfig(MIXTURES_120, sizes, seeds, _config(16, steps))

    def run(steps: int, compile: str, workers: int = 1):
        """Seconds, data-wait fraction (None with several processes: theirs to count), GPU busy
        fraction and warm-up seconds of the sweep, its ensembles in `workers` processes."""
        sweep = sweep_of(steps)
        before = dict(ensemble.TIMINGS)
        with tempfile.TemporaryDirectory() as tmp, Busy(device) as busy:
            t = time.perf_counter()
            run_sweep(
                sweep,
                Path(tmp) / "sw",
                workers=workers,
                progress=False,
                engine="ensemble",
                device=str(device),
                data_workers=max(1, suite.data_workers // workers) if suite.data_workers else 0,
                compile=compile,
            )
            seconds = time.perf_counter() - t
        wait = (ensemble.TIMINGS["data_wait_s"] - before["data_wait_s"]) / seconds
        warmup = ensemble.TIMINGS["warmup_s"] - before["warmup_s"]
        return seconds, wait if workers == 1 else None, busy.fraction, warmup

    members = sweep_of(probe_steps).members()
    runs, ensembles = len(members), len({ensemble_key(m.config) for m in members})
    # The probe runs eager (compiling every ensemble would cost a probe more than it shows);
    # the ensembles' first steps happen once, whatever the steps.
    probe_s, probe_wait, probe_busy, warmup = run(probe_steps, "off")
    eager = warmup + (probe_s - warmup) * full_steps / probe_steps
    options = {("off", 1): eager}  # (compile mode, processes): extrapolated seconds
    best = [r for r in suite.figures.get("compiled", []) if r["mode"] == suite.compile]
    if best:  # compiled: each ensemble's warm-up, then the steady speed-up measured above
        compiled = ensembles * best[0]["warmup_s"] + (eager - warmup) / best[0]["steady_speedup"]
        options[(suite.compile, 1)] = compiled
    conc = suite.figures.get("concurrency")
    if conc and conc["speedup"] > 1:  # eager ensembles in processes at once: measured above
        options[("off", conc["processes"])] = warmup + (eager - warmup) / conc["speedup"]
    (mode, workers), estimate = min(options.items(), key=lambda item: item[1])
    result = {
        "runs": runs,
        "ensembles": ensembles,
        "steps": full_steps,
        "compile": mode,
        "processes": workers,
        "extrapolated_seconds_by_choice": {
            f"compile {m}, {w} process{'es' if w > 1 else ''}": round(x, 1)
            for (m, w), x in options.items()
        },
        "probe_steps": probe_steps,
        "probe_seconds": round(probe_s, 1),
        "probe_warmup_seconds": round(warmup, 1),
        "extrapolated_seconds": round(estimate, 1),
        "probe_data_wait_fraction": probe_wait,
        "probe_gpu_busy_fraction": probe_busy,
    }
    suite.log(f"120-run sweep: probe {result}")
    if estimate < suite.left() - suite.study_reserve_s:
        seconds, wait, busy, _ = run(full_steps, mode, workers)
        result.update(
            measured_seconds=round(seconds, 1), data_wait_fraction=wait, gpu_busy_fraction=busy
        )
        suite.log(f"120-run sweep: whole sweep in {seconds:.1f}s")
    else:
        result["measured_seconds"] = None
        result["why_not_measured"] = (
            f"extrapolation {estimate:.0f}s > time left {suite.left():.0f}s less "
            f"{suite.study_reserve_s:.0f}s kept for the study"
        )
    suite.figures["sweep_120"] = result


def study(suite: Suite, device, tiny: bool) -> None:
    """The paper-like size sweep of docs/findings.md stages 4-9 (constant lr, then the decay)
    on suite.study_pool, as the `mechlistops sweep` command: every size at once, stopped at
    the deadline; the table reads what the runs reached."""
    import signal

    from mechlistops.reproduce import REGIMES, options
    from mechlistops.transition import write_runs_table

    # 1,718 to 816,150 parameters: SUM alone past the sizes the CPU reached (findings)
    sizes = (8, 12) if tiny else (8, 16, 32, 64, 128, 256)
    recipe = REGIMES["sampled"].settings()  # stage 9's: pools, looped single head, decay
    recipe.update(train_size=suite.study_pool[0], pool_draw=suite.study_pool[1])
    recipe.update(tree="single", test_size=200 if tiny else 1000)
    if tiny:
        recipe.update(steps=60, decay_steps=20, eval_interval=20, save_interval=20)
    decay = recipe["decay_steps"]
    reads = (recipe["steps"] - decay, recipe["steps"])
    out = suite.scratch / "study"  # run directories: many files, kept out of --out
    workers = len(sizes) if device.type == "cuda" else 1  # one process per size on a GPU
    cmd = [
        sys.executable, "-m", "mechlistops", "sweep",
        "--out", str(out), "--mixture", "SUM", "--mixture", "SUM,MAX,MED",
        "--d-model", ",".join(map(str, sizes)), "--seeds", str(suite.study_seeds),
        *options(recipe),
        "--engine", "ensemble", "--device", str(device), "--workers", str(workers),
        "--data-workers", "0",  # pools: batches are indexed from them, in each ensemble
        "--compile", suite.study_compile, "--no-progress",
    ]  # fmt: skip
    suite.log(f"study: {' '.join(cmd[2:])}")
    t = time.perf_counter()
    with open(suite.out / "study.log", "w") as log, Busy(device) as busy:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
        )
        try:
            proc.wait(timeout=max(1.0, suite.left() - 15))
            stopped = False
        except subprocess.TimeoutExpired:  # the deadline: stop every process of the sweep
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            stopped = True
    seconds = time.perf_counter() - t
    suite.log(f"study: {'stopped at the deadline' if stopped else 'finished'} in {seconds:.0f}s")
    lines, reached, tables = study_table(out, reads, suite.figures["device"]["name"], decay)
    (suite.out / "study.md").write_text("\n".join(lines) + "\n")
    runs_tables = []  # the accuracies at each read, to fit transitions again off the machine
    for step, df in tables.items():
        runs_tables.append(write_runs_table(df, suite.out / f"study_runs_step{step}.csv").name)
    suite.figures["study"] = {
        "sizes": list(sizes),
        "seeds": suite.study_seeds,
        "steps": reads[-1],
        "decay_steps": decay,
        "compile": suite.study_compile,
        "seconds": round(seconds, 1),
        "stopped_at_deadline": stopped,
        "exit_code": None if stopped else proc.returncode,
        "last_step_reached": reached,
        "gpu_busy_fraction": busy.fraction,
        "table": "study.md",
        "runs_tables": runs_tables,
    }


def study_table(out: Path, reads: tuple[int, ...], hardware: str, decay: int):
    """Markdown lines: SUM held-out accuracy by size and mixture at each read step (median;
    per seed), from whatever evaluations each run reached; {run: last evaluated step}; and
    {read step: every accuracy read there} (`transition.accuracies_at`'s rows: a runs table)."""
    import pandas as pd

    from mechlistops.sweep import load_sweep
    from mechlistops.transition import accuracies_at

    reached = {}
    for metrics in sorted(out.glob("*/metrics.jsonl")):
        steps = [json.loads(x)["step"] for x in metrics.read_text().splitlines() if x.strip()]
        reached[metrics.parent.name] = steps[-1] if steps else 0
    common = min(reached.values(), default=0)  # an evaluation step every run got to
    if 0 < common < reads[-1]:  # stopped early: read there too
        reads = tuple(sorted({*reads, common}))
    frames, tables, data = [], {}, "?"
    if (out / "sweep.json").is_file():
        members = load_sweep(out).members()
        data = members[0].config.data.training_data if members else data
    for step in reads:
        if (out / "sweep.json").is_file():
            df = accuracies_at(out, step=step)
            if not df.empty:  # no run got there: no rows, no columns
                tables[step] = df
                frames.append(df[df.op == "SUM"].assign(read=step))
    table = pd.concat(frames) if frames else pd.DataFrame()
    lines = [
        f"# Paper-like study on {hardware}",
        "",
        "SUM held-out accuracy (median of the seeds that got there; per seed; how many reach "
        "0.9) by size, SUM alone "
        f"and in SUM+MAX+MED, read at step {reads[0]:,} (the end of the constant learning "
        f"rate) and {reads[1]:,} (after {decay:,} steps of linear decay to 0); training "
        f"pool per operator: {data}; one single-head block applied twice "
        "(docs/findings.md stages 4-9). '-': no run of the row reached the step; "
        "a study stopped at the deadline is also read at the last step every run reached.",
        "",
        "| parameters | trained as | " + " | ".join(f"@{r:,}" for r in reads) + " |",
        "|---|---|" + "---|" * len(reads),
    ]
    if not table.empty:
        for (n, mixture), g in table.groupby(["n_params", "mixture"]):
            cells = []
            for r in reads:
                v = g[g.read == r].sort_values("seed").accuracy_heldout
                per_seed = " / ".join(f"{x:.2f}" for x in v)
                passed = f"{int((v >= 0.9).sum())}/{len(v)} pass 0.9"
                cells.append(f"{v.median():.2f} ({per_seed}; {passed})" if len(v) else "-")
            lines.append(f"| {n:,} | {mixture} | " + " | ".join(cells) + " |")
    return lines, reached, tables


def main() -> None:
    sys.path.insert(0, str(ROOT))  # the working tree, installed or not
    from mechlistops.config import MAX_TRAIN_SIZE, POOL_DRAWS  # stdlib only: before the wheels

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--budget-s", type=float, default=480.0, help="stop starting work after this")
    p.add_argument("--tiny", action="store_true", help="tiny sizes and steps (a CPU check)")
    p.add_argument("--wheels", type=Path, default=ROOT / "wheels")
    p.add_argument(
        "--scratch",
        type=Path,
        default=None,
        help="folder for the study's run directories (default: a new temporary folder; --out "
        "holds only the suite's few files)",
    )
    p.add_argument(
        "--data-workers",
        type=int,
        default=None,
        help="processes making each ensemble's batches (default: all cores but 2, at most 12; "
        "1 with --tiny)",
    )
    p.add_argument(
        "--compile-modes",
        default=None,
        help="compile modes the throughput stage measures, comma-separated, or none (default: "
        "reduce-overhead, torch.compile with CUDA graphs, on a GPU; default on CPU)",
    )
    p.add_argument(
        "--study-s",
        type=float,
        default=None,
        help="seconds of the budget kept for the study: the whole 120-run sweep runs only if "
        "its extrapolation leaves them (default: 240; 20 with --tiny)",
    )
    p.add_argument(
        "--study-pool",
        type=int,
        default=None,
        help="the study's training pool per operator (default: 10,000; 300 with --tiny)",
    )
    p.add_argument(
        "--study-pool-draw",
        choices=POOL_DRAWS,
        default="sampled",
        help="how the study's pool is drawn (mechlistops train --pool-draw; default: sampled)",
    )
    p.add_argument(
        "--study-seeds",
        type=int,
        default=None,
        help="the study's seeds per size and mixture (default: 12; 3 with --tiny)",
    )
    p.add_argument(
        "--skip",
        default="",
        help="stages to skip: correctness,throughput,concurrency,feed,sweep,study",
    )
    args = p.parse_args()
    limits = {"study_seeds": (1, 1000), "study_pool": (1, MAX_TRAIN_SIZE), "data_workers": (0, 256)}
    for name, (least, most) in limits.items():  # numbers that cannot work
        value = getattr(args, name)
        if value is not None and not least <= value <= most:
            p.error(f"--{name.replace('_', '-')} {value}: must be {least} to {most}")
    suite = Suite(args.out, args.budget_s)
    cores = os.cpu_count() or 1
    suite.data_workers = (
        args.data_workers
        if args.data_workers is not None
        else (1 if args.tiny else max(1, min(12, cores - 2)))
    )
    suite.figures["data_workers"] = suite.data_workers
    suite.study_reserve_s = args.study_s if args.study_s is not None else (20 if args.tiny else 240)
    suite.study_pool = (
        args.study_pool if args.study_pool is not None else (300 if args.tiny else 10_000),
        args.study_pool_draw,
    )
    suite.study_seeds = args.study_seeds or (3 if args.tiny else 12)
    suite.scratch = args.scratch or Path(tempfile.mkdtemp(prefix="gpu-suite-"))
    suite.figures["study_runs"] = str(suite.scratch / "study")
    install_wheels(args.wheels, suite)

    import torch

    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 throughout, as on CPU
    torch.backends.cudnn.allow_tf32 = False
    from mechlistops.model import resolve_device

    device = resolve_device(args.device)
    modes = args.compile_modes
    if modes is None:
        modes = "reduce-overhead" if device.type == "cuda" else "default"
    suite.compile_modes = tuple(m for m in modes.split(",") if m and m != "none")
    suite.figures["device"] = device_facts(device)
    suite.log(f"device: {suite.figures['device']}")
    skip = set(filter(None, args.skip.split(",")))
    stages = {
        "correctness": correctness,
        "throughput": throughput,
        "concurrency": concurrency_stage,
        "feed": feed_stage,
        "sweep": sweep_120,
        "study": study,
    }
    for name, stage in stages.items():
        if name in skip:
            continue
        if suite.left() < 10:
            suite.figures.setdefault("skipped", []).append(name)
            suite.log(f"{name}: skipped, the budget is spent")
            continue
        try:
            stage(suite, device, args.tiny)
        except Exception as exc:  # keep the other stages' figures
            suite.figures[f"{name}_error"] = f"{type(exc).__name__}: {exc}"
            suite.log(f"{name}: FAILED {type(exc).__name__}: {exc}")
        suite.save()
    suite.save()
    suite.log(f"wrote {args.out / 'suite.json'}")


if __name__ == "__main__":
    main()
