"""Adaptive transition search: per mixture and seed, the smallest d_model on a sweep's grid
whose accuracy passes a threshold, found by bisection instead of training every size.

Context: a learning transition is a boundary on the size grid. When accuracy rises with size,
bisection finds it with about log2(sizes) runs per seed instead of one run per size (a
10-size grid: 4 or 5 runs). Accuracy need not rise with size (larger models can need more
steps), so bisection is checked, not trusted: the size above the boundary is trained too (the
size below it always is), and a seed whose trained sizes do not pass exactly from the boundary
up is flagged as not monotone.

Members are the sweep's ordinary run directories (`mechlistops transition` reads whichever
were trained); `search.json` in the sweep directory records, per mixture and seed, the sizes
tried, their accuracies, the boundary and the flag. Searches of different (mixture, seed)
run in parallel worker processes; one search trains its sizes one after another.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from mechlistops import checkpoint as ckpt
from mechlistops.atomic import write_json
from mechlistops.errors import ConfigError
from mechlistops.sweep import Member, SweepConfig, open_sweep_dir, run_local, train_task

SEARCH_FILE = "search.json"
SEARCHES = ("grid", "bisect")
ACCURACY_ON = ("heldout", "all")


@dataclass
class Bisection:
    boundary: int | None  # index of the smallest passing size; None: no size passes
    tried: dict[int, bool]  # index -> passed, for every size trained
    monotone: bool  # every tried size below the boundary fails, every one from it passes


def bisect_sizes(n: int, passes: Callable[[int], bool]) -> Bisection:
    """Bisection for the smallest passing index of 0..n-1, then its upper neighbour."""
    tried: dict[int, bool] = {}

    def test(i: int) -> bool:
        if i not in tried:
            tried[i] = passes(i)
        return tried[i]

    lo, hi = -1, n  # lo fails (or is below the grid), hi passes (or is above it)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if test(mid):
            hi = mid
        else:
            lo = mid
    boundary = hi if hi < n else None
    if boundary is not None and boundary + 1 < n:
        test(boundary + 1)  # the size below the boundary was trained by the bisection
    edge = n if boundary is None else boundary
    return Bisection(boundary, tried, all(ok == (i >= edge) for i, ok in tried.items()))


@dataclass
class SearchResult:
    mixture: str
    seed: int
    op: str
    boundary_d_model: int | None
    boundary_n_params: int | None
    accuracies: dict[int, float]  # d_model -> accuracy read, for the sizes trained
    monotone: bool
    runs: int
    failed: str | None = None  # why this search stopped (a member failed); a rerun retries


def search_one(
    members: list[tuple[dict, str]],
    op: str,
    threshold: float,
    on: str,
    device: str = "auto",
) -> dict:
    """Bisect one (mixture, seed): `members` are its (config dict, run directory) by size."""
    accuracies: dict[int, float] = {}

    def passes(i: int) -> bool:
        cfg, run_dir = members[i]
        if not ckpt.is_finished(run_dir):
            train_task([(cfg, run_dir)], progress=False, device=device)
        result = ckpt.read_results(run_dir)["results"][op]
        acc = result["accuracy_heldout"] if on == "heldout" else result["accuracy"]
        accuracies[i] = acc
        return acc is not None and acc >= threshold

    found = bisect_sizes(len(members), passes)
    d_models = [cfg["model"]["d_model"] for cfg, _ in members]
    b = found.boundary
    return {
        "boundary_d_model": None if b is None else d_models[b],
        "boundary_n_params": None if b is None else ckpt.read_n_params(members[b][1]),
        "accuracies": {d_models[i]: accuracies[i] for i in sorted(accuracies)},
        "monotone": found.monotone,
        "runs": len(found.tried),
    }


def run_search(
    sweep: SweepConfig,
    out: Path,
    threshold: float = 0.9,
    op: str | None = None,
    on: str = "heldout",
    workers: int = 0,
    device: str = "auto",
) -> list[SearchResult]:
    """Bisect every (mixture, seed) of `sweep` over its d_models; `op`: the operator whose
    accuracy decides (default: each mixture's first). Writes out/search.json."""
    if not 0.0 < threshold <= 1.0:
        raise ConfigError(f"the search threshold must be in (0, 1], got {threshold}")
    if on not in ACCURACY_ON:
        raise ConfigError(f"accuracy for the search must be one of {ACCURACY_ON}, got {on!r}")
    for mixture in sweep.mixtures:
        if op is not None and op not in mixture:
            raise ConfigError(f"search operator {op} is not in the mixture {','.join(mixture)}")
    if workers < 0:
        raise ConfigError("--workers must be >= 0 (0: one per core)")
    out, _ = open_sweep_dir(sweep, out)
    groups: dict[tuple[str, int], list[Member]] = {}
    for m in sweep.members():
        groups.setdefault(("+".join(m.config.data.ops), m.config.train.seed), []).append(m)
    keys = list(groups)
    calls = []
    for key in keys:
        ordered = sorted(groups[key], key=lambda m: m.config.model.d_model)
        members = [(m.config.to_dict(), str(out / m.name)) for m in ordered]
        calls.append((members, op or ordered[0].config.data.ops[0], threshold, on, device))
    results: dict[int, SearchResult] = {}

    def done(i: int, found: dict) -> None:
        mixture, seed = keys[i]
        results[i] = SearchResult(mixture, seed, calls[i][1], **found)

    def failed(i: int, reason: str) -> None:
        mixture, seed = keys[i]
        results[i] = SearchResult(mixture, seed, calls[i][1], None, None, {}, True, 0, reason)

    run_local(search_one, calls, workers or os.cpu_count() or 1, done, failed)
    ordered = [results[i] for i in range(len(keys))]
    write_json(
        out / SEARCH_FILE,
        {"threshold": threshold, "on": on, "searches": [asdict(r) for r in ordered]},
    )
    return ordered
