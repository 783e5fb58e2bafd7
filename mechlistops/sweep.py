"""Sweeps: a grid of mixtures x model sizes x seeds, every member an ordinary run directory.

    sweeps/<name>/
      sweep.json                     the grid and the base config
      <mixture>_d<d_model>_s<seed>/  a run directory (load_run, every analysis work on it)

Resumable: finished members (results.json present) are skipped, interrupted ones resume from
their last state. On CPU the members train in parallel single-thread worker processes (two
1-thread processes beat one 2-thread process for models this small; see docs/sweeps.md).
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from mechlistops import checkpoint as ckpt
from mechlistops.config import RunConfig, parse_ops
from mechlistops.errors import ConfigError

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
        for m in self.members():  # fail before training anything
            m.config.model.d_head_resolved  # noqa: B018

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


def _train_member(cfg_dict: dict, run_dir: str, progress: bool) -> tuple[str, dict]:
    """Worker: train or resume one member (single-threaded in pool workers)."""
    from mechlistops.train import train

    run_dir_ = Path(run_dir)
    resume = (run_dir_ / ckpt.CONFIG).is_file()
    result = train(RunConfig.from_dict(cfg_dict), run_dir_, resume=resume, progress=progress)
    return run_dir, {k: v.accuracy for k, v in result.results.items()}


def _single_thread() -> None:
    import torch

    torch.set_num_threads(1)


def run_sweep(sweep: SweepConfig, out: Path, workers: int = 0, progress: bool = True) -> Path:
    """Train every unfinished member into out/<member>; returns `out`.

    workers: parallel processes (0 = one per CPU core); 1 trains in this process.
    """
    out = Path(out)
    saved = out / SWEEP_FILE
    if saved.is_file():
        if json.loads(saved.read_text()) != sweep.to_dict():
            raise ConfigError(f"{out} holds a different sweep; choose another --out")
    else:
        ckpt.write_json(saved, sweep.to_dict())
    todo = [m for m in sweep.members() if not (out / m.name / ckpt.RESULTS).is_file()]
    bar = tqdm(
        total=len(sweep.members()),
        initial=len(sweep.members()) - len(todo),
        desc="runs",
        disable=not progress,
    )
    workers = workers or os.cpu_count() or 1
    if workers == 1:
        for m in todo:
            _train_member(m.config.to_dict(), str(out / m.name), progress)
            bar.update(1)
    else:
        # spawn, not fork: forking a process whose torch thread pool is running can deadlock.
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_single_thread) as pool:
            futures = [
                pool.submit(_train_member, m.config.to_dict(), str(out / m.name), False)
                for m in todo
            ]
            for future in as_completed(futures):
                future.result()
                bar.update(1)
    bar.close()
    return out


def load_sweep(path: Path) -> SweepConfig:
    saved = Path(path) / SWEEP_FILE
    if not saved.is_file():
        raise ConfigError(f"{path}: not a sweep directory (no {SWEEP_FILE})")
    try:
        return SweepConfig.from_dict(json.loads(saved.read_text()))
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(f"{saved}: corrupted sweep file ({exc})") from None
