"""What every analysis of a saved run starts from: the model at a step, its held-out sets, and
batches of them grouped by length.

Grouping by exact length means no padding inside a batch, so every position of every example
is real, and "another example at the same position" (resample ablation) always exists.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from mechlistops.checkpoint import LoadedRun, load_run
from mechlistops.config import parse_ops
from mechlistops.data import Examples, make_test_sets
from mechlistops.errors import ConfigError


@dataclass
class AnalysisInputs:
    run: LoadedRun
    sets: dict[str, Examples]  # test sets to analyse, by name (operators, maybe "mixture")


def prepare(
    spec: str, ops: str | None = None, limit: int | None = None, device: str = "cpu"
) -> AnalysisInputs:
    """Load `RUN` or `RUN@STEP` and rebuild its held-out sets (restricted to `ops`)."""
    run = load_run(spec, device=device)
    cfg = run.config
    sets = make_test_sets(cfg.data, extra_ops=cfg.train.pretrain_ops)
    if ops:
        wanted = parse_ops(ops)
        missing = [op for op in wanted if op not in sets]
        if missing:
            raise ConfigError(
                f"this run has no test set for {', '.join(missing)} (it has {', '.join(sets)})"
            )
        sets = {op: sets[op] for op in wanted}
    if limit is not None:
        sets = {k: v.subset(slice(0, limit)) for k, v in sets.items()}
    return AnalysisInputs(run, sets)


def batches(
    ex: Examples, batch_size: int = 1000, device="cpu"
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(tokens, answer positions, answers, lengths) per batch, right-padded to the batch's
    longest row. Padding sits after every position an analysis reads: with causal attention
    it changes nothing before it."""
    for start in range(0, len(ex), batch_size):
        part = ex.subset(slice(start, start + batch_size))
        length = int(part.lengths.max())
        yield tuple(
            torch.as_tensor(a, device=device)
            for a in (
                part.tokens[:, :length].astype(np.int64),
                part.answer_pos,
                part.answers,
                part.lengths,
            )
        )


def same_length_permutation(lengths: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random permutation of the batch that maps every example to one of the same length
    (so every position exists in both); an example whose length is unique maps to itself."""
    perm = torch.arange(len(lengths))
    for length in lengths.unique():
        rows = torch.nonzero(lengths.cpu() == length).flatten()
        perm[rows] = rows[torch.randperm(len(rows), generator=generator)]
    return perm.to(lengths.device)


def position_mask(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """(batch, pos) True at real (non-pad) positions."""
    return torch.arange(width, device=lengths.device)[None, :] < lengths[:, None]


def random_init(run: LoadedRun, device="cpu"):
    """A randomly initialised model of the run's config: its own step-0 checkpoint when saved
    (for a transfer run that is the transferred start, so a fresh seeded init is used instead)."""
    from mechlistops.checkpoint import step_path
    from mechlistops.model import build_model

    cfg = run.config
    if not cfg.train.init_from and step_path(run.run_dir, 0).is_file():
        return load_run(run.run_dir, step=0, device=device).model
    model = build_model(cfg.model, cfg.data, seed=cfg.train.seed, device=device)
    model.eval()
    return model
