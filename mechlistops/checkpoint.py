"""Run directories: self-describing, pickle-free, written atomically. This module owns every
file of a run directory: nothing else reads or writes them by name.

    checkpoints/<name>/
      config.json          our RunConfig + `hooked_transformer_config` + provenance
      vocab.json           token strings in id order
      model.safetensors    final weights, HookedTransformer.state_dict() names
      steps/step_0000100.safetensors   intermediate weights (log-spaced and periodic steps)
      steps/state_0004000.safetensors  kept resume states (--keep-states), to branch from
      metrics.jsonl        one JSON object per evaluation
      state.safetensors    resume state: weights, AdamW moments, RNG, step (JSON in metadata)
      results.json         final per-operator evaluation; present once the run has finished

Every file is written atomically (`mechlistops.atomic`), so a run killed at any moment leaves
each file either old or new, never half. `create_run` makes a run directory, and
`resume_point` finds where an interrupted one stands; `branch_run` starts one from another's
kept resume state. A checkpoint loads with nothing but
`HookedTransformer(HookedTransformerConfig(**cfg["hooked_transformer_config"]))` and
`load_state_dict(safetensors.torch.load_file(...))`.

Run format 2 (this version) dropped `train.device` from config.json (the device is chosen when
training, not part of a run) and writes no clipping as grad_clip 0, not null; safetensors
files carry `format: pt` (what other loaders expect) with our format under `mechlistops`.
Format 1 runs still load, resume and analyse (`RunConfig.from_dict` reads their config).
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from mechlistops.atomic import atomic_write, check_writable_dir, write_json, write_text
from mechlistops.config import RunConfig
from mechlistops.errors import CheckpointError, ConfigError, MechlistopsError
from mechlistops.listops import Vocab
from mechlistops.model import hooked_transformer_config_dict, make_hooked_transformer, tie_blocks
from mechlistops.tl import HookedTransformer

FORMAT = "mechlistops-run/2"
READABLE_FORMATS = ("mechlistops-run/1", FORMAT)
CONFIG, VOCAB, WEIGHTS, STATE, RESULTS, METRICS = (
    "config.json",
    "vocab.json",
    "model.safetensors",
    "state.safetensors",
    "results.json",
    "metrics.jsonl",
)
STEPS_DIR = "steps"
LOCK = ".lock"  # held while a process trains the run (RunLock)


# ----------------------------------------------------------------------------- tensors
def save_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict | None = None) -> None:
    # Clone: safetensors refuses tensors that share memory (tied looped blocks).
    flat = {k: v.detach().to("cpu").clone().contiguous() for k, v in tensors.items()}
    metadata_ = {"format": "pt", "mechlistops": FORMAT}
    if meta is not None:
        metadata_["json"] = json.dumps(meta)
    atomic_write(path, lambda tmp: save_file(flat, tmp, metadata=metadata_))


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict | None]:
    """Tensors and the JSON metadata saved with them; CheckpointError if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: truncated or not a safetensors file ({exc})") from None
    try:
        return tensors, (json.loads(meta["json"]) if "json" in meta else None)
    except json.JSONDecodeError:
        raise CheckpointError(f"{path}: corrupted metadata") from None


