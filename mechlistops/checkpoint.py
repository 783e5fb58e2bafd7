"""Run directories: self-describing, pickle-free, written atomically.

    checkpoints/<name>/
      config.json          our RunConfig + `hooked_transformer_config` + provenance
      vocab.json           token strings in id order
      model.safetensors    final weights, HookedTransformer.state_dict() names
      steps/step_0000100.safetensors   intermediate weights (log-spaced and periodic steps)
      metrics.jsonl        one JSON object per evaluation
      state.safetensors    resume state: weights, AdamW moments, RNG, step (JSON in metadata)
      results.json         final per-operator evaluation; present once the run has finished

Every file is written to a temporary name in the same directory, flushed, fsynced and renamed
over its target, so a run killed at any moment leaves each file either old or new, never half.
A checkpoint loads with nothing but `HookedTransformer(HookedTransformerConfig(**cfg[
"hooked_transformer_config"]))` and `load_state_dict(safetensors.torch.load_file(...))`.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from transformer_lens import HookedTransformer

from mechlistops.config import RunConfig
from mechlistops.errors import CheckpointError, MechlistopsError
from mechlistops.listops import Vocab
from mechlistops.model import make_hooked_transformer, tie_blocks

FORMAT = "mechlistops-run/1"
CONFIG, VOCAB, WEIGHTS, STATE, RESULTS, METRICS = (
    "config.json",
    "vocab.json",
    "model.safetensors",
    "state.safetensors",
    "results.json",
    "metrics.jsonl",
)
STEPS_DIR = "steps"


# ----------------------------------------------------------------------------- atomic files
def atomic_write(path: Path, write) -> None:
    """Call write(tmp_path), then fsync and rename over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; run files are meant to be shared
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_text(path: Path, text: str) -> None:
    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)

    atomic_write(path, write)


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2) + "\n")


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], meta: dict | None = None) -> None:
    # Clone: safetensors refuses tensors that share memory (tied looped blocks).
    flat = {k: v.detach().to("cpu").clone().contiguous() for k, v in tensors.items()}
    metadata_ = {"format": FORMAT, **({"json": json.dumps(meta)} if meta is not None else {})}
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
    return tensors, (json.loads(meta["json"]) if "json" in meta else None)


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


# ----------------------------------------------------------------------------- runs
def save_config(run_dir: Path, cfg: RunConfig, ht_cfg: dict, extra: dict | None = None) -> None:
    body = {
        "format": FORMAT,
        **cfg.to_dict(),
        "hooked_transformer_config": ht_cfg,
        **(extra or {}),
        "provenance": provenance(),
    }
    write_json(Path(run_dir) / CONFIG, body)
    write_json(Path(run_dir) / VOCAB, Vocab(cfg.data.modulus).to_dict())


def read_config(run_dir: Path) -> dict[str, Any]:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: no such run directory")
    path = run_dir / CONFIG
    if not path.is_file():
        raise CheckpointError(f"{run_dir}: not a run directory (no {CONFIG})")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: corrupted JSON ({exc})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a mechlistops run config (format {FORMAT} expected)")
    if "hooked_transformer_config" not in raw:
        raise CheckpointError(f"{path}: missing hooked_transformer_config")
    return raw


def step_path(run_dir: Path, step: int) -> Path:
    return Path(run_dir) / STEPS_DIR / f"step_{step:07d}.safetensors"


def saved_steps(run_dir: Path) -> list[int]:
    d = Path(run_dir) / STEPS_DIR
    if not d.is_dir():
        return []
    return sorted(int(p.stem.split("_")[1]) for p in d.glob("step_*.safetensors"))


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
    raw_config: dict
    step: int | None  # None = final weights
    run_dir: Path

    def __iter__(self):
        """`model, config, vocab = load_run(path)`."""
        return iter((self.model, self.config, self.vocab))


def parse_run_spec(spec: str) -> tuple[Path, int | None]:
    """'RUN' or 'RUN@STEP'."""
    if "@" in spec:
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
    try:
        model = make_hooked_transformer(raw["hooked_transformer_config"], seed=0, device=device)
    except (TypeError, ValueError, AssertionError) as exc:
        raise CheckpointError(
            f"{run_dir / CONFIG}: bad hooked_transformer_config ({exc})"
        ) from None
    state, _ = load_tensors(weights)
    load_state_dict_into(model, state, weights)
    if cfg.model.looped:
        tie_blocks(model)
    model.eval()
    return LoadedRun(model, cfg, Vocab(cfg.data.modulus), raw, step, run_dir)
