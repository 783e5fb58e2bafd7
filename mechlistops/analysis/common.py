"""What every analysis of a saved run starts from: the model at a step, its held-out sets, a
random-init control, where outputs go, and the masks and permutations that make padded batches
(`evaluate.batches`) safe to analyse: real positions only, and "another example at the same
position" drawn among examples of the same length.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from mechlistops.atomic import atomic_write, check_writable_dir, write_text
from mechlistops.checkpoint import LoadedRun, load_run, parse_run_spec
from mechlistops.config import parse_ops
from mechlistops.data import Examples, row_hashes, sample_examples
from mechlistops.errors import (
    EXIT_ERROR,
    CheckpointError,
    ConfigError,
    MechlistopsError,
    error_text,
)
from mechlistops.pools import evaluation_data


@dataclass
class AnalysisInputs:
    run: LoadedRun
    sets: dict[str, Examples]  # test sets to analyse, by name (operators, maybe "mixture")
    pools: dict[str, Examples]  # the operators' training pools (empty with a fresh stream)
    reference: Examples  # a batch of the training mixture, none of it in `sets`: ablation means


_REFERENCE_STREAM = 0xAB1A7E  # the reference batch's own RNG stream
REFERENCE_SIZE = 1000


def prepare(
    spec: str, ops: str | None = None, limit: int | None = None, device: str = "cpu"
) -> AnalysisInputs:
    """Load `RUN` or `RUN@STEP` and rebuild its held-out sets (restricted to `ops`) and its
    training pools."""
    run = load_run(spec, device=device)
    check_writable_dir(analysis_path(spec, "", "").parent, "analysis folder")  # before any work
    cfg = run.config
    sets, pools = evaluation_data(cfg.data, extra_ops=cfg.train.pretrain_ops)
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
    return AnalysisInputs(run, sets, pools, reference_batch(cfg.data, sets))


def reference_batch(data, sets: dict[str, Examples], n: int = REFERENCE_SIZE) -> Examples:
    """Examples of the run's training mixture drawn from their own seeded stream, none of them
    an expression of `sets`: what mean ablation averages over, so the replacement value does
    not carry information about the very examples it is scored on."""
    rng = np.random.default_rng([data.seed, _REFERENCE_STREAM])
    ex = sample_examples(data, 2 * n, rng)
    banned = np.concatenate([row_hashes(s.tokens) for s in sets.values()])
    ex = ex.subset(~np.isin(row_hashes(ex.tokens), banned))
    return ex.subset(slice(0, n))


def analysis_path(spec: str, stem: str, suffix: str) -> Path:
    """Where an analysis of RUN or RUN@STEP saves its output: RUN/analysis/<stem>[_step<N>].

    Outputs stay inside the run: a run directory may come from anyone, and an `analysis` link
    pointing elsewhere would make every analysis write where the link says (a link to a folder
    inside the run is fine). Files are replaced by rename, so a linked file is replaced, not
    written through."""
    run_dir, step = parse_run_spec(spec)
    out_dir = run_dir / "analysis"
    if out_dir.is_symlink() and not out_dir.resolve().is_relative_to(run_dir.resolve()):
        raise CheckpointError(
            f"{out_dir} is a link to {out_dir.resolve()}, outside the run; analyses write only "
            "inside the run directory (replace the link with a folder)"
        )
    tag = f"_step{step}" if step is not None else ""
    return out_dir / f"{stem}{tag}.{suffix}"


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


@contextlib.contextmanager
def script_errors(name: str) -> Iterator[None]:
    """Bad input to a script of analyses/ ends as the `mechlistops` command's does: one line,
    `NAME: error: ...`, and exit 2, never a traceback. That covers a missing, unfinished or
    corrupted run, an unwritable output folder, and (raised by the script as ConfigError)
    paths that hold no run to read."""
    try:
        yield
    except (MechlistopsError, OSError) as exc:  # OSError: the file system said no
        print(f"{name}: error: {error_text(exc)}", file=sys.stderr)
        raise SystemExit(EXIT_ERROR) from None


def save_outputs(out: Path, name: str, rows, summary: str, plot, csv_name: str = "") -> None:
    """What an analysis script over sweeps leaves in `out`: CSV_NAME.csv (`rows`, a DataFrame;
    default NAME.csv), NAME.md (`summary`) and NAME.png (`plot(path)` draws it), each written
    atomically; then prints the summary and where the files went."""
    out = check_writable_dir(out)
    out.mkdir(parents=True, exist_ok=True)
    csv = out / f"{csv_name or name}.csv"
    atomic_write(csv, lambda tmp: rows.to_csv(tmp, index=False))
    write_text(out / f"{name}.md", summary)
    figure = out / f"{name}.png"
    atomic_write(figure, lambda tmp: plot(tmp))
    print(summary)
    print(f"wrote {csv}, {out / f'{name}.md'} and {figure}")