# ----------------------------------------------------------------------------- provenance
def provenance() -> dict[str, Any]:
    versions = {}
    for pkg in ("mechlistops", "torch", "transformer-lens", "numpy", "safetensors"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    try:
        git = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=5,
                cwd=Path(__file__).resolve().parent,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        git = None
    return {"git_commit": git, "versions": versions}


def platform_facts(device: torch.device) -> dict[str, Any]:
    """What sets a run's float rounding besides its config, seeds and versions: the device,
    and on CPU the vector instructions torch's kernels use and the thread count. Two runs of
    one seed match bit for bit only where these match, and near a transition the same seed
    on another machine, or with other kernels on the same one (ATEN_CPU_CAPABILITY), can end
    on the other side of it (docs/findings.md stages 9q-9r); results.json and the resume
    state record them."""
    facts: dict[str, Any] = {"torch": torch.__version__, "device": device.type}
    if device.type == "cpu":
        facts["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        facts["threads"] = torch.get_num_threads()
    elif device.type == "cuda":
        facts["gpu"] = torch.cuda.get_device_name(device)
    return facts


# what each rounding fact is called in a message, and how to get the saved value back
_ROUNDING_FACTS = {
    "torch": ("torch {}", None),
    "device": ("device {}", "--device {}"),
    "gpu": ("{}", None),
    "cpu_capability": ("{} kernels", "ATEN_CPU_CAPABILITY={lower} where the CPU has them"),
    "threads": ("{} CPU threads", "--threads {}"),
}


def platform_change(saved, now: dict[str, Any]) -> tuple[str, str, str] | None:
    """How the platform a resume state was saved on (`saved`, from `platform_facts`) differs
    from `now` in what sets the rounding: (saved, now, how to match), each a phrase, or None
    where nothing recorded differs. A state's unreadable entries count as unrecorded; across
    devices only the device and torch are compared (the rest belongs to one device)."""
    if not isinstance(saved, dict):
        return None
    was, is_, hints = [], [], []
    moved = isinstance(saved.get("device"), str) and saved["device"] != now.get("device")
    for key, (phrase, hint) in _ROUNDING_FACTS.items():
        if moved and key not in ("torch", "device"):
            continue
        old, new = saved.get(key), now.get(key)
        if not isinstance(old, (str, int)) or isinstance(old, bool) or old == new:
            continue
        was.append(phrase.format(old))
        is_.append(phrase.format(new) if new is not None else f"no {key}")
        if hint:
            hints.append(hint.format(old, lower=str(old).lower()))
    if not was:
        return None
    return ", ".join(was), ", ".join(is_), " and ".join(hints)


# ----------------------------------------------------------------------------- runs
def _save_config(run_dir: Path, cfg: RunConfig, ht_cfg: dict, extra: dict | None) -> None:
    body = {
        "format": FORMAT,
        **cfg.to_dict(),
        "hooked_transformer_config": ht_cfg,
        **(extra or {}),
        "provenance": provenance(),
    }
    write_json(Path(run_dir) / CONFIG, body)
    write_json(Path(run_dir) / VOCAB, Vocab.of(cfg.data).to_dict())


def read_config(run_dir: Path) -> dict[str, Any]:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        what = "is a file, not a run directory" if run_dir.exists() else "no such run directory"
        raise CheckpointError(f"{run_dir}: {what}")
    path = run_dir / CONFIG
    if not path.is_file():
        raise CheckpointError(f"{run_dir}: not a run directory (no {CONFIG})")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: corrupted JSON ({exc})") from None
    if not isinstance(raw, dict) or raw.get("format") not in READABLE_FORMATS:
        raise CheckpointError(f"{path}: not a mechlistops run config (format {FORMAT} expected)")
    if "hooked_transformer_config" not in raw:
        raise CheckpointError(f"{path}: missing hooked_transformer_config")
    return raw


_STEP_NAME = re.compile(r"step_([0-9]{7,})\.safetensors")
_KEPT_STATE_NAME = re.compile(r"state_([0-9]{7,})\.safetensors")


def read_n_params(run_dir: Path) -> int:
    """The run's trainable parameter count, as config.json records it."""
    count = read_config(run_dir).get("n_params")
    if not (isinstance(count, dict) and isinstance(count.get("n_params"), int)):
        raise CheckpointError(f"{Path(run_dir) / CONFIG}: no parameter count (n_params)")
    return count["n_params"]


def step_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / STEPS_DIR / f"step_{step:07d}.safetensors"


def kept_state_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / STEPS_DIR / f"state_{step:07d}.safetensors"


def _numbered(run_dir: Path, pattern: re.Pattern) -> list[int]:
    d = Path(run_dir) / STEPS_DIR
    if not d.is_dir():
        return []
    # Only names we write (step_0000100.safetensors): a stray "step_0000100 (copy)" is not a step.
    names = (pattern.fullmatch(p.name) for p in d.iterdir())
    return sorted(int(m.group(1)) for m in names if m)


def saved_steps(run_dir: Path) -> list[int]:
    """The steps whose weights the run kept."""
    return _numbered(run_dir, _STEP_NAME)


def kept_states(run_dir: Path) -> list[int]:
    """The steps whose resume state the run kept (`--keep-states`): where it can branch."""
    return _numbered(run_dir, _KEPT_STATE_NAME)


def load_state_dict_into(model: HookedTransformer, state: dict[str, torch.Tensor], src) -> None:
    """Strict load with a one-line error when the weights do not fit the config."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{src}: weights do not match the config (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]})"
        )
    for name, t in state.items():
        if t.shape != expected[name].shape:
            raise CheckpointError(
                f"{src}: weights do not match the config: {name} has shape "
                f"{tuple(t.shape)}, config needs {tuple(expected[name].shape)}"
            )
    model.load_state_dict(state)


def load_run_config(run_dir: Path, raw: dict | None = None) -> RunConfig:
    """The RunConfig of a run directory (from `raw`, its already-read config.json, if given)."""
    raw = raw if raw is not None else read_config(run_dir)
    try:
        return RunConfig.from_dict({k: raw[k] for k in ("data", "model", "train") if k in raw})
    except MechlistopsError as exc:
        raise CheckpointError(f"{Path(run_dir) / CONFIG}: {exc}") from None


@dataclass
class LoadedRun:
    model: HookedTransformer
    config: RunConfig
    vocab: Vocab
    step: int | None  # None = final weights
    run_dir: Path

    def __iter__(self):
        """`model, config, vocab = load_run(path)`."""
        return iter((self.model, self.config, self.vocab))


def parse_run_spec(spec: str) -> tuple[Path, int | None]:
    """'RUN' or 'RUN@STEP'. A directory whose own name holds '@' is a RUN."""
    if "@" in spec and not Path(spec).is_dir():
        path, _, step = spec.rpartition("@")
        if not step.isdigit():
            raise CheckpointError(f"{spec}: expected RUN@STEP with an integer step")
        return Path(path), int(step)
    return Path(spec), None


def load_run(path: str | Path, step: int | None = None, device: str | torch.device = "cpu"):
    """The HookedTransformer, config and tokenizer (Vocab) of a saved run.

    `path` may be `RUN@STEP` to pick an intermediate checkpoint. Returns a LoadedRun, which
    unpacks as (model, config, vocab).
    """
    run_dir, spec_step = parse_run_spec(str(path))
    step = step if step is not None else spec_step
    raw = read_config(run_dir)
    cfg = load_run_config(run_dir, raw)
    if step is None:
        weights = run_dir / WEIGHTS
        if not weights.is_file():
            raise CheckpointError(
                f"{run_dir}: no {WEIGHTS} (the run has not finished; pick a step with RUN@STEP, "
                f"saved: {saved_steps(run_dir)[-5:]})"
            )
    else:
        weights = step_path(run_dir, step)
        if not weights.is_file():
            raise CheckpointError(
                f"{run_dir}: no checkpoint at step {step} (saved steps: {saved_steps(run_dir)})"
            )
    # The model is built from our own validated config, never from the file's TransformerLens
    # fields: a run directory may come from anyone, and some of those fields (a tokenizer
    # name, remote code) make TransformerLens fetch or run code.
    ht_cfg = hooked_transformer_config_dict(cfg.model, cfg.data)
    if raw["hooked_transformer_config"] != ht_cfg:
        saved = raw["hooked_transformer_config"]
        odd = sorted(set(saved) ^ set(ht_cfg)) if isinstance(saved, dict) else ["not an object"]
        odd = odd or sorted(k for k in ht_cfg if saved.get(k) != ht_cfg[k])
        raise CheckpointError(
            f"{run_dir / CONFIG}: hooked_transformer_config does not match the run's own config "
            f"(fields {', '.join(map(str, odd[:4]))}); refusing to build it"
        )
    model = make_hooked_transformer(ht_cfg, seed=0, device=device)
    state, _ = load_tensors(weights)
    params = dict(model.named_parameters(remove_duplicate=False))  # not buffers: masks hold -inf
    bad = [k for k, v in state.items() if k in params and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(
            f"{weights}: weights are not finite ({bad[0]}...): the run diverged; pick an earlier "
            f"step with RUN@STEP (saved: {saved_steps(run_dir)[-5:]})"
        )
    load_state_dict_into(model, state, weights)
    if cfg.model.looped:
        tie_blocks(model)
    model.eval()
    return LoadedRun(model, cfg, Vocab.of(cfg.data), step, run_dir)


# ----------------------------------------------------------------------------- training side
def holds_run(run_dir: Path) -> bool:
    """Whether a directory holds a run (finished or not)."""
    return (Path(run_dir) / CONFIG).is_file()


def is_finished(run_dir: Path) -> bool:
    return (Path(run_dir) / RESULTS).is_file()


class RunLock:
    """A process's exclusive claim on a run directory while it trains it: an advisory lock on
    RUN/.lock, which the operating system releases when the process ends, however it ends."""

    def __init__(self, run_dir: Path, made_dir: bool = False):
        self.run_dir, self.fd, self.made_dir = run_dir, None, made_dir
        try:
            fd = os.open(run_dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigError(f"{run_dir}: cannot write there ({exc.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise ConfigError(f"{run_dir} is being trained by another process") from None
        self.fd = fd

    def release(self, abandon: bool = False) -> None:
        """Drop the claim; `abandon`: the run was never written, so a directory the claim made
        is removed again (it holds nothing but the lock file)."""
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the lock
            self.fd = None
        if abandon and self.made_dir and [p.name for p in self.run_dir.iterdir()] == [LOCK]:
            (self.run_dir / LOCK).unlink()
            self.run_dir.rmdir()


def claim_run(run_dir: Path, new: bool) -> RunLock:
    """Claim a run directory before writing anything in it. A new run needs a directory that
    is new, or empty; an existing one must hold a run. Two processes never hold one run."""
    run_dir = Path(run_dir)
    made = False
    if new:
        _check_new(run_dir)
        made = not run_dir.exists()
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"{run_dir}: cannot create it ({exc.strerror})") from None
    elif not holds_run(run_dir):
        raise CheckpointError(f"{run_dir}: not a run directory (no {CONFIG})")
    lock = RunLock(run_dir, made)
    if new and holds_run(run_dir):  # another process created it between the check and now
        lock.release()
        _check_new(run_dir)
    return lock


def _check_new(run_dir: Path) -> None:
    if holds_run(run_dir):
        raise ConfigError(
            f"{run_dir} already holds a run; pass --resume {run_dir} or choose another --out"
        )
    leftovers = run_dir.is_dir() and any(
        not (p.name.endswith(".tmp") or p.name == LOCK)  # a killed write, an old claim
        for p in run_dir.iterdir()
    )
    if run_dir.exists() and (not run_dir.is_dir() or leftovers):
        what = "a directory that is not empty" if run_dir.is_dir() else "not a directory"
        raise ConfigError(f"{run_dir} is {what}; choose a new or empty --out")


def create_run(
    run_dir: Path, cfg: RunConfig, ht_cfg: dict, extra: dict, initial: dict[str, torch.Tensor]
) -> None:
    """Write a new run's config (with `extra` facts such as the parameter count), vocabulary
    and step-0 weights into a directory claimed with `claim_run(run_dir, new=True)`."""
    run_dir = Path(run_dir)
    _save_config(run_dir, cfg, ht_cfg, extra)
    save_snapshot(run_dir, 0, initial)


def save_snapshot(run_dir: Path, step: int, weights: dict[str, torch.Tensor]) -> None:
    save_tensors(step_path(run_dir, step), weights)


def save_state(run_dir: Path, model, opt, step: int, extra: dict, keep: bool = False) -> None:
    """The resume state: weights, AdamW moments, the torch RNG, the step and `extra` (JSON);
    `keep`: also as steps/state_<step>.safetensors, which the run keeps when it finishes."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt_sd = opt.state_dict()
    for idx, st in opt_sd["state"].items():
        for name, v in st.items():
            tensors[f"optim.{idx}.{name}"] = torch.as_tensor(v)
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {"step": step, "param_groups": opt_sd["param_groups"], **extra}
    save_tensors(Path(run_dir) / STATE, tensors, meta)
    if keep:
        save_tensors(kept_state_path(run_dir, step), tensors, meta)


def _load_state(run_dir: Path, model, opt) -> dict:
    path = Path(run_dir) / STATE
    tensors, meta = load_tensors(path)
    if not isinstance(meta, dict) or not isinstance(meta.get("step"), int):
        raise CheckpointError(f"{path}: not a mechlistops resume state")
    bad = _bad_state_fields(meta)
    if bad:
        raise CheckpointError(f"{path}: damaged resume state ({', '.join(bad)})")
    model_sd = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    load_state_dict_into(model, model_sd, path)
    state: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith("optim."):
            _, idx, name = k.split(".", 2)
            state.setdefault(int(idx), {})[name] = v
    try:
        groups = [{**g, "betas": tuple(g["betas"])} for g in meta["param_groups"]]
        opt.load_state_dict({"state": state, "param_groups": groups})
        torch.set_rng_state(tensors["rng.torch"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: damaged resume state ({exc})") from None
    return meta


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0


def _bad_state_fields(meta: dict) -> list[str]:
    """The resume state's JSON fields that are missing or of the wrong kind (older states lack
    the optional ones)."""
    checks = {
        "param_groups": lambda v: isinstance(v, list) and all(isinstance(g, dict) for g in v),
        "loss_sum": _number,
        "loss_count": lambda v: isinstance(v, int) and v >= 0,
        "elapsed_s": _number,
        "curve": lambda v: (
            isinstance(v, list)
            and all(
                isinstance(p, list)
                and len(p) in (2, 3)
                and isinstance(p[0], int)
                and all(map(_number, p[1:]))
                for p in v
            )
        ),
        "curve_sum": _number,
        "curve_hits": _number,
        "curve_count": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
        "examples": lambda v: (
            isinstance(v, dict)
            and all(isinstance(k, str) and isinstance(n, int) and n >= 0 for k, n in v.items())
        ),
    }
    required = ("param_groups",)
    return [
        f"{name} {'missing' if name not in meta else 'malformed'}"
        for name, ok in checks.items()
        if (name in meta and not ok(meta[name])) or (name not in meta and name in required)
    ]


@dataclass
class ResumePoint:
    step: int  # steps already trained
    meta: dict  # what the resume state recorded beside the weights (empty at step 0)
    has_weights: bool  # False: killed before the initial weights were saved; rebuild them


def resume_point(run_dir: Path, model, opt, total_steps: int) -> ResumePoint:
    """Where an interrupted run of `total_steps` stands. Loads its latest weights, AdamW state
    and RNG into `model` and `opt`, and (only once all of that checked out) drops metrics
    written after that step."""
    run_dir = Path(run_dir)
    if is_finished(run_dir):
        raise ConfigError(f"{run_dir}: run already finished (results.json exists)")
    if (run_dir / STATE).is_file():
        meta = _load_state(run_dir, model, opt)
        if not 0 <= meta["step"] < total_steps:
            raise CheckpointError(
                f"{run_dir / STATE}: step {meta['step']} is not a step of this run "
                f"(0..{total_steps - 1})"
            )
        point = ResumePoint(meta["step"], meta, True)
    elif step_path(run_dir, 0).is_file():  # killed before the first resume state
        initial, _ = load_tensors(step_path(run_dir, 0))
        load_state_dict_into(model, initial, step_path(run_dir, 0))
        point = ResumePoint(0, {}, True)
    else:  # killed while setting up
        point = ResumePoint(0, {}, False)
    kept = [r for r in read_metrics(run_dir) if r["step"] <= point.step]
    write_text(run_dir / METRICS, "".join(json.dumps(r) + "\n" for r in kept))
    return point


def branch_run(
    parent: Path, step: int, run_dir: Path, cfg: RunConfig, ht_cfg: dict, extra: dict
) -> None:
    """Make `run_dir` a run of `cfg` interrupted at `step`, from the parent run's kept resume
    state there: the config (with `extra` and a "branch" record naming the parent and step),
    the vocabulary, the parent's snapshots and metrics up to `step`, and that state as its
    resume state. Whether `cfg` may continue the parent is `train.check_branch`'s to decide.
    Everything is written into a temporary directory beside `run_dir` and renamed into place,
    so a failure leaves no half-made run; `train(cfg, run_dir, resume=True)` trains it."""
    parent, run_dir = Path(parent), Path(run_dir)
    source = kept_state_path(parent, step)
    if not source.is_file():
        kept = kept_states(parent)
        where = f"kept: {', '.join(map(str, kept))}" if kept else "it kept none (--keep-states)"
        raise ConfigError(f"{parent}: no kept resume state at step {step} ({where})")
    _, meta = load_tensors(source)
    if not isinstance(meta, dict) or meta.get("step") != step or _bad_state_fields(meta):
        raise CheckpointError(f"{source}: not a resume state of step {step}")
    _check_new(run_dir)
    check_writable_dir(run_dir.parent, "branch's parent directory")
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.", suffix=".tmp", dir=run_dir.parent))
    try:
        _save_config(tmp, cfg, ht_cfg, {**extra, "branch": {"run": str(parent), "step": step}})
        (tmp / STEPS_DIR).mkdir()
        for s in saved_steps(parent):
            if s <= step:
                shutil.copyfile(step_path(parent, s), step_path(tmp, s))
        shutil.copyfile(source, tmp / STATE)
        kept = [r for r in read_metrics(parent) if r["step"] <= step]
        write_text(tmp / METRICS, "".join(json.dumps(r) + "\n" for r in kept))
        if run_dir.is_dir():  # empty but for leftovers (_check_new): the rename needs it gone
            lock = RunLock(run_dir)  # no other process is making a run there
            try:
                for leftover in run_dir.iterdir():  # a killed write's .tmp, an old claim's lock
                    leftover.unlink()
                run_dir.rmdir()
            finally:
                lock.release()
        os.rename(tmp, run_dir)
    except OSError as exc:
        raise ConfigError(f"{run_dir}: cannot write the branch ({exc.strerror})") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def append_metrics(run_dir: Path, record: dict) -> None:
    with open(Path(run_dir) / METRICS, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()


def read_metrics(run_dir: Path) -> list[dict]:
    """Every complete metrics record (a kill may have left a partial last line)."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if _is_metrics_record(record):
            records.append(record)
    return records


def _is_metrics_record(record) -> bool:
    """A line as `train` writes it: a step and per-set evaluations (a hand-edited or foreign
    line is skipped like a truncated one)."""
    return (
        isinstance(record, dict)
        and isinstance(record.get("step"), int)
        and _are_evaluations(record.get("eval"))
    )


def _are_evaluations(evals) -> bool:
    """{test set: {"accuracy": ..., "accuracy_heldout": ..., ...}} as `evaluate_sets` gives;
    accuracy_heldout is null where no test expression is guaranteed absent from training
    (flat-only trees, say)."""
    return isinstance(evals, dict) and all(
        isinstance(r, dict)
        and isinstance(r.get("accuracy"), (int, float))
        and "accuracy_heldout" in r
        and (r["accuracy_heldout"] is None or isinstance(r["accuracy_heldout"], (int, float)))
        for r in evals.values()
    )


def save_final(run_dir: Path, weights: dict[str, torch.Tensor], results: dict) -> None:
    """The final weights and results.json; a finished run needs no resume state."""
    run_dir = Path(run_dir)
    save_tensors(run_dir / WEIGHTS, weights)
    write_json(run_dir / RESULTS, results)
    (run_dir / STATE).unlink(missing_ok=True)


def read_results(run_dir: Path) -> dict | None:
    """A finished run's results.json (None while it has not finished)."""
    path = Path(run_dir) / RESULTS
    if not path.is_file():
        return None
    try:
        results = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: corrupted JSON ({exc})") from None
    if not (
        isinstance(results, dict)
        and isinstance(results.get("step"), int)
        and _are_evaluations(results.get("results"))
    ):
        raise CheckpointError(f"{path}: not a mechlistops results file (step, results expected)")
    return results
